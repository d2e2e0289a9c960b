"""Calls written ``<opener>name[ARGS]{…}`` (optionally ``<opener>name[CALL_ID]id[ARGS]{…}``),
read as they stream: the answer stage for Mistral's newer formats.

Text before an opener passes on as text, less a tail that could start the opener. A call
starts (:class:`ToolCallStart`) when ``[ARGS]`` closes its name; its arguments object streams
as it is written (:class:`ToolCallArguments`, joining to exactly the object) and its closing
brace ends it (:class:`ToolCallEnd`). The model's call id is read and dropped. Whitespace
between calls is dropped.
"""

from __future__ import annotations

import json
from enum import Enum

from gemserve.engine.base import (
    EngineEvent,
    TextDelta,
    ToolCallArguments,
    ToolCallEnd,
    ToolCallStart,
)
from gemserve.engine.tools.parser import JsonDepth, partial_suffix


class _State(Enum):
    TEXT = "text"
    NAME = "name"  # after the opener, up to [CALL_ID] or [ARGS]
    CALL_ID = "call_id"  # after [CALL_ID], up to [ARGS]
    ARGS = "args"  # the arguments object


class NameArgsParser:
    def __init__(self, opener: str, args_marker: str, id_marker: str | None = None) -> None:
        self._opener = opener
        self._args_marker = args_marker
        self._id_marker = id_marker
        self._state = _State.TEXT
        self._held = ""
        self._calls = 0
        self._name = ""
        self._args = ""
        self._depth = JsonDepth()

    @property
    def calls(self) -> int:
        return self._calls

    @property
    def in_call(self) -> bool:
        return self._state is _State.ARGS

    def feed(self, text: str) -> list[EngineEvent]:
        events: list[EngineEvent] = []
        rest = text
        while rest:
            if self._state is _State.TEXT:
                rest = self._text(rest, events)
            elif self._state is _State.NAME:
                rest = self._name_part(rest, events)
            elif self._state is _State.CALL_ID:
                rest = self._call_id(rest, events)
            else:
                rest = self._arguments(rest, events)
        return events

    def flush(self) -> list[EngineEvent]:
        events: list[EngineEvent] = []
        if self._state is _State.TEXT and self._held:
            self._emit_text(self._held, events)
        self._held = ""
        return events

    def _text(self, text: str, events: list[EngineEvent]) -> str:
        buf = self._held + text
        self._held = ""
        at = buf.find(self._opener)
        if at != -1:
            self._emit_text(buf[:at], events)
            self._state = _State.NAME
            self._name = ""
            return buf[at + len(self._opener) :]
        keep = partial_suffix(buf, self._opener)
        self._emit_text(buf[: len(buf) - keep], events)
        self._held = buf[len(buf) - keep :]
        return ""

    def _emit_text(self, text: str, events: list[EngineEvent]) -> None:
        if text and not (self._calls and not text.strip()):
            events.append(TextDelta(text))

    def _name_part(self, text: str, events: list[EngineEvent]) -> str:
        buf = self._name + text
        markers = [self._args_marker] + ([self._id_marker] if self._id_marker else [])
        found = [(buf.find(m), m) for m in markers if m in buf]
        if not found:
            self._name = buf  # the name so far, a marker perhaps cut at its end
            return ""
        at, marker = min(found)
        self._name = buf[:at].strip()
        rest = buf[at + len(marker) :]
        if marker == self._id_marker:
            self._state = _State.CALL_ID
            self._held = ""
            return rest
        self._open_arguments(events)
        return rest

    def _call_id(self, text: str, events: list[EngineEvent]) -> str:
        buf = self._held + text
        at = buf.find(self._args_marker)
        if at == -1:
            self._held = buf[-(len(self._args_marker) - 1) :]  # the id is dropped
            return ""
        self._held = ""
        self._open_arguments(events)
        return buf[at + len(self._args_marker) :]

    def _open_arguments(self, events: list[EngineEvent]) -> None:
        self._state = _State.ARGS
        self._args = ""
        self._depth = JsonDepth()
        events.append(ToolCallStart(self._calls, self._name))

    def _arguments(self, text: str, events: list[EngineEvent]) -> str:
        if not self._args:
            text = text.lstrip()  # before the object
            if not text:
                return ""
        end = self._depth.end_in(text)
        piece = text if end is None else text[:end]
        if piece:
            self._args += piece
            events.append(ToolCallArguments(self._calls, piece))
        if end is None:
            return ""
        index = self._calls
        self._calls += 1
        self._state = _State.TEXT
        try:
            valid = isinstance(json.loads(self._args), dict)
        except ValueError:
            valid = False
        if valid:
            events.append(ToolCallEnd(index, self._name, self._args))
        return text[end:]
