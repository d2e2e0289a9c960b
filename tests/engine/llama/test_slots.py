"""Slot choice: prefix reuse first, then busy ids kept in as few runs as possible."""

from __future__ import annotations

from gemserve.engine.llama.slots import REUSE_TOLERANCE, Slot, choose_slot, count_runs

PROMPT = list(range(1000, 1400))


def test_count_runs() -> None:
    assert count_runs([]) == 0
    assert count_runs({0, 1, 2, 5, 6}) == 2
    assert count_runs({3}) == 1
    assert count_runs({0, 2, 4}) == 3


def test_fills_the_gap_between_busy_slots() -> None:
    free = [Slot(5, last_used=1), Slot(3, last_used=9), Slot(7, last_used=0)]
    chosen = choose_slot(free, busy={0, 1, 2, 4}, prompt=PROMPT)
    assert chosen.seq_id == 3  # joins 0-2 and 4 into one run; 5 would leave two runs, 7 three


def test_extends_the_busy_run_rather_than_starting_a_new_one() -> None:
    free = [Slot(6), Slot(2), Slot(3)]
    assert choose_slot(free, busy={0, 1}, prompt=PROMPT).seq_id == 2


def test_a_long_cached_prefix_beats_contiguity() -> None:
    conversation = Slot(6, tokens=PROMPT[:300])
    free = [Slot(2, tokens=PROMPT[:10]), conversation]
    assert choose_slot(free, busy={0, 1}, prompt=PROMPT) is conversation


def test_a_prefix_within_the_tolerance_does_not_beat_contiguity() -> None:
    shared_header = REUSE_TOLERANCE - 1
    far = Slot(6, tokens=PROMPT[:shared_header])
    near = Slot(2)
    assert choose_slot([far, near], busy={0, 1}, prompt=PROMPT) is near


def test_among_equal_choices_the_longer_prefix_then_the_oldest_cache() -> None:
    older = Slot(1, tokens=[7, 7], last_used=1)
    newer = Slot(2, tokens=[8, 8], last_used=5)
    assert choose_slot([newer, older], busy=set(), prompt=PROMPT) is older
    with_prefix = Slot(3, tokens=PROMPT[:5], last_used=9)
    assert choose_slot([newer, older, with_prefix], busy=set(), prompt=PROMPT) is with_prefix
