"""Property tests of detokenizing and stop sequences: random text as random token byte pieces.

Text of any Unicode (multi-byte characters cut anywhere between "tokens"), random stop
sequences (often taken from the text itself, so that they hit, across piece boundaries), fed
token by token to ``SequenceOutput`` (the simple path and the path through an answer stage)
and to ``StopMatcher`` alone. The reference: the generation stops after the first token whose
text so far contains a stop sequence, and the output is that text cut where the earliest stop
sequence in it starts; without a stop, all of the text. Checked: the emitted text is the
reference, every emitted prefix is a prefix of it (nothing after a stop, nothing taken back),
no delta holds a broken character (U+FFFD), and a character cut off by a token limit is
dropped.
"""

from __future__ import annotations

import itertools

import pytest

from gemserve.engine.base import EngineEvent, FinishReason, TextDelta
from gemserve.engine.output import SequenceOutput
from gemserve.engine.text import IncrementalDetokenizer, StopMatcher

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# Any character but U+FFFD (so a replacement in the output can only mean a broken sequence)
# and lone surrogates (not encodable); small alphabets make stop sequences recur.
characters = st.characters(exclude_characters="\ufffd", exclude_categories=("Cs",))
texts = st.one_of(
    st.text(characters, max_size=60),
    st.text(st.sampled_from("ab é世🙂\n"), max_size=60),
)


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, list[bytes], tuple[str, ...], bool]:
    """Text, its UTF-8 bytes cut into pieces (the last maybe cut short, as by a token limit
    inside a character), the stop sequences, and whether the bytes were cut short."""
    text = draw(texts)
    data = text.encode()
    truncated = False
    if data and draw(st.booleans()):
        end = draw(st.integers(0, len(data)))
        truncated = end < len(data)
        data = data[:end]
    cuts = sorted(set(draw(st.lists(st.integers(1, max(len(data) - 1, 1)), max_size=12))))
    bounds = [0, *(c for c in cuts if c < len(data)), len(data)]
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
    stops = []
    for _ in range(draw(st.integers(0, 3))):
        if text and draw(st.booleans()):
            a = draw(st.integers(0, len(text) - 1))
            b = draw(st.integers(a, min(len(text), a + 6)))
            stops.append(text[a:b])  # may be empty: an empty stop is ignored
        else:
            stops.append(draw(st.text(st.sampled_from("ab é世🙂\n"), max_size=4)))
    return text, pieces, tuple(stops), truncated


def reference(pieces: list[bytes], stops: tuple[str, ...]) -> tuple[str, bool]:
    """What the output must be: the text so far after each token (a cut-off character at the
    end dropped), cut at the earliest stop once one appears."""
    stops = tuple(s for s in stops if s)
    so_far = b""
    text = ""
    for piece in pieces:
        so_far += piece
        text = so_far.decode("utf-8", "ignore")  # only the tail can be incomplete
        starts = [text.find(s) for s in stops if s in text]
        if starts:
            return text[: min(starts)], True
    return text, False


class EchoStage:
    """An answer stage that passes text through as it comes: the non-simple path."""

    def feed(self, text: str) -> list[EngineEvent]:
        return [TextDelta(text)]

    def flush(self) -> list[EngineEvent]:
        return []


@settings(max_examples=300, deadline=None)
@given(
    case=cases(),
    staged=st.booleans(),
    reason=st.sampled_from([FinishReason.STOP, FinishReason.MAX_TOKENS]),
)
def test_sequence_output_equals_the_reference(
    case: tuple[str, list[bytes], tuple[str, ...], bool], staged: bool, reason: FinishReason
) -> None:
    _, pieces, stops, _ = case
    expected, expect_stop = reference(pieces, stops)
    output = SequenceOutput(stop_sequences=stops, stage=EchoStage() if staged else None)
    events: list[EngineEvent] = []
    emitted = ""
    stopped = False
    for piece in pieces:
        stopped = output.feed(piece, events)
        emitted = "".join(e.text for e in events if isinstance(e, TextDelta))
        assert expected.startswith(emitted), (emitted, expected)
        if stopped:
            break
    output.finish(reason, events)
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert all(isinstance(e, TextDelta) for e in events)
    assert "".join(deltas) == expected
    assert stopped == expect_stop == output.stopped
    assert all(d and "\ufffd" not in d for d in deltas), deltas


@settings(max_examples=300, deadline=None)
@given(case=cases())
def test_stop_matcher_alone_on_text_pieces(
    case: tuple[str, list[bytes], tuple[str, ...], bool],
) -> None:
    """Pieces of text (characters whole): the matcher's own contract, with flush at the end."""
    _, pieces, stops, _ = case
    detok = IncrementalDetokenizer()
    chunks = [detok.feed(p) for p in pieces] + [detok.flush()]
    expected, expect_stop = reference([c.encode() for c in chunks], stops)
    matcher = StopMatcher(stops)
    out = ""
    stopped = False
    for chunk in chunks:
        text, stopped = matcher.feed(chunk)
        out += text
        assert expected.startswith(out)
        if stopped:
            break
    if not stopped:
        out += matcher.flush()
    assert (out, stopped) == (expected, expect_stop)


@settings(max_examples=300, deadline=None)
@given(case=cases())
def test_detokenizer_never_breaks_a_character(
    case: tuple[str, list[bytes], tuple[str, ...], bool],
) -> None:
    text, pieces, _, truncated = case
    detok = IncrementalDetokenizer()
    out = [detok.feed(p) for p in pieces]
    out.append(detok.flush())
    joined = "".join(out)
    assert all("\ufffd" not in chunk for chunk in out), out
    assert joined == b"".join(pieces).decode("utf-8", "ignore")
    assert text.startswith(joined)
    if not truncated:
        assert joined == text
