"""The application factory: settings in, a Starlette ASGI app out. No module-level state."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from gemserve.api import batches as batch_routes
from gemserve.api import caches as cache_routes
from gemserve.api import classic, embeddings, files, health, interactions, models, openai, uploads
from gemserve.api import metrics as metrics_routes
from gemserve.api import openapi as openapi_routes
from gemserve.api import playground as playground_routes
from gemserve.api.context import AppContext
from gemserve.api.errors import (
    client_gone_handler,
    gemserve_error_handler,
    http_error_handler,
    store_error_handler,
    unhandled_error_handler,
)
from gemserve.api.logging import RequestLogMiddleware
from gemserve.api.metrics import MetricsMiddleware
from gemserve.config import ModelRegistry, ModelSpec, Settings
from gemserve.engine import Engine
from gemserve.errors import GemserveError
from gemserve.media.transcribe import Transcriber, whisper_model_dir
from gemserve.progress import LoadProgress
from gemserve.service.classic import GenerateContentService
from gemserve.service.classic.batches import BatchService
from gemserve.service.classic.caches import CacheService
from gemserve.service.cluster import ClusterConfigError, Replica, fingerprint
from gemserve.service.embeddings import EmbeddingService
from gemserve.service.fetch import RemoteFetcher
from gemserve.service.files import FileService
from gemserve.service.interactions import InteractionService
from gemserve.service.keys import Authenticator
from gemserve.service.media import MediaPipeline
from gemserve.service.metrics import Metrics
from gemserve.service.models import ModelCatalog
from gemserve.service.openai import ChatCompletionService
from gemserve.service.retention import sweep_forever, sweep_once
from gemserve.service.signatures import ThoughtSigner, load_or_create_key
from gemserve.service.turn import TurnPipeline
from gemserve.store import SqlStore, database_url_for
from gemserve.store.blobs import BlobStoreUnavailable, open_blob_store
from gemserve.store.sql_batches import SqlBatchStore
from gemserve.store.sql_caches import SqlCacheStore
from gemserve.store.sql_files import SqlFileStore
from gemserve.store.sql_replicas import SqlReplicaStore
from gemserve.tracing import add_tracing

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from gemserve.engine.llama.native_thread import NativeThread

log = logging.getLogger("gemserve")

EngineFactory = Callable[[ModelSpec, Settings], Engine]
# Called once when the server cannot go on (a model failed its start-up): the CLI stops.
FatalHandler = Callable[[str], None]


def llama_engine(spec: ModelSpec, settings: Settings, native: NativeThread | None = None) -> Engine:
    """The llama.cpp engine for ``spec``; the engines of one app share ``native``."""
    from gemserve.engine.llama import LlamaEngine

    return LlamaEngine(
        model_id=spec.id,
        gguf_path=spec.gguf_path(),
        context_length=spec.context_length,
        output_token_limit=spec.output_token_limit,
        slots=settings.slots,
        batch_tokens=settings.batch_tokens,
        threads=settings.threads,
        max_queued=settings.limits.max_queued_requests,
        chat_template=spec.chat_template,
        instruction_tuned=spec.instruction_tuned,
        mmproj_path=spec.mmproj_path(),
        native=native,
        tool_format=spec.tool_format,
        embedding_pooling=spec.embedding_pooling,
        load_progress=LoadProgress(f"loading {spec.id}"),
    )


def remote_engine(spec: ModelSpec, settings: Settings) -> Engine:
    """The engine of an ``engine = "openai"`` model: a pool of OpenAI-compatible upstreams."""
    from gemserve.engine.remote import RemoteEngine

    return RemoteEngine.from_spec(spec)


def default_engine(
    spec: ModelSpec, settings: Settings, native: NativeThread | None = None
) -> Engine:
    """The engine a model entry names (``engine``): llama.cpp in this process, or a remote
    pool."""
    if spec.engine == "openai":
        return remote_engine(spec, settings)
    return llama_engine(spec, settings, native)


def open_store(settings: Settings) -> SqlStore:
    return SqlStore(database_url_for(settings.database_url, settings.data_dir))


def create_app(
    settings: Settings,
    engine_factory: EngineFactory | None = None,
    on_fatal: FatalHandler | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Starlette:
    """The app; by default every model runs where its entry says (``default_engine``), the
    llama.cpp ones all on one native thread.
    A model that fails to load or to decode its start-up batch is reported to ``on_fatal``.
    ``tracer_provider``: spans go there instead of to OpenTelemetry's global provider."""
    registry = ModelRegistry.from_config(settings.models, settings.aliases, settings.default_model)
    native: NativeThread | None = None
    if engine_factory is None:
        from gemserve.engine.llama.cores import ThreadGovernor
        from gemserve.engine.llama.native_thread import NativeThread

        native = NativeThread(
            governor=ThreadGovernor(settings.threads) if settings.adaptive_threads else None
        )
        engine_factory = functools.partial(default_engine, native=native)
    engines = {spec.id: engine_factory(spec, settings) for spec in registry.specs}
    store = open_store(settings)
    # One registry per app (never prometheus_client's global one); None: metrics are off.
    metrics = (
        Metrics(tenant_label=settings.metrics_tenant_label) if settings.metrics_enabled else None
    )
    if metrics is not None:
        metrics.watch_engines(engines)
        store.on_write = metrics.observe_store_write
    blobs = open_blob_store(settings)
    files_service = FileService(
        SqlFileStore(store),
        blobs,
        settings.limits,
        ttl=timedelta(hours=settings.file_ttl_hours),
        upload_timeout=timedelta(seconds=settings.upload_timeout_seconds),
    )
    transcriber = make_transcriber(settings)
    if transcriber is not None and metrics is not None:
        transcriber.on_transcribed = metrics.observe_transcription
    media = MediaPipeline(
        files_service,
        settings.limits,
        transcriber,
        fetcher=RemoteFetcher(
            frozenset(settings.media_fetch_hosts),
            max_bytes=settings.limits.max_body_bytes,
            allow_private=settings.media_fetch_private,
        )
        if settings.media_fetch_hosts
        else None,
    )
    signing_key = _signing_key(settings)
    # One turn pipeline under every API surface; each surface is an adapter onto it.
    turns = TurnPipeline(
        registry, engines, settings.limits, media, ThoughtSigner(signing_key), metrics=metrics
    )
    replica = Replica(
        SqlReplicaStore(store),
        lease_seconds=settings.replica_lease_seconds,
        poll_seconds=settings.cluster_poll_seconds,
    )
    interactions_service = InteractionService(
        turns,
        settings.limits,
        store,
        retention=timedelta(days=settings.interaction_ttl_days),
        replica=replica,
    )
    caches = CacheService(
        turns,
        SqlCacheStore(store),
        settings.limits,
        default_ttl=timedelta(seconds=settings.cache_default_ttl_seconds),
    )
    generate_content = GenerateContentService(turns, caches)
    embedding_service = EmbeddingService(turns, settings.limits)
    batches = BatchService(
        generate_content,
        turns,
        SqlBatchStore(store),
        settings.limits,
        files_service,
        # At most slots - 1: interactive requests always keep a slot of their own.
        concurrency=min(settings.batch_concurrency, max(1, settings.slots - 1)),
        deadline=timedelta(hours=settings.batch_deadline_hours),
        ttl=timedelta(hours=settings.batch_ttl_hours),
        lease=timedelta(seconds=settings.batch_lease_seconds),
        replica_id=replica.id,
        embeddings=embedding_service,
    )
    ctx = AppContext(
        settings=settings,
        registry=registry,
        engines=engines,
        turns=turns,
        interactions=interactions_service,
        generate_content=generate_content,
        chat_completions=ChatCompletionService(turns, caches=caches),
        models=ModelCatalog(registry),
        files=files_service,
        auth=Authenticator(store, keys_required=settings.require_keys),
        caches=caches,
        batches=batches,
        embeddings=embedding_service,
        metrics=metrics,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        await store.start()
        try:
            await replica.join(
                {
                    "thought_signing_key": fingerprint(signing_key),
                    "blob_store": _blob_store_identity(settings),
                }
            )
        except ClusterConfigError as exc:
            log.critical("refusing to start: %s", exc)
            raise
        recovered = await interactions_service.recover_interrupted()
        if recovered:
            log.warning("marked %d interactions interrupted by a restart as failed", recovered)
        blobs.start()
        try:
            orphans = await files_service.collect_orphans()
        except BlobStoreUnavailable:
            # Serve without files for now rather than not at all; the sweep retries it.
            log.warning("the object store did not answer at start; file requests get 503s")
        else:
            if orphans:
                log.warning("deleted %d blobs left without metadata by a crash", orphans)
        sweeps = [
            ("interactions", lambda: sweep_once(store)),
            ("files", files_service.sweep),
            ("orphaned blobs", files_service.collect_orphans),
            ("cached contents", caches.sweep),
            ("batches", batches.sweep),
        ]
        # Batches left pending or running by the last run are resumed.
        batches.runner.start()
        # Accept requests at once (/healthz); /readyz turns 200 once every model has loaded
        # and decoded its start-up batch.
        background = [
            asyncio.create_task(_load_engines(registry, engines, transcriber, on_fatal)),
            asyncio.create_task(
                sweep_forever(sweeps, settings.sweep_interval_seconds, store.exclusive)
            ),
            asyncio.create_task(
                replica.run(
                    lease_duties=[interactions_service.close_orphans],
                    poll_duties=[interactions_service.deliver_cancels],
                )
            ),
        ]
        try:
            yield
        finally:
            await batches.runner.close()
            await interactions_service.shutdown(settings.drain_seconds)
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            for engine in engines.values():
                await engine.close()
            if native is not None:
                await asyncio.to_thread(native.close)
            if transcriber is not None:
                await transcriber.close()
            with contextlib.suppress(Exception):
                await replica.leave()  # what it ran is closed; its lease is nobody's
            await store.close()

    app = Starlette(
        routes=[
            *health.routes,
            *metrics_routes.routes,
            *openapi_routes.routes,
            *playground_routes.routes,
            *interactions.routes,
            *classic.routes,
            *cache_routes.routes,
            *batch_routes.routes,
            *openai.routes,
            *embeddings.routes,
            *models.routes,
            *files.routes,
            *uploads.routes,
        ],
        exception_handlers={
            GemserveError: gemserve_error_handler,
            ClientDisconnect: client_gone_handler,
            HTTPException: http_error_handler,
            SQLAlchemyError: store_error_handler,
            OSError: store_error_handler,
            Exception: unhandled_error_handler,
        },
        lifespan=lifespan,
    )
    # A trailing slash is another path, as on Google's API: a 404 in the envelope, not a 307
    # to a route where the method may not even exist.
    app.router.redirect_slashes = False
    if metrics is not None:
        app.add_middleware(MetricsMiddleware, metrics=metrics)
    # Outermost but for tracing: its request id is on every log line. With the opentelemetry
    # extra and a tracer provider, a span per request wraps it (gemserve/tracing.py).
    if not add_tracing(app, tracer_provider):
        app.add_middleware(RequestLogMiddleware)
    app.state.ctx = ctx
    return app


def _blob_store_identity(settings: Settings) -> str:
    """Where files live, as replicas must agree on it: a bucket (and its endpoint), or a
    folder on one host (so replicas on two hosts, each with its own folder, disagree)."""
    if settings.blob_url:
        return f"{settings.blob_url} at {settings.s3_endpoint or 'AWS'}"[:512]
    folder = (settings.data_dir / "files").resolve()
    return f"file://{socket.gethostname()}{folder}"[:512]


def _signing_key(settings: Settings) -> bytes:
    """Thought signatures' key: configured (replicas must share it) or kept in the data dir."""
    if settings.thought_signing_key is not None:
        return settings.thought_signing_key.encode()
    return load_or_create_key(settings.data_dir)


def make_transcriber(settings: Settings) -> Transcriber | None:
    """Whisper for audio input, unless switched off; loaded with the engines."""
    if settings.transcription_model == "none":
        return None
    model_dir = whisper_model_dir(settings.transcription_model, settings.data_dir / "cache")
    return Transcriber(
        model_dir, threads=settings.threads, language=settings.transcription_language
    )


async def _load_engines(
    registry: ModelRegistry,
    engines: dict[str, Engine],
    transcriber: Transcriber | None,
    on_fatal: FatalHandler | None,
) -> None:
    """Load every model, default first; the first that fails stops the server (fail at start,
    never at the first user)."""
    order = sorted(engines, key=lambda model_id: model_id != registry.default_id)
    for model_id in order:
        started = time.monotonic()
        try:
            await engines[model_id].start()
        except Exception as exc:
            reason = f"model {model_id} failed to start: {exc}"
            log.exception("%s; stopping", reason)
            if on_fatal is not None:
                on_fatal(reason)
            return
        log.info(
            "model %s is loaded and decoded its start-up batch in %.1f s",
            model_id,
            time.monotonic() - started,
        )
    if transcriber is not None:
        try:
            await transcriber.start()
            log.info("speech recognition is loaded")
        except Exception:
            log.exception("speech recognition failed to load")
