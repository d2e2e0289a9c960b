"""``RemoteEngine``: the Engine interface over a pool of OpenAI-compatible upstreams."""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx
import numpy as np
import orjson

from gemserve.config.models import ModelSpec
from gemserve.config.remote import RemoteTimeouts, UpstreamKind
from gemserve.engine.base import (
    MEDIA_PLACEHOLDER,
    EmbeddingInput,
    Embeddings,
    EngineStats,
    GenerationRequest,
    ModelCapabilities,
    PromptCount,
)
from gemserve.engine.remote.client import (
    UpstreamClient,
    UpstreamError,
    UpstreamStatus,
)
from gemserve.engine.remote.pool import Upstream, UpstreamLease, UpstreamPool
from gemserve.engine.remote.refusal import CLIENT_STATUSES, refused
from gemserve.engine.remote.stream import (
    ChunkDecoder,
    Opened,
    RemoteStream,
    StreamCounters,
    chunk_error,
    sse_data,
)
from gemserve.engine.remote.translate import Json, chat_body, for_upstream
from gemserve.errors import InvalidArgument, ResourceExhausted, Unavailable

log = logging.getLogger("gemserve.remote")

DEFAULT_CONTEXT = 4096  # where neither the configuration nor any upstream says
CHARS_PER_TOKEN = 4  # the estimate where an upstream cannot tokenize
# Kinds that refuse a request (a prompt over the context) only after a stream's headers, by
# cutting the connection: a stream that breaks so is asked again unstreamed to learn why.
REFUSES_AFTER_HEADERS: frozenset[UpstreamKind] = frozenset({"llama-cpp-python"})
# Kinds that say what is wrong with a request by a status, before a stream's headers: their
# stream is handed on at its headers, so that the caller's own set-up (the interaction's row,
# its first events) overlaps the upstream's prefill (measured: 2 ms of time to first token).
# The others' first data is awaited, so that an error in it is still a status for the client.
STATUS_BEFORE_HEADERS: frozenset[UpstreamKind] = frozenset(
    {"llama-server", "vllm", "sglang", "ollama"}
)


@dataclass(frozen=True)
class UpstreamConfig:
    url: str
    max_in_flight: int
    api_key: str | None = None
    kind: UpstreamKind = "auto"


class RemoteEngine:
    """Serves one model from OpenAI-compatible engines (vLLM, SGLang, llama-server,
    Ollama). ``transport`` replaces the HTTP transport of every upstream (tests)."""

    def __init__(
        self,
        *,
        model_id: str,
        upstreams: Sequence[UpstreamConfig],
        timeouts: RemoteTimeouts,
        output_token_limit: int,
        upstream_model: str | None = None,
        context_length: int | None = None,
        modalities: frozenset[str] | None = None,
        instruction_tuned: bool = True,
        affinity: bool = True,
        embedding_dimensions: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not upstreams:
            raise ValueError(f"model {model_id!r} has no upstreams")
        self._model_id = model_id
        self._upstream_model = upstream_model
        self._declared_context = context_length
        self._declared_modalities = modalities
        self._output_token_limit = output_token_limit
        self._instruction_tuned = instruction_tuned
        self._embedding_dimensions = embedding_dimensions
        self._context_length = context_length or DEFAULT_CONTEXT
        self._modalities = modalities or frozenset({"text"})
        self._declared_kinds = [u.kind for u in upstreams]
        self._timeouts = timeouts
        self.pool = UpstreamPool(
            model_id,
            [
                Upstream(
                    index=i,
                    client=UpstreamClient(
                        u.url, api_key=u.api_key, timeouts=timeouts, transport=transport
                    ),
                    cap=u.max_in_flight,
                    kind=u.kind,
                    model=upstream_model,
                )
                for i, u in enumerate(upstreams)
            ],
            timeouts,
            affinity=affinity,
        )
        self.pool.on_readmit = self._discover
        self._counters = StreamCounters()
        self._streams: set[RemoteStream] = set()
        self._started = False

    @classmethod
    def from_spec(
        cls,
        spec: ModelSpec,
        *,
        environ: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> RemoteEngine:
        """The engine of an ``engine = "openai"`` model entry; a key named by
        ``api_key_env`` must be set (ValueError naming the field otherwise)."""
        env = os.environ if environ is None else environ

        def key(name: str | None, where: str) -> str | None:
            if name is None:
                return None
            value = env.get(name)
            if not value:
                raise ValueError(
                    f"model {spec.id!r}: {where} names {name}, which is not set in the environment"
                )
            return value

        default_key = key(spec.api_key_env, "api_key_env")
        upstreams = [
            UpstreamConfig(
                url=u.url,
                max_in_flight=u.max_in_flight or spec.max_in_flight,
                api_key=(
                    key(u.api_key_env, f"upstreams[{i}].api_key_env")
                    if u.api_key_env
                    else default_key
                ),
                kind=u.kind or spec.upstream_kind,
            )
            for i, u in enumerate(spec.upstreams)
        ]
        declared = spec.model_fields_set
        return cls(
            model_id=spec.id,
            upstreams=upstreams,
            timeouts=spec.timeouts,
            output_token_limit=spec.output_token_limit,
            upstream_model=spec.upstream_model,
            context_length=spec.context_length if "context_length" in declared else None,
            modalities=frozenset(spec.modalities) if spec.modalities is not None else None,
            instruction_tuned=spec.instruction_tuned,
            affinity=spec.affinity,
            embedding_dimensions=spec.embedding_dimensions,
            transport=transport,
        )

    # ----- lifecycle -----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._started

    async def start(self) -> None:
        """Ask every upstream what it serves (those that do not answer are ejected until a
        health check passes), then start the health checks."""
        await asyncio.gather(*(self._discover(u) for u in self.pool.upstreams))
        for upstream in self.pool.upstreams:
            if upstream.info is None:
                self.pool.failed(upstream, "it did not answer /v1/models at start")
        if not any(u.healthy for u in self.pool.upstreams):
            log.warning(
                "model %s: no upstream answered; requests fail until one does", self._model_id
            )
        self.pool.start()
        self._started = True

    async def _discover(self, upstream: Upstream) -> None:
        index = upstream.index
        info = await upstream.client.discover(self._declared_kinds[index])
        if info is None:
            return
        upstream.info = info
        upstream.kind = info.kind
        if self._upstream_model is None:
            upstream.model = info.models[0] if info.models else self._model_id
        elif info.models and self._upstream_model not in info.models:
            log.warning(
                "model %s: upstream %s serves %s, not %s",
                self._model_id,
                upstream.url,
                ", ".join(info.models),
                self._upstream_model,
            )
        known = [u.info for u in self.pool.upstreams if u.info is not None]
        if self._declared_context is None:
            contexts = [i.context_length for i in known if i.context_length]
            if contexts:
                self._context_length = min(contexts)
        if self._declared_modalities is None:
            said = [i.modalities for i in known if i.modalities is not None]
            if said:
                self._modalities = frozenset.intersection(*said)
        log.info(
            "model %s: upstream %s is %s serving %s (context %d)",
            self._model_id,
            upstream.url,
            info.kind,
            upstream.model,
            self._context_length,
        )

    async def close(self) -> None:
        self._started = False
        streams = list(self._streams)
        for stream in streams:
            stream.cancel()
        await asyncio.gather(*(s.wait_closed() for s in streams), return_exceptions=True)
        await self.pool.close()
        for upstream in self.pool.upstreams:
            await upstream.client.aclose()

    def capabilities(self) -> ModelCapabilities:
        return ModelCapabilities(
            model_id=self._model_id,
            context_length=self._context_length,
            output_token_limit=self._output_token_limit,
            input_modalities=self._modalities,
            instruction_tuned=self._instruction_tuned,
            embedding_dimensions=self._embedding_dimensions,
        )

    def _require(self) -> None:
        if not self._started:
            raise Unavailable(f"Model {self._model_id!r} is still starting; retry shortly.")

    # ----- generation ----------------------------------------------------------------------

    async def _body(self, request: GenerationRequest) -> Json:
        has_media = any(m.media for m in request.messages)
        if has_media:
            # PNG and WAV encoding off the event loop.
            return await asyncio.to_thread(chat_body, request, "", self._modalities)
        return chat_body(request, "", self._modalities)

    async def generate(self, request: GenerationRequest) -> RemoteStream:
        self._require()
        body = await self._body(request)
        bodies = _Bodies(request, body, self._model_id)
        affinity = request.affinity

        async def open_on(tried: set[Upstream]) -> Opened:
            return await self._open(bodies, affinity, tried)

        opened = await open_on(set())
        prompt_estimate = estimate_prompt(request)

        def decoder() -> ChunkDecoder:
            return ChunkDecoder(
                request.reasoning,
                max_output_tokens=request.sampling.max_output_tokens,
                context_length=self._context_length,
                prompt_estimate=prompt_estimate,
            )

        stream = RemoteStream(opened, decoder, open_on, self.pool, self._counters)
        self._streams.add(stream)
        stream.add_done_callback(self._streams.discard)
        return stream

    async def _open(self, bodies: _Bodies, affinity: str | None, tried: set[Upstream]) -> Opened:
        """Send the request to the best upstream not yet tried and wait for its first data;
        on a 429/503, no answer or a start that broke, the next one. The request's fault (a
        client error status, or an error chunk or refusal that says so) is a 400 at once,
        without ejecting the upstream; once no upstream is left, the pool's error."""
        while True:
            lease = self.pool.acquire(affinity, tried)
            upstream = lease.upstream
            try:
                return await self._start(lease, bodies.encoded(upstream))
            except UpstreamStatus as exc:
                lease.release()
                tried.add(upstream)
                if exc.status in (429, 503):
                    self.pool.saturated(upstream, exc.retry_after)
                    continue
                if exc.status in CLIENT_STATUSES:
                    raise refused(self._model_id, exc.message) from None
                self.pool.failed(upstream, f"HTTP {exc.status}: {exc.message}")
                continue
            except UpstreamError as exc:
                lease.release()
                tried.add(upstream)
                self.pool.failed(upstream, exc.message)
                continue
            except BaseException:
                lease.release()
                raise

    async def _start(self, lease: UpstreamLease, body: bytes) -> Opened:
        """Open ``body`` on the lease's upstream and read the stream's first data, so that
        an error before it is still the caller's to report as a status. Raises
        :class:`UpstreamStatus` for an error status (a client error the upstream told only
        in its stream, or by cutting it, comes as a 400) and :class:`UpstreamError` for a
        start that failed otherwise."""
        upstream = lease.upstream
        client = upstream.client
        response = await client.open_chat(body)
        data = sse_data(response)
        if upstream.kind in STATUS_BEFORE_HEADERS:
            return Opened(lease, response, None, data, lambda: client.answering(response))
        first: bytes | None = None
        broken = "the upstream closed the stream before its first data"
        try:
            first = await anext(data, None)
        except httpx.TimeoutException:
            broken = f"no answer within {self._timeouts.first_token:g} s (after the headers)"
        except httpx.HTTPError as exc:
            broken = f"the stream broke before its first data ({type(exc).__name__})"
        except BaseException:
            await Opened(lease, response, b"", data).close()
            raise
        opened = Opened(lease, response, first or b"", data)
        if first is None:
            await opened.close()
            if upstream.kind in REFUSES_AFTER_HEADERS:
                refusal = await client.refusal(body)
                if refusal is not None and refusal.status in CLIENT_STATUSES:
                    raise refusal
            raise UpstreamError(broken)
        try:
            chunk = orjson.loads(first)
        except orjson.JSONDecodeError:
            chunk = None  # the decoder reports it
        error = chunk_error(chunk) if isinstance(chunk, dict) else None
        if error is not None:
            await opened.close()
            if error.refusal is not None:
                raise UpstreamStatus(400, error.refusal)
            raise UpstreamError(str(error))
        client.answering(response)
        return opened

    # ----- counting, embeddings ------------------------------------------------------------

    def _any_upstream(self) -> Upstream:
        healthy = [u for u in self.pool.upstreams if u.healthy] or self.pool.upstreams
        return min(healthy, key=lambda u: u.in_flight)

    async def tokenize(self, text: str) -> list[int]:
        self._require()
        upstream = self._any_upstream()
        tokens = await upstream.client.tokenize(
            upstream.kind, upstream.model or self._model_id, text
        )
        if tokens is not None:
            return tokens
        return [0] * math.ceil(len(text) / CHARS_PER_TOKEN)

    async def count_prompt(self, request: GenerationRequest) -> PromptCount:
        """The upstream's own count (its template and tokenizer) where it has one, else an
        estimate (flagged ``estimated``)."""
        self._require()
        body = await self._body(request)
        upstream = self._any_upstream()
        full = _Bodies(request, body, self._model_id).json(upstream)
        full.pop("stream", None)
        full.pop("stream_options", None)
        counted = await upstream.client.count_chat(upstream.kind, full)
        if counted is not None:
            return PromptCount(counted)
        return PromptCount(estimate_prompt(request), estimated=True)

    async def embed(self, inputs: Sequence[EmbeddingInput]) -> Embeddings:
        self._require()
        if self._embedding_dimensions is None:
            raise InvalidArgument(
                f"Model {self._model_id!r} does not embed (its configuration sets no "
                "embedding_dimensions)."
            )
        texts = [i for i in inputs if isinstance(i, str)]
        ids = [list(i) for i in inputs if not isinstance(i, str)]
        lease = self.pool.acquire(None)
        upstream = lease.upstream
        model = upstream.model or self._model_id
        try:
            results: list[Json] = []
            for group in (texts, ids):
                if group:
                    results.append(await upstream.client.embeddings(model, group))
        except UpstreamStatus as exc:
            if exc.status in (429, 503):
                self.pool.saturated(upstream, exc.retry_after)
                raise ResourceExhausted(
                    f"Model {self._model_id!r} is busy; retry shortly.", retry_after=1
                ) from None
            if exc.status in (400, 413, 422):
                raise InvalidArgument(
                    f"Model {self._model_id!r} refused the input: {exc.message}"
                ) from None
            self.pool.failed(upstream, exc.message)
            raise Unavailable(f"Model {self._model_id!r} could not embed: {exc.message}") from None
        except UpstreamError as exc:
            self.pool.failed(upstream, exc.message)
            raise Unavailable(f"Model {self._model_id!r} could not embed: {exc.message}") from None
        finally:
            lease.release()
        vectors_by_group: list[list[list[float]]] = []
        totals: list[int] = []
        for result in results:
            data = sorted(result.get("data") or [], key=lambda d: d.get("index", 0))
            vectors_by_group.append([d["embedding"] for d in data])
            usage = result.get("usage") or {}
            totals.append(int(usage.get("prompt_tokens") or 0))
        text_vectors = vectors_by_group[0] if texts else []
        id_vectors = vectors_by_group[-1] if ids else []
        if len(text_vectors) != len(texts) or len(id_vectors) != len(ids):
            raise Unavailable(f"Model {self._model_id!r}: the upstream returned too few vectors.")
        text_total = totals[0] if texts else 0
        chars = sum(len(t) for t in texts) or 1
        rows: list[list[float]] = []
        tokens: list[int] = []
        t_iter, i_iter = (
            iter(zip(texts, text_vectors, strict=True)),
            iter(zip(ids, id_vectors, strict=True)),
        )
        for item in inputs:
            if isinstance(item, str):
                text, vector = next(t_iter)
                rows.append(vector)
                tokens.append(max(1, round(text_total * len(text) / chars)))
            else:
                token_ids, vector = next(i_iter)
                rows.append(vector)
                tokens.append(len(token_ids))
        matrix = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        unit = (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        return Embeddings(unit, tuple(tokens))

    def stats(self) -> EngineStats:
        upstreams = self.pool.upstreams
        counters = self._counters
        return EngineStats(
            slots=sum(u.cap for u in upstreams),
            active=sum(u.in_flight for u in upstreams),
            queued=0,
            decode_steps=0,
            tokens_generated=counters.tokens,
            requests_finished=counters.finished,
            requests_cancelled=counters.cancelled,
            extra={
                "requests_failed": float(counters.failed),
                "retries_before_first_token": float(counters.retried),
                **self.pool.stats(),
            },
        )


def estimate_prompt(request: GenerationRequest) -> int:
    """Four characters per token, and four tokens per message for the template's markup:
    the prompt count where an upstream cannot count on its own template."""
    chars = sum(len(m.text.replace(MEDIA_PLACEHOLDER, "")) for m in request.messages)
    return math.ceil(chars / CHARS_PER_TOKEN) + 4 * len(request.messages)


class _Bodies:
    """A request's body per upstream kind and model, encoded once each."""

    def __init__(self, request: GenerationRequest, body: Json, model_id: str) -> None:
        self._request = request
        self._body = body
        self._model_id = model_id
        self._encoded: dict[tuple[str, str], bytes] = {}

    def json(self, upstream: Upstream) -> Json:
        kind = upstream.kind if upstream.kind != "auto" else "openai"
        model = upstream.model or self._model_id
        return for_upstream(self._body, self._request, kind, model, model_id=self._model_id)

    def encoded(self, upstream: Upstream) -> bytes:
        key = (upstream.kind, upstream.model or "")
        body = self._encoded.get(key)
        if body is None:
            body = orjson.dumps(self.json(upstream))
            self._encoded[key] = body
        return body
