"""Tool calls out of the answer text, as they are written: the answer stage of
``engine/output.py`` for a request with tools.

Text before the format's opener passes on as text, except a tail that could be the start of
the opener, which waits for the next piece: no part of a marker ever reaches a text delta, and
no text before a call is lost. From the opener on, each call object is read as it streams:
once its name is complete the call starts (:class:`ToolCallStart`), the text of its arguments
object follows piece by piece (:class:`ToolCallArguments`, joining to exactly the arguments),
and the object's end closes it (:class:`ToolCallEnd`, arguments checked to be a JSON object).
Layout between calls (brackets, commas, the closer, blank lines) is dropped.

A call whose keys come in another order than ``name`` then arguments (possible only without a
grammar) is read whole when it ends, then reported at once.
"""

from __future__ import annotations

import json
import re
from enum import Enum

from gemserve.engine.base import (
    EngineEvent,
    TextDelta,
    ToolCallArguments,
    ToolCallEnd,
    ToolCallStart,
)

_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"([A-Za-z_]+)"\s*:\s*(?=\S)')


class _State(Enum):
    TEXT = "text"  # free text, watching for the opener
    BETWEEN = "between"  # inside a call block, outside any call object
    CALL = "call"  # inside a call object


class ToolCallParser:
    def __init__(self, opener: str, closer: str, args_key: str = "arguments") -> None:
        self._opener = opener
        self._closer = closer
        self._args_key = args_key
        self._state = _State.TEXT
        self._held = ""  # text that may be the start of the opener
        self._calls = 0  # calls completed
        # The call being read: its text so far, JSON nesting, and where its arguments start.
        self._object = ""
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._name: str | None = None
        self._args_from: int | None = None
        self._sent = ""  # the arguments' text already emitted

    @property
    def calls(self) -> int:
        return self._calls

    @property
    def in_call(self) -> bool:
        """A call was started and not finished (the output was cut inside it)."""
        return self._state is _State.CALL

    def feed(self, text: str) -> list[EngineEvent]:
        events: list[EngineEvent] = []
        rest = text
        while rest:
            if self._state is _State.TEXT:
                rest = self._text(rest, events)
            elif self._state is _State.BETWEEN:
                rest = self._between(rest)
            else:
                rest = self._call(rest, events)
        return events

    def flush(self) -> list[EngineEvent]:
        events: list[EngineEvent] = []
        if self._state is _State.TEXT and self._held:
            self._emit_text(self._held, events)
        self._held = ""
        return events

    # ----- states ----------------------------------------------------------------------

    def _text(self, text: str, events: list[EngineEvent]) -> str:
        buf = self._held + text
        self._held = ""
        at = buf.find(self._opener)
        if at != -1:
            self._emit_text(buf[:at], events)
            self._state = _State.BETWEEN
            return buf[at + len(self._opener) :]
        keep = _partial_suffix(buf, self._opener)
        self._emit_text(buf[: len(buf) - keep], events)
        self._held = buf[len(buf) - keep :]
        return ""

    def _emit_text(self, text: str, events: list[EngineEvent]) -> None:
        if not text:
            return
        if self._calls and not text.strip():
            return  # layout between call blocks
        events.append(TextDelta(text))

    def _between(self, text: str) -> str:
        buf = self._held + text
        self._held = ""
        closer = self._closer
        for i, ch in enumerate(buf):
            if ch == "{":
                self._start_object()
                return buf[i:]
            if ch.isspace() or ch in "[],":
                continue
            if closer and buf.startswith(closer, i):
                self._state = _State.TEXT
                return buf[i + len(closer) :]
            if closer and closer.startswith(buf[i:]):
                self._held = buf[i:]  # the closer, cut by the end of this piece
                return ""
            self._state = _State.TEXT  # not layout: the block is over
            return buf[i:]
        return ""

    def _start_object(self) -> None:
        self._state = _State.CALL
        self._object = ""
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._name = None
        self._args_from = None
        self._sent = ""

    def _call(self, text: str, events: list[EngineEvent]) -> str:
        end = None
        for i, ch in enumerate(text):
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif ch == "\\":
                    self._escaped = True
                elif ch == '"':
                    self._in_string = False
            elif ch == '"':
                self._in_string = True
            elif ch in "{[":
                self._depth += 1
            elif ch in "}]":
                self._depth -= 1
                if self._depth == 0:
                    end = i
                    break
        if end is None:
            self._object += text
            self._stream_arguments(events, final=False)
            return ""
        self._object += text[: end + 1]
        self._stream_arguments(events, final=True)
        self._finish_call(events)
        self._state = _State.BETWEEN
        return text[end + 1 :]

    def _stream_arguments(self, events: list[EngineEvent], *, final: bool) -> None:
        if self._args_from is None:
            match = _HEAD.match(self._object)
            if match is None or match.group(2) != self._args_key:
                return
            self._name = json.loads(f'"{match.group(1)}"')
            self._args_from = match.end()
            events.append(ToolCallStart(self._calls, self._name))
        # The arguments run to the call object's closing brace (not yet read unless
        # ``final``); trailing whitespace waits, in case the object ends there.
        body = self._object[self._args_from :]
        if final:
            body = body[: body.rstrip().rfind("}")]
        body = body.rstrip()
        if len(body) > len(self._sent):
            events.append(ToolCallArguments(self._calls, body[len(self._sent) :]))
            self._sent = body

    def _finish_call(self, events: list[EngineEvent]) -> None:
        try:
            parsed = json.loads(self._object)
        except ValueError:
            parsed = None
        index = self._calls
        self._calls += 1
        if not isinstance(parsed, dict) or not isinstance(parsed.get("name"), str):
            return  # not a call object (no grammar held it): dropped
        arguments = parsed.get(self._args_key, {})
        if not isinstance(arguments, dict):
            arguments = {}
        if self._name is not None and _parses_to(self._sent, arguments):
            text = self._sent  # exactly what the deltas joined to
        else:
            text = json.dumps(arguments, ensure_ascii=False)
        if self._name is None:  # keys out of order: report the whole call now
            events.append(ToolCallStart(index, parsed["name"]))
            events.append(ToolCallArguments(index, text))
        events.append(ToolCallEnd(index, parsed["name"], text))


def _parses_to(text: str, value: object) -> bool:
    try:
        return bool(json.loads(text) == value)
    except ValueError:
        return False


def _partial_suffix(text: str, marker: str) -> int:
    """The length of the longest end of ``text`` that is a proper start of ``marker``."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0
