"""Embeddings over llama.cpp: a second context on the loaded weights, stepped by the native
thread between the generation scheduler's steps.

The context is made with ``embeddings`` on and llama.cpp's pooling off (``NONE``): every
token's final hidden state comes back (the output norm's result, the tensor llama.cpp's own
pooling reads), and this module pools them: the mean, the first token (``cls``) or the last
(``last``). Pooling here rather than in llama.cpp's graph lets a text be as long as the
model's context while each decode stays at ``batch_tokens``: llama.cpp pools per
micro-batch, so a text split across two would silently get the mean of its last part. The
result equals llama.cpp's own pooling where a text fits one batch (tests/engine).

Texts of every waiting request are packed into one ``llama_batch`` (one sequence per text,
one unified KV cache of ``capacity`` cells), as llama.cpp's embedding server packs them, and
one step decodes one batch: generation keeps stepping between the chunks of a large request.
A text's KV cells are freed as soon as it is pooled. The context is created on the first
request, so a server that never embeds pays nothing for it.

With embeddings on, llama.cpp makes every token an output, so a decoder's graph also runs its
LM head over every token for logits nobody reads (8-14% of a decode's time on SmolLM2-135M);
llama.cpp's own embedding server pays that too. gemserve's build compiles an eval callback
into libllama (``engine/cpu/embedding_eval.c``) that ends the graph at the embeddings' node
(with pooling off, the final norm's output), before the head. A new context decodes a probe
both ways and keeps the short graph only if it really ended early and the rows are identical,
so a model whose embeddings end elsewhere simply runs the whole graph.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import llama_cpp as llama
import numpy as np
import numpy.typing as npt

from gemserve.engine.llama.native import LoadedModel
from gemserve.engine.llama.native_thread import NativeThread
from gemserve.errors import GemserveError, Internal, ResourceExhausted

log = logging.getLogger("gemserve.engine")

Pooling = Literal["mean", "cls", "last"]
# Texts decoded together at most (sequences of the embedding context; llama.cpp allows 256).
MAX_SEQUENCES = 64
# Token ids of the probe that checks the short graph against the whole one (any vocabulary
# has them): two sequences, so the check covers a packed batch.
_PROBE = ((1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12), (13, 14, 15, 16, 17, 18, 19))


def head_skipping_callback() -> Any:
    """libllama's ``gemserve_embedding_eval`` as an eval callback, or None where this
    llama-cpp-python was not built by gemserve's setup (the hooks add the function)."""
    function = getattr(llama.llama_cpp._lib, "gemserve_embedding_eval", None)
    if function is None:
        return None
    return ctypes.cast(function, llama.ggml_backend_sched_eval_callback)


@dataclass(eq=False)
class EmbedJob:
    """One request's texts (token ids), and where their vectors go. The future is resolved
    on ``loop``; only the native thread touches the rest after ``submit``."""

    texts: list[list[int]]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[npt.NDArray[np.float32]]
    vectors: npt.NDArray[np.float32]
    remaining: int
    next_text: int = 0  # the first text not yet admitted
    cancelled: bool = False
    failed: bool = False


@dataclass(eq=False)
class _Text:
    job: EmbedJob
    index: int
    tokens: list[int]
    seq_id: int
    done: int = 0  # tokens decoded so far
    pooled: npt.NDArray[np.float64] | None = field(default=None)


class EmbeddingScheduler:
    """Owns one model's embedding context; its steps run on the process's NativeThread."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        capacity: int,
        batch_tokens: int,
        threads: int,
        max_queued: int,
        native: NativeThread,
        pooling: Pooling = "mean",
    ) -> None:
        self._model = model
        self._native = native
        # KV cells shared by the texts in flight: a text up to `capacity` tokens always fits.
        self.capacity = max(capacity, batch_tokens)
        self.batch_tokens = batch_tokens
        self.pooling: Pooling = pooling
        self.n_embd: int = llama.llama_model_n_embd(model.ptr)
        self._threads = threads
        self.threads_now = threads
        self._max_queued = max_queued
        self._cond = native.cond
        self._waiting: deque[EmbedJob] = deque()
        self._active: list[_Text] = []
        self._free_seqs = list(range(MAX_SEQUENCES))
        self._used = 0  # KV cells held by the texts in flight
        self._ctx: Any = None
        self._memory: Any = None
        self._batch: Any = None
        # The eval callback's state: {stop before the LM head (see above), decodes it stopped}.
        self._head = (ctypes.c_int * 2)(0, 0)
        self._callback: Any = None
        self._stopping = False
        self._crashed = False
        self._stopped = threading.Event()
        self.decode_steps = 0
        self.sequences_decoded = 0  # over all decodes: sequences per decode, on average
        self.texts_embedded = 0
        self.tokens_embedded = 0

    @property
    def skips_output_head(self) -> bool:
        """Whether decodes stop before the LM head (known once the context exists)."""
        return bool(self._head[0])

    @property
    def output_heads_skipped(self) -> int:
        """Decodes (the probe's included) that the callback ended before the LM head."""
        return int(self._head[1])

    # ----- called from any thread -------------------------------------------------------

    def start(self) -> None:
        self._native.attach(self)

    def submit(self, job: EmbedJob) -> None:
        with self._cond:
            if self._crashed:
                raise Internal("The engine stopped after an internal error; see the server log.")
            if self._stopping:
                raise ResourceExhausted("The engine is shutting down.")
            if len(self._waiting) >= self._max_queued + 1:
                raise ResourceExhausted(
                    f"{len(self._waiting)} embedding requests are already waiting; retry later."
                )
            self._waiting.append(job)
            self._cond.notify()

    def cancel(self, job: EmbedJob) -> None:
        with self._cond:
            job.cancelled = True
            self._cond.notify()

    def counts(self) -> tuple[int, int]:
        """Texts in flight, and requests waiting for room."""
        with self._cond:
            return len(self._active), len(self._waiting)

    def stop(self) -> None:
        """Fail what is left, wait for the native thread to let go, and free native state.
        Not on the native thread (it waits for it)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._stopped.wait()
        if self._batch is not None:
            llama.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx is not None:
            llama.llama_free(self._ctx)
            self._ctx = None

    # ----- the native thread --------------------------------------------------------------

    def wants_step(self) -> bool:
        """Under ``cond``: whether :meth:`step` has anything to do."""
        return not self._stopped.is_set() and bool(self._stopping or self._active or self._waiting)

    def step(self) -> bool:
        try:
            alive = self._step()
        except Exception:  # a bug: fail every request, and refuse new ones, rather than hang
            log.exception("embedding step crashed")
            with self._cond:
                self._crashed = True
                jobs = [*self._waiting, *(t.job for t in self._active)]
                self._waiting.clear()
                self._active = []
            for job in jobs:
                self._reject(job, Internal("Embedding failed; the server log has the details."))
            alive = False
        if not alive:
            self._stopped.set()
        return alive

    def _step(self) -> bool:
        with self._cond:
            if self._stopping:
                jobs = [*self._waiting, *(t.job for t in self._active)]
                self._waiting.clear()
                self._active = []
                for job in jobs:
                    self._reject(job, ResourceExhausted("The engine is shutting down."))
                return False
            self._drop_cancelled_locked()
            self._admit_locked()
        if not self._active:
            if self._ctx is not None and self._used == 0:
                llama.llama_memory_clear(self._memory, False)
            return True
        if self._ctx is None:
            self._create_context()
        threads = self._native.decode_threads(self._threads)
        if threads != self.threads_now:
            llama.llama_set_n_threads(self._ctx, threads, threads)
            self.threads_now = threads
        self._decode_once()
        return True

    def _drop_cancelled_locked(self) -> None:
        if any(job.cancelled or job.failed for job in self._waiting):
            self._waiting = deque(j for j in self._waiting if not (j.cancelled or j.failed))
        for text in [t for t in self._active if t.job.cancelled or t.job.failed]:
            self._release(text)

    def _admit_locked(self) -> None:
        """Texts in arrival order, while a sequence and room in the KV cache are free."""
        while self._waiting and self._free_seqs:
            job = self._waiting[0]
            tokens = job.texts[job.next_text]
            if self._used + len(tokens) > self.capacity:
                return
            seq_id = self._free_seqs.pop()
            self._active.append(_Text(job, job.next_text, tokens, seq_id))
            self._used += len(tokens)
            job.next_text += 1
            if job.next_text == len(job.texts):
                self._waiting.popleft()

    def _create_context(self) -> None:
        params = llama.llama_context_default_params()
        params.n_ctx = self.capacity
        params.n_batch = self.batch_tokens
        params.n_ubatch = self.batch_tokens
        params.n_seq_max = MAX_SEQUENCES
        params.kv_unified = True
        params.embeddings = True
        params.pooling_type = llama.LLAMA_POOLING_TYPE_NONE
        params.n_threads = self._threads
        params.n_threads_batch = self._threads
        params.no_perf = True
        self._callback = head_skipping_callback()
        if self._callback is not None:
            params.cb_eval = self._callback
            params.cb_eval_user_data = ctypes.cast(self._head, ctypes.c_void_p)
        ctx = llama.llama_init_from_model(self._model.ptr, params)
        if not ctx:
            raise RuntimeError("llama.cpp could not create an embedding context")
        self._ctx = ctx
        self._memory = llama.llama_get_memory(ctx)
        self._batch = llama.llama_batch_init(self.batch_tokens, 0, 1)
        self.threads_now = self._threads
        size = self.batch_tokens
        self._tokens = np.ctypeslib.as_array(self._batch.token, shape=(size,))
        self._pos = np.ctypeslib.as_array(self._batch.pos, shape=(size,))
        np.ctypeslib.as_array(self._batch.n_seq_id, shape=(size,))[:] = 1
        # Every token is an output: the embedding context pools (and llama.cpp requires it).
        np.ctypeslib.as_array(self._batch.logits, shape=(size,))[:] = 1
        self._seq_ids = [self._batch.seq_id[i] for i in range(size)]
        if self._callback is not None:
            self._head[0] = int(self._head_skip_is_exact())
            verdict = "skipped" if self.skips_output_head else "run (the probe differed)"
            log.debug("embedding: the LM head is %s", verdict)

    def _place(self, row: int, tokens: Sequence[int], start: int, seq_id: int) -> int:
        """Put one sequence's tokens (positions from ``start``) in the batch from ``row``;
        the next free row."""
        end = row + len(tokens)
        self._tokens[row:end] = tokens
        self._pos[row:end] = np.arange(start, start + len(tokens), dtype=self._pos.dtype)
        for i in range(row, end):
            self._seq_ids[i][0] = seq_id
        return end

    def _head_skip_is_exact(self) -> bool:
        """Decode the probe with the whole graph and with the short one: the short one must
        really have ended early (the node was found) and give the same rows; else the head
        runs (the graph's embeddings node is not where this model's embeddings end)."""
        rows = []
        stops = self.output_heads_skipped
        for skip in (0, 1):
            self._head[0] = skip
            n = 0
            for seq_id, tokens in enumerate(_PROBE):
                n = self._place(n, tokens, 0, seq_id)
            self._batch.n_tokens = n
            if llama.llama_decode(self._ctx, self._batch) != 0:
                llama.llama_memory_clear(self._memory, False)
                return False
            pointer = llama.llama_get_embeddings(self._ctx)
            rows.append(np.ctypeslib.as_array(pointer, shape=(n, self.n_embd)).copy())
            llama.llama_memory_clear(self._memory, False)
        stopped = self.output_heads_skipped == stops + 1
        return stopped and bool(np.array_equal(rows[0], rows[1]))

    def _decode_once(self) -> None:
        """One batch: the next chunk of each text in flight, oldest first, up to
        ``batch_tokens``; then pool what came back."""
        chunks: list[tuple[_Text, int, int]] = []  # text, first row, rows
        n = 0
        for text in self._active:
            take = min(self.batch_tokens - n, len(text.tokens) - text.done)
            if take <= 0:
                break
            chunks.append((text, n, take))
            n = self._place(n, text.tokens[text.done : text.done + take], text.done, text.seq_id)
        self._batch.n_tokens = n
        rc = llama.llama_decode(self._ctx, self._batch)
        self.decode_steps += 1
        self.sequences_decoded += len(chunks)
        if rc != 0:
            log.error("llama_decode returned %d for an embedding batch of %d tokens", rc, n)
            error = Internal("Embedding failed; the server log has the details.")
            with self._cond:
                for text, _, _ in chunks:
                    self._reject(text.job, error)
                    self._release(text)
            return
        pointer = llama.llama_get_embeddings(self._ctx)
        rows = np.ctypeslib.as_array(pointer, shape=(n, self.n_embd))
        finished: list[_Text] = []
        for text, first, take in chunks:
            self._pool(text, rows[first : first + take])
            text.done += take
            if text.done == len(text.tokens):
                finished.append(text)
        with self._cond:
            for text in finished:
                self._finish(text)

    def _pool(self, text: _Text, rows: npt.NDArray[np.float32]) -> None:
        if self.pooling == "mean":
            part = rows.sum(axis=0, dtype=np.float64)
            text.pooled = part if text.pooled is None else text.pooled + part
        elif self.pooling == "cls":
            if text.pooled is None:
                text.pooled = rows[0].astype(np.float64)
        else:  # last: the final chunk's last row
            text.pooled = rows[-1].astype(np.float64)

    def _finish(self, text: _Text) -> None:
        """Under ``cond``: the text is pooled; store its unit vector and free its cells."""
        job = text.job
        self._release(text)
        if job.cancelled or job.failed:
            return
        assert text.pooled is not None
        vector = text.pooled / len(text.tokens) if self.pooling == "mean" else text.pooled
        norm = float(np.linalg.norm(vector))
        job.vectors[text.index] = vector / norm if norm > 0 else vector
        self.texts_embedded += 1
        self.tokens_embedded += len(text.tokens)
        job.remaining -= 1
        if job.remaining == 0:
            self._deliver(job)

    def _release(self, text: _Text) -> None:
        """Under ``cond``: drop the text's KV cells and sequence."""
        if text not in self._active:
            return
        self._active.remove(text)
        if self._memory is not None:
            llama.llama_memory_seq_rm(self._memory, text.seq_id, -1, -1)
        self._free_seqs.append(text.seq_id)
        self._used -= len(text.tokens)

    def _deliver(self, job: EmbedJob) -> None:
        try:
            job.loop.call_soon_threadsafe(_resolve, job.future, job.vectors)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            job.cancelled = True

    def _reject(self, job: EmbedJob, error: GemserveError) -> None:
        if job.failed:
            return
        job.failed = True
        try:
            job.loop.call_soon_threadsafe(_fail, job.future, error)
        except RuntimeError:
            job.cancelled = True


def _resolve(
    future: asyncio.Future[npt.NDArray[np.float32]], vectors: npt.NDArray[np.float32]
) -> None:
    if not future.done():
        future.set_result(vectors)


def _fail(future: asyncio.Future[npt.NDArray[np.float32]], error: GemserveError) -> None:
    if not future.done():
        future.set_exception(error)
