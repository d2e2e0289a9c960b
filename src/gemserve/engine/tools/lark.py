"""Pieces of llguidance Lark grammars shared by the tool formats: literals, regex escapes,
the compact JSON layout, and the terminal of free text that keeps given markers out."""

from __future__ import annotations

import json
from collections.abc import Sequence
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
