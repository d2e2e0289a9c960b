"""The thought/answer split over every possible chunk boundary."""

from __future__ import annotations

import itertools

import pytest

from gemserve.engine.reasoning import Phase, ThinkingParser


def split_every_way(text: str, cuts: int) -> list[list[str]]:
    out = []
    for points in itertools.combinations(range(1, len(text)), cuts):
        bounds = (0, *points, len(text))
        out.append([text[a:b] for a, b in itertools.pairwise(bounds)])
    return out


def parse(chunks: list[str], *, phase: Phase = Phase.BEFORE) -> tuple[str, str]:
    parser = ThinkingParser("<think>", "</think>", phase=phase)
    thought: list[str] = []
    answer: list[str] = []
    for chunk in chunks:
        for is_thought, text in parser.feed(chunk):
            (thought if is_thought else answer).append(text)
    for is_thought, text in parser.flush():
        (thought if is_thought else answer).append(text)
    return "".join(thought), "".join(answer)


CASES = [
    ("<think>\nCount: 2 dogs.\n</think>\n\nFour paws each.", "Count: 2 dogs.\n", "Four paws each."),
    ("  <think>a<b</think>x", "a<b", "x"),
    ("No thinking here.", "", "No thinking here."),
    ("<thin>not a tag", "", "<thin>not a tag"),
    ("<think>never closed", "never closed", ""),
    ("<think></think>Only answer", "", "Only answer"),
    ("<think>x</thin></think>y", "x</thin>", "y"),
]


@pytest.mark.parametrize(("text", "thought", "answer"), CASES)
@pytest.mark.parametrize("cuts", [0, 1, 2])
def test_split_is_the_same_at_every_boundary(
    text: str, thought: str, answer: str, cuts: int
) -> None:
    for chunks in split_every_way(text, cuts) if cuts else [[text]]:
        assert parse(chunks) == (thought, answer), chunks


@pytest.mark.parametrize("cuts", [1, 2])
def test_a_prompt_that_opens_the_thought(cuts: int) -> None:
    text = "plan it\n</think>\n\nDone."
    for chunks in split_every_way(text, cuts):
        assert parse(chunks, phase=Phase.THOUGHT) == ("plan it\n", "Done.")


def test_a_prompt_that_closed_the_thought_leaves_only_answer() -> None:
    assert parse(["<think>x</think>y"], phase=Phase.ANSWER) == ("", "<think>x</think>y")


def test_phase_and_held_tag_follow_the_text() -> None:
    parser = ThinkingParser("<think>", "</think>")
    assert parser.phase is Phase.BEFORE
    assert parser.feed("<thi") == []
    assert parser.holding_tag
    assert parser.feed("nk>abc</th") == [(True, "abc")]
    assert parser.phase is Phase.THOUGHT
    assert parser.holding_tag
    assert parser.feed("ink>ok") == [(False, "ok")]
    assert parser.phase is Phase.ANSWER
    assert not parser.holding_tag
