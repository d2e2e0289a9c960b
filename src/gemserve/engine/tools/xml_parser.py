"""Qwen3-Coder's XML calls read as they stream: the answer stage of the ``qwen3_coder`` format.

Text before ``<tool_call>`` passes on as text, less a tail that could start it. A call starts
(:class:`ToolCallStart`) once ``<function=NAME>`` is complete. Its arguments are not JSON in
the output, but the :class:`ToolCallArguments` pieces still join to the JSON object of the
arguments, built as the parameters arrive: ``{"key": `` when a parameter opens; a string
parameter's value then streams as escaped JSON string text while it is written (less a tail
that could start ``</parameter>``), any other value is converted and sent whole when its
``</parameter>`` arrives (its raw text is JSON under the grammar; without one, ``True``/
``False`` and unparsable text are read leniently); ``}`` when ``</function>`` closes the call
(:class:`ToolCallEnd`, with exactly the joined text). Which parameters are strings comes from
the declared schemas: an undeclared parameter is a string.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

from gemserve.engine.base import (
    EngineEvent,
    TextDelta,
    ToolCallArguments,
    ToolCallEnd,
    ToolCallStart,
    ToolSpec,
)
from gemserve.engine.tools.parser import partial_suffix

OPENER = "<tool_call>"
CLOSER = "</tool_call>"
FUNCTION = "<function="
FUNCTION_END = "</function>"
PARAMETER = "<parameter="
PARAMETER_END = "\n</parameter>"


def parameter_schemas(tool: ToolSpec) -> dict[str, Any]:
    """The tool's declared properties, by name, in their declared order."""
    properties = json.loads(tool.parameters).get("properties", {})
    return dict(properties) if isinstance(properties, dict) else {}


def is_string(schema: Any) -> bool:
    """Whether a parameter's value is raw text: a declared string (the grammar and the parser
    must agree), or an undeclared parameter (possible only without a grammar)."""
    return schema is None or (isinstance(schema, dict) and schema.get("type") == "string")


def convert(raw: str) -> Any:
    """A non-string parameter's value from its raw text."""
    try:
        return json.loads(raw)
    except ValueError:
        lenient = {"True": True, "False": False, "None": None}
        return lenient.get(raw.strip(), raw)


class _State(Enum):
    TEXT = "text"
    HEAD = "head"  # after <tool_call>, up to <function=NAME>
    PARAMS = "params"  # inside the function, between parameters
    VALUE = "value"  # a parameter's value
    TAIL = "tail"  # after </function>, up to </tool_call>


class XmlCallParser:
    def __init__(self, tools: tuple[ToolSpec, ...]) -> None:
        self._schemas = {tool.name: parameter_schemas(tool) for tool in tools}
        self._state = _State.TEXT
        self._buf = ""  # text held: a possible marker, or the element being read
        self._calls = 0
        self._name = ""
        self._args = ""  # the arguments' JSON text sent so far
        self._key = ""
        self._string = True  # the current parameter is a string
        self._value = ""  # the current value's raw text (non-strings) or "" once streaming
        self._value_started = False

    @property
    def calls(self) -> int:
        return self._calls

    @property
    def in_call(self) -> bool:
        return self._state in (_State.PARAMS, _State.VALUE)

    def feed(self, text: str) -> list[EngineEvent]:
        events: list[EngineEvent] = []
        self._buf += text
        progress = True
        while progress and self._buf:
            progress = self._step(events)
        return events

    def flush(self) -> list[EngineEvent]:
        events: list[EngineEvent] = []
        if self._state is _State.TEXT and self._buf:
            self._emit_text(self._buf, events)
        self._buf = ""
        return events

    def _step(self, events: list[EngineEvent]) -> bool:
        """Consume what the buffer allows in the current state; False: wait for more."""
        if self._state is _State.TEXT:
            return self._text(events)
        if self._state is _State.HEAD:
            return self._head(events)
        if self._state is _State.PARAMS:
            return self._params(events)
        if self._state is _State.VALUE:
            return self._value_text(events)
        return self._tail()

    def _text(self, events: list[EngineEvent]) -> bool:
        buf = self._buf
        at = buf.find(OPENER)
        if at != -1:
            self._emit_text(buf[:at], events)
            self._buf = buf[at + len(OPENER) :]
            self._state = _State.HEAD
            return True
        keep = partial_suffix(buf, OPENER)
        self._emit_text(buf[: len(buf) - keep], events)
        self._buf = buf[len(buf) - keep :]
        return False

    def _emit_text(self, text: str, events: list[EngineEvent]) -> None:
        if text and not (self._calls and not text.strip()):
            events.append(TextDelta(text))

    def _head(self, events: list[EngineEvent]) -> bool:
        buf = self._buf.lstrip()
        if FUNCTION.startswith(buf):
            return False
        if not buf.startswith(FUNCTION):
            self._buf = buf
            self._state = _State.TEXT  # not a call after all (no grammar held it)
            return True
        end = buf.find(">")
        if end == -1:
            return False
        self._name = buf[len(FUNCTION) : end]
        self._buf = buf[end + 1 :]
        self._args = ""
        self._state = _State.PARAMS
        events.append(ToolCallStart(self._calls, self._name))
        return True

    def _params(self, events: list[EngineEvent]) -> bool:
        buf = self._buf.lstrip()
        self._buf = buf
        if not buf or PARAMETER.startswith(buf) or FUNCTION_END.startswith(buf):
            return False
        if buf.startswith(FUNCTION_END):
            self._buf = buf[len(FUNCTION_END) :]
            self._finish_call(events)
            return True
        if not buf.startswith(PARAMETER):
            self._buf = buf[1:]  # stray text inside the function (no grammar): skipped
            return True
        end = buf.find(">")
        if end == -1:
            return False
        self._key = buf[len(PARAMETER) : end]
        self._buf = buf[end + 1 :]
        schema = self._schemas.get(self._name, {}).get(self._key)
        self._string = is_string(schema)
        self._value = ""
        self._value_started = False
        self._state = _State.VALUE
        if self._string:
            self._send(events, f'{self._separator()}{json.dumps(self._key)}: "')
        return True

    def _value_text(self, events: list[EngineEvent]) -> bool:
        buf = self._buf
        if not self._value_started:
            if not buf:
                return False
            if buf.startswith("\n"):
                buf = buf[1:]
            self._value_started = True
        at = buf.find(PARAMETER_END)
        if at == -1:
            keep = partial_suffix(buf, PARAMETER_END)
            chunk, self._buf = buf[: len(buf) - keep], buf[len(buf) - keep :]
            self._take_value(chunk, events)
            return False
        self._take_value(buf[:at], events)
        self._buf = buf[at + len(PARAMETER_END) :]
        if self._string:
            self._send(events, '"')
        else:
            value = json.dumps(convert(self._value), ensure_ascii=False)
            self._send(events, f"{self._separator()}{json.dumps(self._key)}: {value}")
        self._state = _State.PARAMS
        return True

    def _take_value(self, chunk: str, events: list[EngineEvent]) -> None:
        if not chunk:
            return
        if self._string:
            self._send(events, json.dumps(chunk, ensure_ascii=False)[1:-1])
        else:
            self._value += chunk

    def _separator(self) -> str:
        return ", " if self._args else "{"

    def _send(self, events: list[EngineEvent], text: str) -> None:
        self._args += text
        events.append(ToolCallArguments(self._calls, text))

    def _finish_call(self, events: list[EngineEvent]) -> None:
        self._send(events, "}" if self._args else "{}")
        events.append(ToolCallEnd(self._calls, self._name, self._args))
        self._calls += 1
        self._state = _State.TAIL

    def _tail(self) -> bool:
        buf = self._buf.lstrip()
        self._buf = buf
        if not buf or (CLOSER.startswith(buf) and buf != CLOSER):
            return False
        if buf.startswith(CLOSER):
            self._buf = buf[len(CLOSER) :]
        self._state = _State.TEXT
        return True
