"""Property tests of SSE framing: what the three stream writers send parses back exactly.

The writers: the Interactions stream (``api/sse.py``: ``event:``, ``id:``, ``data:`` and
keep-alive comments), ``:streamGenerateContent`` (``data:`` blocks ended by CRLF CRLF) and the
OpenAI-compatible stream (``data:`` blocks, then ``data: [DONE]``). Events carry arbitrary
Unicode text (newlines, CR, NUL, U+2028, NEL, astral characters, long strings); the bytes are
cut at arbitrary points, as a network delivers them, and parsed by an independent parser that
follows the WHATWG event-stream rules (any of CRLF, CR, LF ends a line; the UTF-8 decoder runs
over the whole stream) and by the test suite's own ``parse_sse``. Both must give back the same
events, names and ids, and no frame carries a line break inside its data.
"""

from __future__ import annotations

import codecs
import itertools
import json
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from gemserve.api import classic, openai
from gemserve.api.sse import KEEPALIVE, encode_event, sse_frames
from tests.support.sse import parse_sse

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_LINE_END = re.compile(r"\r\n|\r|\n")

# ----- an independent parser (WHATWG HTML §9.2.6, "Interpreting an event stream") ---------


@dataclass
class Dispatched:
    event: str
    id: str
    data: str


@dataclass
class WhatwgParser:
    """Streaming: feed byte chunks cut anywhere (inside a UTF-8 character or a CRLF)."""

    events: list[Dispatched] = field(default_factory=list)
    _decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("strict"))
    _pending: str = ""
    _cr_seen: bool = False  # the text so far ended with CR: a following LF belongs to it
    _first: bool = True
    _data: list[str] = field(default_factory=list)
    _event: str = ""
    _last_id: str = ""

    def feed(self, chunk: bytes, final: bool = False) -> None:
        text = self._decoder.decode(chunk, final)
        if self._first and text:
            text = text.removeprefix("\ufeff")
            self._first = False
        if text:
            if self._cr_seen:
                text = text.removeprefix("\n")  # the LF of a CRLF cut between two chunks
            self._cr_seen = text.endswith("\r")
        *lines, self._pending = _LINE_END.split(self._pending + text)
        for line in lines:
            self._line(line)
        if final:
            assert self._pending == "", f"stream ends inside a line: {self._pending!r}"

    def _line(self, line: str) -> None:
        if line == "":
            self._dispatch()
            return
        if line.startswith(":"):
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        # "retry" and unknown fields are ignored (we never send them)

    def _dispatch(self) -> None:
        if self._data:
            self.events.append(
                Dispatched(self._event or "message", self._last_id, "\n".join(self._data))
            )
        self._data = []
        self._event = ""


def whatwg_parse(chunks: Iterable[bytes]) -> list[Dispatched]:
    parser = WhatwgParser()
    for chunk in chunks:
        parser.feed(chunk)
    parser.feed(b"", final=True)
    return parser.events


# ----- strategies ---------------------------------------------------------------------------

# Text as a model or a client could produce it: every code point but lone surrogates (orjson
# refuses them, and neither the detokenizer nor the JSON reader lets one through), with the
# line-breaking ones drawn often.
BREAKERS = "\n\r\r\n\0\x85\u2028\u2029\x0b\x0c\x1c\ufeff"
texts = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.sampled_from(BREAKERS + "ab 🙂é"), max_size=30),
)
long_texts = texts | st.text(min_size=1, max_size=3).map(lambda s: s * 5000)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | texts
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=8,
)
EVENT_TYPES = (
    "interaction.created",
    "interaction.status_update",
    "step.start",
    "step.delta",
    "step.stop",
    "interaction.completed",
    "error",
)


@st.composite
def interaction_events(draw: st.DrawFn) -> list[dict[str, Any]]:
    tag = draw(st.text(alphabet="0123456789abcdef", min_size=8, max_size=8))
    count = draw(st.integers(1, 6))
    events = []
    for seq in range(1, count + 1):
        event_type = draw(st.sampled_from(EVENT_TYPES))
        payload = draw(st.dictionaries(texts, json_values, max_size=3))
        payload.pop("event_type", None)
        payload.pop("event_id", None)
        events.append(
            {
                "event_type": event_type,
                "type": event_type,
                "event_id": f"evt_{tag}_{seq:06d}",
                "delta": {"type": "text", "text": draw(long_texts)},
                **payload,
            }
        )
    return events


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """``data`` cut at the given points, as a network might deliver it."""
    bounds = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


async def collect(frames: AsyncIterator[bytes]) -> bytes:
    return b"".join([frame async for frame in frames])


async def source(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


def check_frame_lines(frame: bytes, names: tuple[bytes, ...], end: bytes) -> None:
    """One frame: exactly the named fields, one line each, and then the blank line."""
    assert frame.endswith(end)
    body = frame[: -len(end)]
    lines = body.split(end[: len(end) // 2])
    assert [line.split(b":", 1)[0] for line in lines] == list(names), frame[:200]
    assert all(b"\r" not in line and b"\n" not in line for line in lines), frame[:200]


# ----- properties ---------------------------------------------------------------------------

SETTINGS = settings(max_examples=150, deadline=None)


@SETTINGS
@given(
    events=interaction_events(),
    idle=st.lists(st.integers(0, 6), max_size=3),
    points=st.lists(st.integers(0, 10**9), max_size=12),
)
async def test_interaction_stream_parses_back(
    events: list[dict[str, Any]], idle: list[int], points: list[int]
) -> None:
    items: list[dict[str, Any] | None] = list(events)
    for at in sorted(idle, reverse=True):
        items.insert(min(at, len(items)), None)  # keep-alives between events
    body = await collect(sse_frames(source(items)))
    for event in events:
        check_frame_lines(encode_event(event), (b"event", b"id", b"data"), b"\n\n")

    parsed = whatwg_parse(cut(body, points))
    assert [(e.event, e.id) for e in parsed] == [(e["event_type"], e["event_id"]) for e in events]
    assert [json.loads(e.data) for e in parsed] == events
    assert body.count(KEEPALIVE) >= len(idle)

    ours = parse_sse(body.decode())
    assert [(e.event, e.id, e.data) for e in ours] == [
        (e["event_type"], e["event_id"], e) for e in events
    ]


@SETTINGS
@given(
    chunks=st.lists(
        st.fixed_dictionaries({"text": long_texts}, optional={"more": json_values}), max_size=5
    ),
    points=st.lists(st.integers(0, 10**9), max_size=12),
)
async def test_classic_and_openai_streams_parse_back(
    chunks: list[dict[str, Any]], points: list[int]
) -> None:
    classic_body = await collect(classic._data_frames(source(chunks)))
    openai_body = await collect(openai._data_frames(source(chunks)))
    for chunk in chunks:
        check_frame_lines(
            await collect(classic._data_frames(source([chunk]))), (b"data",), b"\r\n\r\n"
        )

    parsed = whatwg_parse(cut(classic_body, points))
    assert [json.loads(e.data) for e in parsed] == chunks
    assert all(e.event == "message" and e.id == "" for e in parsed)
    assert [e.data for e in parse_sse(classic_body.decode())] == chunks

    parsed = whatwg_parse(cut(openai_body, points))
    assert [e.data for e in parsed][-1] == "[DONE]"
    assert [json.loads(e.data) for e in parsed[:-1]] == chunks
    assert [e.data for e in parse_sse(openai_body.decode())] == chunks


def test_the_independent_parser_follows_whatwg() -> None:
    """The reference parser itself, on the spec's own corner cases."""
    stream = b"\xef\xbb\xbfdata: a\r\ndata:b\r\rid: 7\nevent: x\ndata\n\n: c\n\ndata: z\r\n\r\n"
    for points in ([], [1], [2, 3], [12, 13], [17, 18, 19]):
        got = whatwg_parse(cut(stream, points))
        assert got == [
            Dispatched("message", "", "a\nb"),
            Dispatched("x", "7", ""),
            Dispatched("message", "7", "z"),
        ], points
