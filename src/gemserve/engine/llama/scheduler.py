"""Continuous batching over llama.cpp: one thread, one context, many sequences per decode.

Each loop iteration admits waiting requests into free slots, builds one ``llama_batch``
holding one token for every decoding sequence plus prefill chunks for new ones, calls
``llama_decode`` once (it releases the GIL), samples every sequence that produced logits with
its own sampler chain, and hands the resulting text to asyncio through
``loop.call_soon_threadsafe``, one call per event loop per step. Cancelled sequences are
dropped at the top of the next iteration, so a slot frees within one decode step.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import llama_cpp as llama
import numpy as np

from gemserve.engine.base import EngineEvent, Finished, FinishReason, SamplingParams, TextDelta
from gemserve.engine.llama.native import LoadedModel
from gemserve.engine.text import IncrementalDetokenizer, StopMatcher
from gemserve.errors import ResourceExhausted

log = logging.getLogger("gemserve.engine")

# Tokens of the answer so far that the penalties look at (llama.cpp's penalty_last_n).
PENALTY_WINDOW = 256

Sink = Callable[[list[EngineEvent]], None]


@dataclass(eq=False)
class Sequence:
    """One request's state inside the scheduler. Only the engine thread mutates it."""

    prompt: list[int]
    sampling: SamplingParams
    loop: asyncio.AbstractEventLoop
    sink: Sink
    cancelled: bool = False
    # Filled in on admission:
    seq_id: int = -1
    n_past: int = 0  # tokens already in the KV cache
    cached: int = 0  # prompt tokens whose KV was reused from the slot's previous occupant
    decoded: list[int] = field(default_factory=list)  # generated tokens already in the KV cache
    last_token: int = -1
    n_generated: int = 0
    batch_index: int = -1
    sampler: ctypes.c_void_p | None = None
    detok: IncrementalDetokenizer = field(default_factory=IncrementalDetokenizer)
    stops: StopMatcher | None = None
    outbox: list[EngineEvent] = field(default_factory=list)
    finished: bool = False

    @property
    def prefilling(self) -> bool:
        return self.n_past < len(self.prompt)


@dataclass(eq=False)
class Slot:
    """One KV stream. It keeps the tokens of its last sequence so a follow-up can reuse them."""

    seq_id: int
    tokens: list[int] = field(default_factory=list)
    last_used: int = 0


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _build_sampler(sampling: SamplingParams, n_vocab: int) -> ctypes.c_void_p:
    chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
    if sampling.presence_penalty or sampling.frequency_penalty or sampling.repeat_penalty != 1.0:
        llama.llama_sampler_chain_add(
            chain,
            llama.llama_sampler_init_penalties(
                n_vocab,
                PENALTY_WINDOW,
                sampling.repeat_penalty,
                sampling.frequency_penalty,
                sampling.presence_penalty,
            ),
        )
    if sampling.temperature <= 0.0:
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_greedy())
        return chain  # type: ignore[no-any-return]
    if sampling.top_k > 0:
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_top_k(sampling.top_k))
    if sampling.top_p < 1.0:
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_top_p(sampling.top_p, 1))
    llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_temp(sampling.temperature))
    seed = llama.LLAMA_DEFAULT_SEED if sampling.seed is None else sampling.seed & 0xFFFFFFFF
    llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_dist(seed))
    return chain  # type: ignore[no-any-return]


class Scheduler:
    """Owns the llama.cpp context; all native calls on it happen on ``self._thread``."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        slots: int,
        context_length: int,
        batch_tokens: int,
        threads: int,
        max_queued: int,
    ) -> None:
        self._model = model
        self.slots = slots
        self.context_length = context_length
        self.batch_tokens = batch_tokens
        self._max_queued = max_queued
        params = llama.llama_context_default_params()
        # One KV stream per slot (kv_unified off): each sequence gets context_length cells, and
        # the caches kept for reuse by idle slots do not widen the attention of active ones.
        params.n_ctx = context_length * slots
        params.n_seq_max = slots
        params.kv_unified = False
        params.n_batch = batch_tokens
        params.n_ubatch = batch_tokens
        params.n_threads = threads
        params.n_threads_batch = threads
        params.no_perf = True
        ctx = llama.llama_init_from_model(model.ptr, params)
        if not ctx:
            raise RuntimeError("llama.cpp could not create a context")
        self._ctx = ctx
        self._memory = llama.llama_get_memory(ctx)
        self._batch = llama.llama_batch_init(batch_tokens, 0, 1)
        self._tokens = np.ctypeslib.as_array(self._batch.token, shape=(batch_tokens,))
        self._pos = np.ctypeslib.as_array(self._batch.pos, shape=(batch_tokens,))
        self._n_seq = np.ctypeslib.as_array(self._batch.n_seq_id, shape=(batch_tokens,))
        self._logits = np.ctypeslib.as_array(self._batch.logits, shape=(batch_tokens,))
        self._n_seq[:] = 1
        self._seq_ids = [self._batch.seq_id[i] for i in range(batch_tokens)]

        self._cond = threading.Condition()
        self._waiting: deque[Sequence] = deque()
        self._free_slots = [Slot(seq_id) for seq_id in range(slots)]
        self._slot_of: dict[int, Slot] = {}
        self._active: list[Sequence] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="gemserve-engine", daemon=True)
        self.decode_steps = 0
        self.tokens_generated = 0
        self.requests_finished = 0
        self.requests_cancelled = 0

    # ----- called from any thread -------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, seq: Sequence) -> None:
        with self._cond:
            if self._stopping:
                raise ResourceExhausted("The engine is shutting down.")
            busy = len(self._active) + len(self._waiting)
            if busy >= self.slots + self._max_queued:
                raise ResourceExhausted(
                    f"All {self.slots} engine slots are busy and {self._max_queued} requests "
                    "are already waiting; retry later."
                )
            self._waiting.append(seq)
            self._cond.notify()

    def cancel(self, seq: Sequence) -> None:
        with self._cond:
            seq.cancelled = True
            self._cond.notify()

    def counts(self) -> tuple[int, int]:
        with self._cond:
            return len(self._active), len(self._waiting)

    def stop(self) -> None:
        """Cancel everything, end the thread and free native state."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()
        llama.llama_batch_free(self._batch)
        llama.llama_free(self._ctx)

    # ----- the engine thread --------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._step():
                pass
        except BaseException:  # pragma: no cover - a bug; fail every request rather than hang
            log.exception("engine thread crashed")
            for seq in [*self._active, *self._waiting]:
                self._finish(seq, FinishReason.ERROR, "internal engine error")
            self._flush(self._active)
            raise

    def _step(self) -> bool:
        with self._cond:
            while not self._stopping and not self._active and not self._waiting:
                self._cond.wait()
            if self._stopping:
                doomed = [*self._active, *self._waiting]
                self._waiting.clear()
                for seq in doomed:
                    self._finish(seq, FinishReason.CANCELLED)
                self._flush(doomed)
                self._active.clear()
                return False
            dropped = self._drop_cancelled_locked()
            while self._waiting and self._free_slots:
                self._admit(self._waiting.popleft())
        if dropped:
            self._flush(dropped)
        if not self._active:
            return True
        self._decode_once()
        self._flush(self._active)
        self._active = [s for s in self._active if not s.finished]
        return True

    def _drop_cancelled_locked(self) -> list[Sequence]:
        dropped = [s for s in self._active if s.cancelled]
        if dropped:
            self._active = [s for s in self._active if not s.cancelled]
        if any(s.cancelled for s in self._waiting):
            waiting_dropped = [s for s in self._waiting if s.cancelled]
            self._waiting = deque(s for s in self._waiting if not s.cancelled)
            dropped.extend(waiting_dropped)
        for seq in dropped:
            self._finish(seq, FinishReason.CANCELLED)
        return dropped

    def _admit(self, seq: Sequence) -> None:
        """Take the free slot that already holds the longest prefix of this prompt (else the
        least recently used one), drop the rest of its cache, and prefill only what is new."""
        best = max(
            self._free_slots,
            key=lambda slot: (common_prefix(slot.tokens, seq.prompt), -slot.last_used),
        )
        self._free_slots.remove(best)
        # At least one prompt token is decoded again: its logits start the answer.
        reuse = min(common_prefix(best.tokens, seq.prompt), len(seq.prompt) - 1)
        if reuse < len(best.tokens) and not llama.llama_memory_seq_rm(
            self._memory, best.seq_id, reuse, -1
        ):
            llama.llama_memory_seq_rm(self._memory, best.seq_id, -1, -1)
            reuse = 0
        best.tokens = []
        self._slot_of[best.seq_id] = best
        seq.seq_id = best.seq_id
        seq.n_past = seq.cached = reuse
        seq.sampler = _build_sampler(seq.sampling, self._model.n_vocab)
        seq.stops = StopMatcher(seq.sampling.stop_sequences)
        self._active.append(seq)

    def _decode_once(self) -> None:
        n = 0
        decoding = [s for s in self._active if not s.prefilling]
        for seq in decoding:
            self._tokens[n] = seq.last_token
            self._pos[n] = seq.n_past
            self._seq_ids[n][0] = seq.seq_id
            self._logits[n] = 1
            seq.batch_index = n
            n += 1
        budget = self.batch_tokens - n
        chunks: list[tuple[Sequence, int]] = []
        for seq in self._active:
            if budget <= 0:
                break
            if not seq.prefilling:
                continue
            start = seq.n_past
            take = min(budget, len(seq.prompt) - start)
            end = start + take
            self._tokens[n : n + take] = seq.prompt[start:end]
            self._pos[n : n + take] = np.arange(start, end, dtype=self._pos.dtype)
            self._logits[n : n + take] = 0
            sid = seq.seq_id
            for i in range(n, n + take):
                self._seq_ids[i][0] = sid
            n += take
            budget -= take
            if end == len(seq.prompt):
                self._logits[n - 1] = 1
                seq.batch_index = n - 1
            else:
                seq.batch_index = -1
            chunks.append((seq, end))
        self._batch.n_tokens = n
        rc = llama.llama_decode(self._ctx, self._batch)
        self.decode_steps += 1
        if rc != 0:
            log.error("llama_decode returned %d for a batch of %d tokens", rc, n)
            for seq in [*decoding, *(s for s, _ in chunks)]:
                self._finish(seq, FinishReason.ERROR, f"llama_decode failed with code {rc}")
            return
        for seq, end in chunks:
            seq.n_past = end
        for seq in decoding:
            seq.n_past += 1
            seq.decoded.append(seq.last_token)
        for seq in self._active:
            if seq.batch_index >= 0 and not seq.finished:
                token = llama.llama_sampler_sample(seq.sampler, self._ctx, seq.batch_index)
                seq.batch_index = -1
                self._on_token(seq, token)

    def _on_token(self, seq: Sequence, token: int) -> None:
        model = self._model
        if model.is_eog(token):
            self._finish(seq, FinishReason.STOP)
            return
        seq.n_generated += 1
        self.tokens_generated += 1
        text = seq.detok.feed(model.piece(token))
        stopped = False
        if text and seq.stops is not None:
            text, stopped = seq.stops.feed(text)
        if text:
            seq.outbox.append(TextDelta(text))
        if stopped:
            self._finish(seq, FinishReason.STOP, keep_held=False)
        elif seq.n_generated >= seq.sampling.max_output_tokens:
            self._finish(seq, FinishReason.MAX_TOKENS)
        elif seq.n_past + 1 >= self.context_length:
            self._finish(seq, FinishReason.CONTEXT)
        else:
            seq.last_token = token

    def _finish(
        self,
        seq: Sequence,
        reason: FinishReason,
        error: str | None = None,
        *,
        keep_held: bool = True,
    ) -> None:
        if seq.finished:
            return
        seq.finished = True
        self.requests_finished += 1
        if reason is FinishReason.CANCELLED:
            self.requests_cancelled += 1
        if keep_held and reason in (
            FinishReason.STOP,
            FinishReason.MAX_TOKENS,
            FinishReason.CONTEXT,
        ):
            tail = seq.detok.flush()
            if seq.stops is not None:
                tail, _ = seq.stops.feed(tail)
                tail += seq.stops.flush()
            if tail:
                seq.outbox.append(TextDelta(tail))
        seq.outbox.append(
            Finished(reason, len(seq.prompt), seq.n_generated, error, cached_tokens=seq.cached)
        )
        if seq.seq_id >= 0:
            slot = self._slot_of.pop(seq.seq_id)
            if reason is FinishReason.ERROR:
                llama.llama_memory_seq_rm(self._memory, seq.seq_id, -1, -1)
                slot.tokens = []
            else:  # keep the KV cache: the next turn of this conversation starts from it
                slot.tokens = seq.prompt[: min(seq.n_past, len(seq.prompt))] + seq.decoded
            slot.last_used = self.decode_steps
            self._free_slots.append(slot)
            seq.seq_id = -1
        if seq.sampler is not None:
            llama.llama_sampler_free(seq.sampler)
            seq.sampler = None

    def _flush(self, seqs: list[Sequence]) -> None:
        """Deliver this step's events: one thread-safe wake-up per event loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Sink, list[EngineEvent]]]] = {}
        for seq in seqs:
            if seq.outbox:
                by_loop.setdefault(seq.loop, []).append((seq.sink, seq.outbox))
                seq.outbox = []
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                for seq in seqs:
                    if seq.loop is loop:
                        seq.cancelled = True


def _deliver(items: list[tuple[Sink, list[EngineEvent]]]) -> None:
    for sink, events in items:
        sink(events)
