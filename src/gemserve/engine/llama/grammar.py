"""A request's constraint as llguidance grammars, built and validated once per constraint.

Every syntax ends in llguidance: JSON Schemas through ``%json``, Lark as is, GBNF (a model's
``grammar`` option, or a caller's) converted to Lark by llguidance's own converter.

A :class:`~gemserve.engine.base.Constraint` needs up to two grammars, one per gate of
``output.Gate`` that constrains:

- ``on``: the constraint's own grammar. For an answer-scoped constraint on a reasoning model it
  is wrapped as ``ws* root``: it switches on right after the closing tag, and the whitespace
  the model writes before the answer (which the thinking parser drops) must not break it, so
  the answer the client sees is exactly what ``root`` matches.
- ``opening``: answer scope where the output may open a thought itself:
  ``ws* ("<think>" | root)``. A model that answers without thinking is held to the grammar
  from its first token; one that opens a thought is free until the thought closes. Where the
  opening tag is one special token (Qwen3's, DeepSeek's), the grammar names that token: a
  literal would only admit the tag spelled in ordinary tokens.

:class:`GrammarPlans` keeps the plans of the most recently used constraints (a bounded LRU), so
a constraint is compiled to validate it once, not on every request, and an invalid
one is refused before admission.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

import llguidance
from llguidance.gbnf_to_lark import gbnf_to_lark

from gemserve.engine.base import Constraint, ReasoningControl
from gemserve.engine.llama.guidance import json_grammar
from gemserve.engine.llama.sampling import Grammar
from gemserve.engine.output import Gate
from gemserve.errors import InvalidArgument, InvalidConstraint

# Rule names of the wrappers (GBNF names are letters, digits and "-").
ANSWER_ROOT = "gemserve-answer"
OPENING_ROOT = "gemserve-opening"
_WS = r"[ \t\n\r]*"

DEFAULT_PLANS = 64


def gbnf_literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


@dataclass(frozen=True, slots=True)
class GrammarPlan:
    """The grammars one constraint needs, by gate."""

    on: Grammar
    opening: Grammar | None = None

    def for_gate(self, gate: Gate) -> Grammar | None:
        if gate is Gate.ON:
            return self.on
        if gate is Gate.OPENING:
            return self.opening
        return None

    def grammars(self) -> tuple[Grammar, ...]:
        return (self.on,) if self.opening is None else (self.on, self.opening)


def plan_for(
    constraint: Constraint, reasoning: ReasoningControl | None, open_token: int | None = None
) -> GrammarPlan:
    """``open_token``: the thought's opening tag as one special token of the vocabulary."""
    if constraint.syntax == "json_schema":
        return _json_plan(constraint, reasoning, open_token)
    if constraint.syntax == "lark":
        return _lark_plan(constraint, reasoning, open_token)
    return _lark_plan(
        replace(constraint, grammar=gbnf_as_lark(constraint.grammar), syntax="lark"),
        reasoning,
        open_token,
    )


def gbnf_as_lark(text: str) -> str:
    """A GBNF grammar (rule ``root``) in llguidance's Lark (rule ``start``): one grammar
    engine for every constraint, with its rejection sampling (llama.cpp's own grammar sampler
    masks the whole vocabulary at every token)."""
    try:
        lark = gbnf_to_lark(text)
    except Exception as exc:
        raise InvalidArgument(
            "The constraint's grammar is invalid: it does not parse as GBNF with a rule named "
            f"root ({exc})."
        ) from None
    lines = [line for line in lark.splitlines() if not line.startswith("%llguidance")]
    return "\n".join(lines).strip()


def _json_plan(
    constraint: Constraint, reasoning: ReasoningControl | None, open_token: int | None
) -> GrammarPlan:
    """JSON output through llguidance, with the same gates as a GBNF constraint."""
    if constraint.triggers:
        raise InvalidArgument("A JSON Schema constraint cannot be lazy (it has triggers).")
    schema = constraint.grammar
    if constraint.scope != "answer" or reasoning is None:
        on = json_grammar(schema, leading_whitespace=False, opening_tag=None)
        return GrammarPlan(Grammar(on, syntax="llguidance"))
    on = json_grammar(schema, leading_whitespace=True, opening_tag=None)
    opening = json_grammar(
        schema, leading_whitespace=True, opening_tag=reasoning.open_tag, opening_token=open_token
    )
    return GrammarPlan(Grammar(on, syntax="llguidance"), Grammar(opening, syntax="llguidance"))


_LARK_START = re.compile(r"^start:", re.MULTILINE)


def _lark_plan(
    constraint: Constraint, reasoning: ReasoningControl | None, open_token: int | None
) -> GrammarPlan:
    """An llguidance Lark grammar (rule ``start``: tool calls), with the same gates."""
    text = constraint.grammar
    if constraint.scope != "answer" or constraint.triggers or reasoning is None:
        return GrammarPlan(_lark(text))
    inner = _LARK_START.sub("gemserve_root:", text, count=1)
    literal = json.dumps(reasoning.open_tag) if open_token is None else f"<[{open_token}]>"
    on = f"start: /[ \\t\\n\\r]*/ gemserve_root\n{inner}"
    opening = f"start: /[ \\t\\n\\r]*/ ({literal} | gemserve_root)\n{inner}"
    return GrammarPlan(_lark(on), _lark(opening))


def _lark(text: str) -> Grammar:
    return Grammar(llguidance.LLMatcher.grammar_from_lark(text), syntax="llguidance")


class GrammarPlans:
    """Validated plans of the last ``size`` constraints used, least recently used out first.

    Keyed by the frozen constraint and the thought's opening tag (the plan depends on both).
    Thread-safe: requests are prepared in worker threads."""

    def __init__(
        self, error_of: Callable[[Grammar], str | None], size: int = DEFAULT_PLANS
    ) -> None:
        """``error_of`` says why a grammar cannot be used for the model (None: it can)."""
        self._error_of = error_of
        self._size = size
        self._plans: OrderedDict[tuple[Constraint, str | None], GrammarPlan] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._plans)

    def get(
        self,
        constraint: Constraint,
        reasoning: ReasoningControl | None,
        open_token: int | None = None,
    ) -> GrammarPlan:
        """The constraint's plan; ``InvalidArgument`` when llama.cpp cannot parse its grammar.
        ``open_token``: the opening tag's special token (the model's, so not in the key)."""
        key = (constraint, reasoning.open_tag if reasoning is not None else None)
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
                return plan
        plan = plan_for(constraint, reasoning, open_token)
        for grammar in plan.grammars():
            error = self._error_of(grammar)
            if error is None:
                continue
            if constraint.syntax == "json_schema":
                raise InvalidConstraint(f"The JSON Schema cannot be enforced: {first_line(error)}")
            if constraint.syntax == "lark":
                raise InvalidConstraint(f"The grammar cannot be enforced: {first_line(error)}")
            raise InvalidArgument(
                f"The constraint's grammar is invalid: llguidance cannot compile it "
                f"({first_line(error)})."
            )
        with self._lock:
            self._plans[key] = plan
            self._plans.move_to_end(key)
            while len(self._plans) > self._size:
                self._plans.popitem(last=False)
        return plan


def first_line(error: str) -> str:
    """llguidance's message on one line: without the wrapper's position and without the
    excerpt of the wrapper grammar (lines of the form ``   1 | start: …`` and carets)."""
    lines = [line.strip() for line in error.strip().splitlines()]
    kept = [line for line in lines if line and "|" not in line[:6] and set(line) != {"^"}]
    text = " ".join(kept)
    return text.split("): ", 1)[-1] if text.startswith("at ") else text
