"""The grammar that holds a model's tool calls to the declared tools (llguidance Lark).

The format writes the rules of its call block after the opener (``calls_body``: names
limited to the callable tools, each call's arguments to its own tool's schema); this module
decides where they apply. The result is a :class:`~gemserve.engine.base.Constraint`:

- ``auto`` / ``validated``: lazy. Free text until the format's opener, then the grammar.
- ``auto`` after function results: from the first answer token, text in which the markup the
  results came wrapped in (``<tool_response``, ``[TOOL_RESULTS``) cannot appear, or text up
  to the opener (one lazy lexeme, so the text ends exactly there) and the calls. A small model
  echoes the wrapper of what it just read; a lazy grammar cannot stop that. Kept from the
  wrapper, SmolLM2 makes the call it just made again instead: for its format
  (``text_first_after_results``) the answer to results opens with words, not markup, and a
  call can only follow some text.
- ``auto`` for an anchored format (Llama 3): from the first answer token, either the calls or
  text that does not start like one.
- ``any`` (``allowed`` included): the calls from the first answer token.
- ``auto`` with a JSON answer schema: from the first answer token, either the calls or the
  JSON answer.
- ``none``: text in which the opener (and, after results, their wrapper) cannot appear; the
  same after results sent without declarations (SmolLM2's answer then opens with words too).
"""

from __future__ import annotations

import json

from gemserve.engine.base import Constraint, ToolUse
from gemserve.engine.tools.base import ToolFormat
from gemserve.engine.tools.lark import LAYOUT, PLAIN, Markers, free_text


def tool_constraint(
    fmt: ToolFormat,
    tools: ToolUse,
    json_answer: str | None = None,
    *,
    after_results: bool = False,
    mark: Markers = PLAIN,
) -> Constraint | None:
    """The constraint for a request's tools (None: nothing to hold the output to).
    ``json_answer``: a JSON Schema (as text) the answer must match when it is not a call.
    ``after_results``: the conversation ends with function results (the answer to them).
    ``mark``: the format's markers that are special tokens of the vocabulary. Free text
    cannot hold a special token, so ``none`` needs nothing more for them; a lazy grammar's
    trigger stays the marker's text, which the engine shows the output for the token."""
    callable_tools = tools.callable()
    echo = fmt.result_markers if after_results else ()
    if not callable_tools:
        if json_answer is not None:
            return None  # the JSON answer's own constraint already keeps the opener out
        markup = (fmt.opener, *echo)
        first = sorted({m[0] for m in markup}) if echo and fmt.text_first_after_results else ()
        return _full(f"start: TEXT\nTEXT: {free_text(anywhere=markup, at_start=first)}")
    opener = mark(fmt.opener)
    calls = "calls: calls_body" if fmt.anchored else f"calls: {opener} calls_body"
    rules = f"{calls}\n{fmt.body_rules(callable_tools, parallel=tools.parallel, mark=mark)}"
    if json_answer is not None:
        body = json.loads(json_answer)
        if isinstance(body, dict):
            body = {**body, "x-guidance": LAYOUT}
        start = "start: calls" if tools.mode == "any" else "start: calls | answer"
        return _full(f"{start}\nanswer: %json {json.dumps(body)}\n{rules}")
    if tools.mode == "any":
        return _full(f"start: calls\n{rules}")
    if fmt.anchored:
        text = free_text(anywhere=echo, at_start=fmt.banned_at_start())
        return _full(f"start: calls | TEXT\nTEXT: {text}\n{rules}")
    if echo:
        return _full(_after_results(fmt, echo, rules, mark))
    return Constraint(
        f"start: calls\n{rules}", scope="answer", triggers=(fmt.opener,), syntax="lark"
    )


def _after_results(fmt: ToolFormat, echo: tuple[str, ...], rules: str, mark: Markers) -> str:
    """``auto`` answering results: text without the wrapper, or text up to the opener (one
    lazy lexeme: the text ends exactly there) and the calls. ``text_first_after_results``:
    the answer cannot open like the markup either (its first characters), and the text before
    a call holds words. An opener that is a special token cannot be inside a lexeme, and
    needs no lazy one: free text cannot hold it, so the text ends where it comes."""
    markup = (fmt.opener, *echo)
    start = f"start: TEXT | lead calls_body\n{rules}"
    lead = "lead:" if mark.is_token(fmt.opener) else "lead[lazy]:"
    opener = mark(fmt.opener)
    if not fmt.text_first_after_results:
        text = free_text(anywhere=markup)
        return f"{start}\n{lead} TEXT {opener}\nTEXT: {text}"
    text = free_text(anywhere=markup, at_start=sorted({m[0] for m in markup}))
    words = "TEXT & /(?s:.*)[^ \\t\\r\\n](?s:.*)/"
    return f"{start}\n{lead} WORDS {opener}\nWORDS: {words}\nTEXT: {text}"


def _full(grammar: str) -> Constraint:
    """A grammar on from the answer's first token."""
    return Constraint(grammar, scope="answer", syntax="lark")
