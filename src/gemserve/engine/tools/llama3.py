"""Llama 3.1, 3.2 and 3.3: JSON tool calls ``{"name": …, "parameters": {…}}``.

The templates render the declarations themselves (``tools``, in the first user message or the
system message), a call turn as that JSON object, and results as ``ipython`` messages
(``<|start_header_id|>ipython<|end_header_id|>``). Note the key: ``parameters``, not
``arguments``.

The model calls at the very start of its answer, optionally after ``<|python_tag|>``, and
writes nothing else in that turn, so the format is *anchored*: an answer is either calls or
text that does not start like one (``{`` or ``<|python_tag|>``), decided at its first
characters, and a ``{`` further into a text answer is only text. Llama's own templates take
one call per assistant turn (they raise on more); vLLM's llama3_json parser also reads several
objects separated by ``;``, which Llama 3.2 writes at times. So: ``parallel`` allows ``; ``-
separated calls; a turn with one call is rendered by the template, a turn with several is
given to it as the text the model wrote (``{…}; {…}``), which it renders as a plain assistant
turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from gemserve.engine.base import ChatMessage, ToolSpec, ToolUse
from gemserve.engine.tools.base import ToolCallStage, template_tools
from gemserve.engine.tools.json_calls import JsonCallFormat
from gemserve.engine.tools.lark import PLAIN, Markers
from gemserve.engine.tools.parser import ToolCallParser

PYTHON_TAG = "<|python_tag|>"
IPYTHON_HEADER = "<|start_header_id|>ipython<|end_header_id|>"


@dataclass(frozen=True, slots=True)
class Llama3Format(JsonCallFormat):
    anchored = True

    def render(
        self, messages: Sequence[ChatMessage], tools: ToolUse | None
    ) -> tuple[tuple[ChatMessage, ...], dict[str, Any]]:
        out = []
        for message in messages:
            if len(message.tool_calls) > 1:
                text = "; ".join(self.call_object(c) for c in message.tool_calls)
                message = replace(message, text=text, tool_calls=())
            out.append(message)
        return tuple(out), template_tools(tools)

    def body_rules(
        self, tools: tuple[ToolSpec, ...], *, parallel: bool, mark: Markers = PLAIN
    ) -> str:
        more = ' (";" SP? call)*' if parallel else ""
        rules = [
            f"calls_body: WS? {mark(self.opener)}? call{more}",
            *self.call_rules(tools),
            "WS: /[ \\t\\r\\n]{1,4}/",  # bounded: a sampled model can loop on blanks
            'SP: " "',
        ]
        return "\n".join(rules)

    def banned_at_start(self) -> tuple[str, ...]:
        return ("{", self.opener)

    def parser(self, tools: tuple[ToolSpec, ...]) -> ToolCallStage:
        return ToolCallParser(self.opener, "", self.args_key, anchored=True, layout=";")


LLAMA3 = Llama3Format(
    "llama3",
    PYTHON_TAG,
    "",
    "blocks",
    native=True,
    args_key="parameters",
    result_markers=(),
)
