"""Tool calls written as JSON objects, read out of the answer text as they are written: the
answer stage of ``engine/output.py`` for the JSON formats (Hermes, SmolLM2's array, Llama 3,
Mistral's ``[TOOL_CALLS][…]``).

Text before the format's opener passes on as text, except a tail that could be the start of
the opener, which waits for the next piece: no part of a marker ever reaches a text delta, and
no text before a call is lost. From the opener on, each call object is read as it streams:
once its name is complete the call starts (:class:`ToolCallStart`), the text of its arguments
object follows piece by piece (:class:`ToolCallArguments`, joining to exactly the arguments),
and the object's end closes it (:class:`ToolCallEnd`, arguments checked to be a JSON object).
Layout between calls (brackets, commas, semicolons, the closer, blank lines) is dropped. Keys
after the arguments (Mistral's ``id``) are read and dropped.

Anchored (Llama 3): a call can only open the answer, after whitespace, either with the opener
(``<|python_tag|>``) or directly with ``{``; an answer that starts otherwise is text to its end.

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
    START = "start"  # anchored only: the answer's first characters decide
    TEXT = "text"  # free text, watching for the opener
    PLAIN = "plain"  # anchored only: text to the end, no call can follow
    BETWEEN = "between"  # inside a call block, outside any call object
    CALL = "call"  # inside a call object


class JsonDepth:
    """Where a JSON object or array ends, read piece by piece (strings and escapes aware)."""

    __slots__ = ("_depth", "_escaped", "_in_string")

    def __init__(self) -> None:
        self._depth = 0
        self._in_string = False
        self._escaped = False

    def end_in(self, text: str) -> int | None:
        """The index just past the value's last character in ``text``, or None: not yet."""
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
                    return i + 1
        return None


class ToolCallParser:
    def __init__(
        self,
        opener: str,
        closer: str,
        args_key: str = "arguments",
        *,
        anchored: bool = False,
        layout: str = "[],",
    ) -> None:
        self._opener = opener
        self._closer = closer
        self._args_key = args_key
        self._anchored = anchored
        self._layout = layout  # characters dropped between calls, besides whitespace
        self._state = _State.START if anchored else _State.TEXT
        self._held = ""  # text that may be the start of a marker
        self._calls = 0  # calls completed
        # The call being read: its text so far, and where its arguments start and end.
        self._object = ""
        self._object_end = JsonDepth()
        self._name: str | None = None
        self._args_from: int | None = None
        self._args_end: int | None = None
        self._args_depth = JsonDepth()
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
            if self._state is _State.START:
                rest = self._start(rest)
            elif self._state is _State.TEXT:
                rest = self._text(rest, events)
            elif self._state is _State.PLAIN:
                self._emit_text(rest, events)
                rest = ""
            elif self._state is _State.BETWEEN:
                rest = self._between(rest)
            else:
                rest = self._call(rest, events)
        return events

    def flush(self) -> list[EngineEvent]:
        events: list[EngineEvent] = []
        if self._state in (_State.START, _State.TEXT) and self._held:
            self._emit_text(self._held, events)
        self._held = ""
        return events

    # ----- states ----------------------------------------------------------------------

    def _start(self, text: str) -> str:
        """Anchored: hold the answer's start until it is a call or text."""
        buf = self._held + text
        self._held = ""
        lead = buf.lstrip()
        if not lead or (self._opener.startswith(lead) and lead != self._opener):
            self._held = buf
            return ""
        if lead.startswith(self._opener):
            self._state = _State.BETWEEN
            return lead[len(self._opener) :]
        if lead.startswith("{"):
            self._state = _State.BETWEEN
            return lead
        self._state = _State.PLAIN
        return buf

    def _text(self, text: str, events: list[EngineEvent]) -> str:
        buf = self._held + text
        self._held = ""
        at = buf.find(self._opener)
        if at != -1:
            self._emit_text(buf[:at], events)
            self._state = _State.BETWEEN
            return buf[at + len(self._opener) :]
        keep = partial_suffix(buf, self._opener)
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
            if ch.isspace() or ch in self._layout:
                continue
            if closer and buf.startswith(closer, i):
                self._state = _State.TEXT
                return buf[i + len(closer) :]
            if closer and closer.startswith(buf[i:]):
                self._held = buf[i:]  # the closer, cut by the end of this piece
                return ""
            # Not layout: the block is over.
            self._state = _State.PLAIN if self._anchored else _State.TEXT
            return buf[i:]
        return ""

    def _start_object(self) -> None:
        self._state = _State.CALL
        self._object = ""
        self._object_end = JsonDepth()
        self._name = None
        self._args_from = None
        self._args_end = None
        self._args_depth = JsonDepth()
        self._sent = ""

    def _call(self, text: str, events: list[EngineEvent]) -> str:
        end = self._object_end.end_in(text)
        if end is None:
            self._object += text
            self._stream_arguments(events, len(text))
            return ""
        self._object += text[:end]
        self._stream_arguments(events, end, final=True)
        self._finish_call(events)
        self._state = _State.BETWEEN
        return text[end:]

    def _stream_arguments(
        self, events: list[EngineEvent], added: int, *, final: bool = False
    ) -> None:
        """``added``: how many characters this piece put at the end of the object."""
        if self._args_from is None:
            match = _HEAD.match(self._object)
            if match is None or match.group(2) != self._args_key:
                return
            self._name = json.loads(f'"{match.group(1)}"')
            self._args_from = match.end()
            events.append(ToolCallStart(self._calls, self._name))
            added = len(self._object) - self._args_from
        if self._args_end is None:
            new = self._object[len(self._object) - added :]
            end = self._args_depth.end_in(new)
            if end is not None:
                self._args_end = len(self._object) - added + end
        if self._args_end is not None:
            body = self._object[self._args_from : self._args_end]
        else:
            # Trailing whitespace waits, in case the arguments end there.
            body = self._object[self._args_from :].rstrip()
            if final:
                body = body[: body.rfind("}")]
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


def partial_suffix(text: str, marker: str) -> int:
    """The length of the longest end of ``text`` that is a proper start of ``marker``."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0
