"""Pieces of llguidance Lark grammars shared by the tool formats: literals, regex escapes,
the compact JSON layout, the terminal of free text that keeps given markers out, and how a
format's markers are written (as text, or as the special token the vocabulary has)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# JSON on one line with json.dumps's separators (see guidance._LAYOUT for why).
LAYOUT: dict[str, Any] = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
}


def literal(text: str) -> str:
    """A Lark string literal."""
    return json.dumps(text)


@dataclass(frozen=True, slots=True)
class Markers:
    """How a grammar writes a format's markers (``[TOOL_CALLS]``, ``<tool_call>``, …).

    In many GGUFs a marker is one special token (control or user-defined). llguidance
    never matches a special token with text: a literal can only be written with ordinary
    tokens, which the model was not trained to write, and free text cannot hold the token at
    all. So a marker the vocabulary has as a special token is referenced by its id
    (``<[id]>``); any other is a literal. ``tokens``: marker text → its special token."""

    tokens: Mapping[str, int] = field(default_factory=dict)

    def __call__(self, text: str) -> str:
        token = self.tokens.get(text)
        return literal(text) if token is None else f"<[{token}]>"

    def is_token(self, text: str) -> bool:
        return text in self.tokens


PLAIN = Markers()


def regex_literal(text: str) -> str:
    """``text`` matched literally inside a Lark ``/…/`` regex."""
    out = []
    for ch in text:
        if ch.isalnum() or ch in "_<>=: \t":
            out.append(ch)
        elif ch == "/":
            out.append("\\/")
        elif ch == "\n":
            out.append("\\n")
        else:
            out.append("\\" + ch)
    return "".join(out)


def json_rule(schema: Any) -> str:
    """``%json`` of a schema, objects laid out compactly (as json.dumps writes them)."""
    if isinstance(schema, dict):
        schema = {**schema, "x-guidance": LAYOUT}
    return f"%json {json.dumps(schema)}"


def free_text(anywhere: Sequence[str] = (), at_start: Sequence[str] = ()) -> str:
    """The right-hand side of a terminal: any text in which none of ``anywhere`` appears and
    that does not begin (after whitespace) with any of ``at_start``. Negated lexemes (``~``)
    are how llguidance keeps a marker out of free text without a rule per character."""
    parts = ["/(?s:.*)/"]
    if anywhere:
        alternatives = "|".join(regex_literal(m) for m in anywhere)
        parts.append(f"~/(?s:.*)({alternatives})(?s:.*)/")
    if at_start:
        alternatives = "|".join(regex_literal(m) for m in at_start)
        parts.append(f"~/[ \\t\\r\\n]*({alternatives})(?s:.*)/")
    return " & ".join(parts)
