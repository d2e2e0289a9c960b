"""Detokenisation and stop sequences over every possible chunk boundary."""

from __future__ import annotations

import itertools

import pytest

from gemserve.engine.text import IncrementalDetokenizer, StopMatcher

SAMPLE = "Grüße, 世界! 🙂 naïve café"


def all_splits(data: bytes, cuts: int) -> list[list[bytes]]:
    out = []
    for points in itertools.combinations(range(1, len(data)), cuts):
        bounds = (0, *points, len(data))
        out.append([data[a:b] for a, b in itertools.pairwise(bounds)])
    return out


@pytest.mark.parametrize("cuts", [1, 2])
def test_detokenizer_never_splits_a_character(cuts: int) -> None:
    data = SAMPLE.encode()
    for pieces in all_splits(data, cuts):
        detok = IncrementalDetokenizer()
        emitted = [detok.feed(p) for p in pieces]
        emitted.append(detok.flush())
        assert "".join(emitted) == SAMPLE
        assert all("\ufffd" not in chunk for chunk in emitted)


def test_detokenizer_drops_a_character_cut_off_at_the_end() -> None:
    detok = IncrementalDetokenizer()
    assert detok.feed(b"ok \xf0\x9f") == "ok "
    assert detok.flush() == ""


def test_detokenizer_replaces_invalid_bytes_in_the_middle() -> None:
    detok = IncrementalDetokenizer()
    assert detok.feed(b"a\xffb") == "a\ufffdb"


def feed_all(matcher: StopMatcher, chunks: list[str]) -> tuple[str, bool]:
    out = []
    for chunk in chunks:
        text, stopped = matcher.feed(chunk)
        out.append(text)
        if stopped:
            return "".join(out), True
    out.append(matcher.flush())
    return "".join(out), False


@pytest.mark.parametrize(
    ("text", "stops", "expected", "stopped"),
    [
        ("Hello world. Bye now", ("Bye",), "Hello world. ", True),
        ("abcabd", ("abd",), "abc", True),
        ("no stop here", ("STOP",), "no stop here", False),
        ("ends with St", ("Stop",), "ends with St", False),
        ("x END y STOP", ("STOP", "END"), "x ", True),
        ("aaab", ("aab",), "a", True),
        ("emoji 🙂 stop", ("🙂",), "emoji ", True),
    ],
)
def test_stop_matcher_at_every_boundary(
    text: str, stops: tuple[str, ...], expected: str, stopped: bool
) -> None:
    for cuts in (0, 1, 2):
        for points in itertools.combinations(range(1, len(text)), cuts):
            bounds = (0, *points, len(text))
            chunks = [text[a:b] for a, b in itertools.pairwise(bounds)]
            assert feed_all(StopMatcher(stops), chunks) == (expected, stopped), chunks


def test_stop_matcher_without_stops_passes_through() -> None:
    matcher = StopMatcher(())
    assert matcher.feed("anything") == ("anything", False)
    assert matcher.flush() == ""
