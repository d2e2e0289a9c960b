"""Continuous batching over llama.cpp: one thread, one context, many sequences per decode.

Each loop iteration admits waiting requests into free slots, builds one ``llama_batch``
holding one token for every decoding sequence plus prefill chunks for new ones, calls
``llama_decode`` once (it releases the GIL), samples every sequence that produced logits with
its own sampler (``sampling.py``), passes each token to the sequence's ``SequenceOutput``
(``engine/output.py``: text, thought, stop sequences, where the constraint applies), and hands
the resulting events to asyncio through ``loop.call_soon_threadsafe``, one call per event loop
per step. Cancelled sequences are dropped at the top of the next iteration, so a slot frees
within one decode step.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llama_cpp as llama
import numpy as np

from gemserve.engine.base import (
    EngineEvent,
    Finished,
    FinishReason,
    SamplingParams,
    TokenLogprob,
)
from gemserve.engine.llama.grammar import GrammarPlan
from gemserve.engine.llama.native import LoadedModel
from gemserve.engine.llama.native_thread import NativeThread
from gemserve.engine.llama.projector import MediaSpan, MultimodalPrompt, Projector, ProjectorError
from gemserve.engine.llama.sampling import TokenSampler, make_sampler
from gemserve.engine.llama.slots import Slot, choose_slot, common_prefix
from gemserve.engine.llama.specials import NOTHING_SHOWN, ShownTokens
from gemserve.engine.output import GateChange, SequenceOutput
from gemserve.errors import Internal, ResourceExhausted

log = logging.getLogger("gemserve.engine")

Sink = Callable[[list[EngineEvent]], None]


# Below this many shared prompt tokens a sequence prefills them itself: llama.cpp copies a
# whole KV stream between slots, which costs more than prefilling a short prompt.
SHARE_MIN_TOKENS = 48


@dataclass(eq=False)
class Sequence:
    """One request's state inside the scheduler. Only the engine thread mutates it."""

    prompt: list[int]  # token ids; negative keys where image embeddings go
    sampling: SamplingParams
    loop: asyncio.AbstractEventLoop
    sink: Sink
    # What becomes of each generated token: events, forced tokens, the constraint's gate.
    output: SequenceOutput
    media: MultimodalPrompt | None = None
    grammars: GrammarPlan | None = None  # the request's constraint, validated
    # Budget forcing: a thought shorter than ``thought_floor`` tokens may not close, through
    # ``close_token`` (the closing tag, when it is one token) or the end of generation.
    thought_floor: int = 0
    close_token: int | None = None
    # Special tokens the output reads as their text (tool-call markers, thought tags).
    shown: ShownTokens = NOTHING_SHOWN
    cancelled: bool = False
    # Filled in on admission:
    seq_id: int = -1
    n_past: int = 0  # tokens already in the KV cache
    cached: int = 0  # prompt tokens whose KV was reused from the slot's previous occupant
    decoded: list[int] = field(default_factory=list)  # generated tokens already in the KV cache
    last_token: int = -1
    n_generated: int = 0
    batch_index: int = -1
    sampler: TokenSampler | None = None
    outbox: list[EngineEvent] = field(default_factory=list)
    finished: bool = False
    next_span: int = 0  # index of the first image chunk not yet in the KV cache

    @property
    def prefilling(self) -> bool:
        return self.n_past < len(self.prompt)

    def waiting_span(self) -> MediaSpan | None:
        """The image chunk that must be decoded before any further prompt token."""
        if self.media is None or self.next_span >= len(self.media.spans):
            return None
        span = self.media.spans[self.next_span]
        return span if span.start == self.n_past else None

    def text_boundary(self) -> int:
        """Where the run of text tokens from ``n_past`` ends (the next image, or the end)."""
        if self.media is not None and self.next_span < len(self.media.spans):
            return self.media.spans[self.next_span].start
        return len(self.prompt)


class Scheduler:
    """Owns one model's llama.cpp context; every native call on it happens on the process's
    :class:`NativeThread`, which steps each scheduler in turn."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        slots: int,
        context_length: int,
        batch_tokens: int,
        threads: int,
        max_queued: int,
        native: NativeThread,
        projector: Projector | None = None,
    ) -> None:
        self._model = model
        self._native = native
        self._projector = projector
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
        self._threads = threads
        self.threads_now = threads
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
        self._embd_batch = None
        if projector is not None:
            # A second batch for image embeddings: llama_decode takes tokens or embeddings.
            batch = llama.llama_batch_init(batch_tokens, projector.n_embd, 1)
            self._embd_batch = batch
            self._embd = np.ctypeslib.as_array(batch.embd, shape=(batch_tokens * projector.n_embd,))
            self._embd_pos = np.ctypeslib.as_array(batch.pos, shape=(batch_tokens,))
            np.ctypeslib.as_array(batch.n_seq_id, shape=(batch_tokens,))[:] = 1
            np.ctypeslib.as_array(batch.logits, shape=(batch_tokens,))[:] = 0
            self._embd_seq_ids = [batch.seq_id[i] for i in range(batch_tokens)]

        self._cond = native.cond  # one lock for every scheduler the native thread drives
        self._waiting: deque[Sequence] = deque()
        self._free_slots = [Slot(seq_id) for seq_id in range(slots)]
        self._slot_of: dict[int, Slot] = {}
        self._active: list[Sequence] = []
        self._stopping = False
        self._crashed = False
        self._stopped = threading.Event()
        self.decode_steps = 0
        self.tokens_generated = 0
        self.requests_finished = 0
        self.requests_cancelled = 0
        self.images_encoded = 0
        self.peak_active = 0
        self.prompts_shared = 0  # admissions whose prompt KV was copied from a sequence in flight
        self.prefix_hit_tokens = 0  # prompt tokens found in the KV cache, not prefilled
        self.step_seconds = 0.0  # time in llama_decode of text steps, and their count
        self.steps_timed = 0

    def forget_traffic(self) -> None:
        """Forget the start-up check: its counters and the prompts its slots keep for reuse,
        so the engine starts as if it had served nothing. On the native thread, while idle.
        ``decode_steps`` keeps counting (slots are ordered by it): read it as a difference."""
        self.tokens_generated = self.requests_finished = self.requests_cancelled = 0
        self.images_encoded = self.peak_active = self.prompts_shared = 0
        self.prefix_hit_tokens = self.steps_timed = 0
        self.step_seconds = 0.0
        for slot in self._free_slots:
            llama.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
            slot.tokens = []

    # ----- called from any thread -------------------------------------------------------

    def start(self) -> None:
        self._native.attach(self)

    def submit(self, seq: Sequence) -> None:
        with self._cond:
            if self._crashed:
                raise Internal("The engine stopped after an internal error; see the server log.")
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

    def kv_cells_used(self) -> int:
        """KV cells holding tokens: the active sequences' and the prompts idle slots keep."""
        with self._cond:
            return sum(s.n_past for s in self._active) + sum(
                len(slot.tokens) for slot in self._free_slots
            )

    def stop(self) -> None:
        """Cancel everything, wait for the native thread to let go, and free native state.
        Not on the native thread (it waits for it)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._stopped.wait()
        llama.llama_batch_free(self._batch)
        if self._embd_batch is not None:
            llama.llama_batch_free(self._embd_batch)
        llama.llama_free(self._ctx)

    # ----- the engine thread --------------------------------------------------------------

    def wants_step(self) -> bool:
        """Under ``cond``: whether :meth:`step` has anything to do."""
        return not self._stopped.is_set() and bool(self._stopping or self._active or self._waiting)

    def step(self) -> bool:
        """One iteration on the native thread; False once this scheduler has stopped."""
        try:
            alive = self._step()
        except Exception:  # a bug: fail every request, and refuse new ones, rather than hang
            log.exception("engine step crashed")
            with self._cond:
                self._crashed = True
                doomed = [*self._active, *self._waiting]
                self._waiting.clear()
                self._active = []
            for seq in doomed:
                self._finish(seq, FinishReason.ERROR, "internal engine error")
            self._flush(doomed)
            alive = False
        if not alive:
            self._stopped.set()
        return alive

    def _step(self) -> bool:
        with self._cond:
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
                if self._wait_for_sibling(self._waiting[0]):
                    break  # a step later its KV comes from the sibling's, not a prefill
                seq = self._waiting.popleft()
                try:
                    self._admit(seq)
                except Exception:
                    # Neither waiting nor active any more: keep it where the crash handler
                    # finishes it, or its stream would wait forever.
                    if seq not in self._active:
                        self._active.append(seq)
                    raise
        if dropped:
            self._flush(dropped)
        if not self._active:
            return True
        threads = self._native.decode_threads(self._threads)
        if threads != self.threads_now:
            llama.llama_set_n_threads(self._ctx, threads, threads)
            self.threads_now = threads
        self._decode_media()
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
        """Take the free slot that already holds the longest prefix of this prompt (see
        ``choose_slot``), drop the rest of its cache, and prefill only what is new."""
        best = choose_slot(self._free_slots, self._slot_of.keys(), seq.prompt)
        self._free_slots.remove(best)
        # At least one prompt token is decoded again: its logits start the answer.
        reuse = min(common_prefix(best.tokens, seq.prompt), len(seq.prompt) - 1)
        if seq.media is not None:
            # An image is decoded whole: reuse stops at the start of one it would cut.
            for index, span in enumerate(seq.media.spans):
                if span.start + span.n_tokens <= reuse:
                    seq.next_span = index + 1
                    continue
                reuse = min(reuse, span.start)
                break
        sibling, shared = self._sibling(seq)
        if sibling is not None and shared > reuse + SHARE_MIN_TOKENS:
            # A sequence in flight holds more of this prompt than any idle slot: copy its KV
            # stream (llama.cpp copies whole streams between slots) and cut it to the prompt.
            llama.llama_memory_seq_cp(self._memory, sibling.seq_id, best.seq_id, -1, -1)
            # The copy holds everything the sibling decoded (past the prompt too): cut it.
            best.tokens = [*sibling.prompt[: sibling.n_past], *sibling.decoded]
            reuse = shared
            self.prompts_shared += 1
        if reuse < len(best.tokens) and not llama.llama_memory_seq_rm(
            self._memory, best.seq_id, reuse, -1
        ):
            llama.llama_memory_seq_rm(self._memory, best.seq_id, -1, -1)
            reuse = 0
        best.tokens = []
        self._slot_of[best.seq_id] = best
        seq.seq_id = best.seq_id
        seq.n_past = seq.cached = reuse
        self.prefix_hit_tokens += reuse
        grammar = seq.grammars.for_gate(seq.output.gate) if seq.grammars is not None else None
        model = self._model
        seq.sampler = make_sampler(
            seq.sampling, grammar, model.vocab, model.n_vocab, guidance=model.guidance_tokenizer
        )
        self._active.append(seq)

    def _sibling(self, seq: Sequence) -> tuple[Sequence | None, int]:
        """The active sequence whose KV cache holds the longest prefix of ``seq``'s prompt
        (text prompts only: image chunks are not shared), and that prefix's length."""
        if seq.media is not None:
            return None, 0
        best: Sequence | None = None
        longest = 0
        for other in self._active:
            if other.media is not None or other.cancelled:
                continue
            shared = min(common_prefix(other.prompt, seq.prompt), other.n_past, len(seq.prompt) - 1)
            if shared > longest:
                best, longest = other, shared
        return best, longest

    def _wait_for_sibling(self, seq: Sequence) -> bool:
        """Whether ``seq`` should wait for an active sequence still prefilling a long prefix
        of the same prompt (the candidates of one request, or one system prompt sent by many
        clients at once): a step later it copies that KV instead of computing it again."""
        if seq.media is not None:
            return False
        for other in self._active:
            if not other.prefilling or other.media is not None or other.cancelled:
                continue
            shared = min(common_prefix(other.prompt, seq.prompt), len(seq.prompt) - 1)
            if shared > SHARE_MIN_TOKENS and shared > other.n_past:
                return True
        return False

    def _decode_media(self) -> None:
        """Encode one waiting image chunk and decode its embeddings (one image per step, so
        the other sequences keep decoding between the images of a long prompt)."""
        if self._projector is None or self._embd_batch is None:
            return
        for seq in self._active:
            span = seq.waiting_span()
            if span is None or seq.finished:
                continue
            try:
                embeddings = self._projector.encode(span)
            except ProjectorError as exc:
                log.error("image encoding failed: %s", exc)
                self._finish(seq, FinishReason.ERROR, "image encoding failed")
                return
            self.images_encoded += 1
            rc = self._decode_embeddings(seq.seq_id, span, embeddings)
            if rc != 0:
                log.error("llama_decode returned %d for an image of %d tokens", rc, span.n_tokens)
                self._finish(seq, FinishReason.ERROR, f"llama_decode failed with code {rc}")
                return
            seq.n_past = span.start + span.n_tokens
            seq.next_span += 1
            return

    def _decode_embeddings(
        self, seq_id: int, span: MediaSpan, embeddings: np.ndarray[Any, Any]
    ) -> int:
        assert self._embd_batch is not None
        assert self._projector is not None
        n_embd = self._projector.n_embd
        if span.non_causal:
            # The image attends to itself both ways; it fits one batch (checked at admission).
            llama.llama_set_causal_attn(self._ctx, False)
        try:
            for offset in range(0, span.n_tokens, self.batch_tokens):
                rows = min(self.batch_tokens, span.n_tokens - offset)
                self._embd[: rows * n_embd] = embeddings[offset : offset + rows].reshape(-1)
                first = span.start + offset
                self._embd_pos[:rows] = np.arange(first, first + rows, dtype=self._embd_pos.dtype)
                for i in range(rows):
                    self._embd_seq_ids[i][0] = seq_id
                self._embd_batch.n_tokens = rows
                rc: int = llama.llama_decode(self._ctx, self._embd_batch)
                self.decode_steps += 1
                if rc != 0:
                    return rc
            return 0
        finally:
            if span.non_causal:
                llama.llama_set_causal_attn(self._ctx, True)

    def _decode_once(self) -> None:
        decoding = [s for s in self._active if not s.prefilling]
        # Prefill chunks share what the decoding tokens leave, first come first served.
        budget = self.batch_tokens - len(decoding)
        chunks: list[tuple[Sequence, int]] = []
        for seq in self._active:
            if budget <= 0:
                break
            if not seq.prefilling:
                continue
            take = min(budget, seq.text_boundary() - seq.n_past)
            if take <= 0:
                continue  # its next image is decoded in a step of its own
            chunks.append((seq, seq.n_past + take))
            budget -= take
        # In sequence-id order: llama.cpp cuts a batch over per-slot KV streams into one
        # weight pass per run of consecutive ids *as they appear in the batch*.
        ends = {id(seq): end for seq, end in chunks}
        n = 0
        for seq in sorted([*decoding, *(s for s, _ in chunks)], key=lambda s: s.seq_id):
            sid = seq.seq_id
            end = ends.get(id(seq), -1)
            if end < 0:
                self._tokens[n] = seq.last_token
                self._pos[n] = seq.n_past
                self._seq_ids[n][0] = sid
                self._logits[n] = 1
                seq.batch_index = n
                n += 1
                continue
            start = seq.n_past
            take = end - start
            self._tokens[n : n + take] = seq.prompt[start:end]
            self._pos[n : n + take] = np.arange(start, end, dtype=self._pos.dtype)
            self._logits[n : n + take] = 0
            for i in range(n, n + take):
                self._seq_ids[i][0] = sid
            n += take
            if end == len(seq.prompt):
                self._logits[n - 1] = 1
                seq.batch_index = n - 1
            else:
                seq.batch_index = -1
        if n == 0:
            return
        self.peak_active = max(self.peak_active, len(decoding) + len(chunks))
        self._batch.n_tokens = n
        started = time.perf_counter()
        rc = llama.llama_decode(self._ctx, self._batch)
        self.step_seconds += time.perf_counter() - started
        self.steps_timed += 1
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
                sampler = seq.sampler
                assert sampler is not None
                forced = seq.output.forced
                if forced and not sampler.allows(forced[0]):
                    # A grammar that forbids the tag here (an empty thought, say) would make
                    # llama.cpp abort on accepting it: let the model write on instead.
                    forced.clear()
                ranked = None
                if seq.sampling.logprobs is not None and seq.output.answering:
                    # Before sampling: samplers edit the logits in place.
                    ranked = self._log_softmax(seq.batch_index)
                banned = self._banned(seq)
                if banned:
                    pointer = llama.llama_get_logits_ith(self._ctx, seq.batch_index)
                    logits = np.ctypeslib.as_array(pointer, shape=(self._model.n_vocab,))
                    logits[list(banned)] = -np.inf
                if forced:
                    # The engine writes this token (a thought's closing tag), not the model.
                    token = forced.popleft()
                    sampler.accept(token)
                else:
                    token = sampler.sample(self._ctx, seq.batch_index)
                seq.batch_index = -1
                if ranked is not None and not self._model.is_eog(token):
                    seq.outbox.append(self._logprob(ranked, token, seq.sampling.logprobs or 0))
                self._on_token(seq, token)

    def _banned(self, seq: Sequence) -> tuple[int, ...]:
        """Tokens the next sample may not be: the end of generation before the request's
        minimum, and the thought's closing token before its floor."""
        output = seq.output
        if output.thinking and output.thought_tokens < seq.thought_floor:
            eog = self._model.eog_tokens()
            return eog if seq.close_token is None else (*eog, seq.close_token)
        if seq.n_generated - output.thought_tokens < seq.sampling.min_output_tokens:
            return self._model.eog_tokens()
        return ()

    def _log_softmax(self, batch_index: int) -> np.ndarray[Any, np.dtype[np.float32]]:
        model = self._model
        pointer = llama.llama_get_logits_ith(self._ctx, batch_index)
        logits = np.ctypeslib.as_array(pointer, shape=(model.n_vocab,)).astype(np.float32)
        top = logits.max()
        ranked: np.ndarray[Any, np.dtype[np.float32]] = logits - np.float32(
            top + np.log(np.exp(logits - top).sum(dtype=np.float64))
        )
        return ranked

    def _logprob(
        self, ranked: np.ndarray[Any, np.dtype[np.float32]], token: int, alternatives: int
    ) -> TokenLogprob:
        model = self._model

        def text(t: int) -> str:
            return model.piece(t).decode("utf-8", errors="replace")

        top: tuple[tuple[str, float], ...] = ()
        if alternatives > 0:
            best = np.argpartition(-ranked, alternatives)[:alternatives]
            best = best[np.argsort(-ranked[best])]
            top = tuple((text(int(t)), float(ranked[t])) for t in best)
        return TokenLogprob(text(token), float(ranked[token]), top)

    def _on_token(self, seq: Sequence, token: int) -> None:
        model = self._model
        if model.is_eog(token):
            self._finish(seq, FinishReason.STOP)
            return
        seq.n_generated += 1
        self.tokens_generated += 1
        output = seq.output
        if output.feed(seq.shown.pieces.get(token) or model.piece(token), seq.outbox):
            self._finish(seq, FinishReason.STOP)
        elif seq.n_generated - output.thought_tokens >= seq.sampling.max_output_tokens:
            self._finish(seq, FinishReason.MAX_TOKENS)
        elif seq.n_past + 1 >= self.context_length:
            self._finish(seq, FinishReason.CONTEXT)
        else:
            if output.change is not None and not self._switch(seq, token, output.take_change()):
                return
            seq.last_token = token

    def _switch(self, seq: Sequence, token: int, change: GateChange | None) -> bool:
        """The constraint's grammar switches on or off before the next token: a new sampler
        with the same penalty history, whose grammar first takes the text generated from the
        switch point on. False (the sequence ends in error) when that text, sampled before the
        grammar applied, already breaks it."""
        plans = seq.grammars
        old = seq.sampler
        if change is None or plans is None or old is None:
            return True
        model = self._model
        sampler = make_sampler(
            seq.sampling,
            plans.for_gate(change.gate),
            model.vocab,
            model.n_vocab,
            history=[*seq.decoded, token],
            guidance=model.guidance_tokenizer,
        )
        old.free()
        seq.sampler = sampler
        if change.text and not sampler.replay(seq.shown.tokenize(model, change.text)):
            log.warning("output broke its grammar where it switched on: %r", change.text[:80])
            self._finish(
                seq,
                FinishReason.ERROR,
                "the output written before the constraint switched on does not match its grammar",
            )
            return False
        return True

    def _finish(self, seq: Sequence, reason: FinishReason, error: str | None = None) -> None:
        if seq.finished:
            return
        seq.finished = True
        self.requests_finished += 1
        if reason is FinishReason.CANCELLED:
            self.requests_cancelled += 1
        seq.output.finish(reason, seq.outbox)
        media_tokens: tuple[int, ...] = ()
        if seq.media is not None:
            media_tokens = seq.media.media_tokens
            if self._projector is not None:
                self._projector.free(seq.media)
        seq.outbox.append(
            Finished(
                reason,
                len(seq.prompt),
                seq.n_generated,
                error,
                cached_tokens=seq.cached,
                media_tokens=media_tokens,
                thought_tokens=seq.output.thought_tokens,
            )
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
            seq.sampler.free()
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
