"""Which KV slot a new request takes.

With one KV stream per slot (``kv_unified`` off), llama.cpp splits a batch into one micro-batch
per run of consecutive sequence ids (``llama_batch_allocr::split_equal`` with ``sequential``),
and every micro-batch is a full pass over the weights. Eight decoding sequences in slots
0..7 cost one pass per step; the same eight spread over two runs cost two. So a new request
goes to the free slot that keeps the busy ids in the fewest runs, unless another slot holds
a clearly longer prefix of its prompt (a conversation's next turn), whose reuse saves more.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

# Prefix lengths within this many tokens of the best count as equally good: a shared chat
# template header is not worth a second weight pass on every step of the request.
REUSE_TOLERANCE = 64


@dataclass(eq=False)
class Slot:
    """One KV stream. It keeps the tokens of its last sequence so a follow-up can reuse them."""

    seq_id: int
    tokens: list[int] = field(default_factory=list)
    last_used: int = 0


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def count_runs(ids: Collection[int]) -> int:
    """Runs of consecutive integers in ``ids``: {0, 1, 2, 5, 6} has two."""
    return sum(1 for i in ids if i - 1 not in ids)


def choose_slot(free: list[Slot], busy: Collection[int], prompt: Sequence[int]) -> Slot:
    """The free slot for ``prompt``: longest reusable prefix first (within a tolerance), then
    fewest runs of busy ids, then the longer prefix, then the least recently used cache."""
    reuse = {slot.seq_id: common_prefix(slot.tokens, prompt) for slot in free}
    best = max(reuse.values())
    busy_ids = set(busy)

    def key(slot: Slot) -> tuple[bool, int, int, int, int]:
        shared = reuse[slot.seq_id]
        runs = count_runs(busy_ids | {slot.seq_id})
        return (shared < best - REUSE_TOLERANCE, runs, -shared, slot.last_used, slot.seq_id)

    return min(free, key=key)
