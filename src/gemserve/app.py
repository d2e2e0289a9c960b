"""The application factory: settings in, a Starlette ASGI app out. No module-level state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from gemserve.api import health, interactions, models
from gemserve.api.context import AppContext
from gemserve.api.errors import gemserve_error_handler, http_error_handler, unhandled_error_handler
from gemserve.api.logging import RequestLogMiddleware
from gemserve.config import ModelRegistry, ModelSpec, Settings
from gemserve.engine import Engine
from gemserve.errors import GemserveError
from gemserve.service.clock import utc_now
from gemserve.service.interactions import InteractionService
from gemserve.service.keys import Authenticator
from gemserve.service.models import ModelCatalog
from gemserve.service.retention import sweep_forever
from gemserve.store import SqlStore, database_url_for

INTERRUPTED = {
    "code": "INTERNAL",
    "message": "The server stopped while this interaction was being generated.",
}

log = logging.getLogger("gemserve")

EngineFactory = Callable[[ModelSpec, Settings], Engine]


def llama_engine(spec: ModelSpec, settings: Settings) -> Engine:
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
    )


def open_store(settings: Settings) -> SqlStore:
    return SqlStore(database_url_for(settings.database_url, settings.data_dir))


def create_app(settings: Settings, engine_factory: EngineFactory = llama_engine) -> Starlette:
    registry = ModelRegistry.from_config(settings.models, settings.aliases, settings.default_model)
    engines = {spec.id: engine_factory(spec, settings) for spec in registry.specs}
    store = open_store(settings)
    interactions_service = InteractionService(
        registry,
        engines,
        settings.limits,
        store,
        retention=timedelta(days=settings.interaction_ttl_days),
    )
    ctx = AppContext(
        settings=settings,
        registry=registry,
        engines=engines,
        interactions=interactions_service,
        models=ModelCatalog(registry),
        auth=Authenticator(store, keys_required=settings.require_keys),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        await store.start()
        recovered = await store.fail_unfinished(INTERRUPTED, utc_now())
        if recovered:
            log.warning("marked %d interactions interrupted by a restart as failed", recovered)
        # Accept requests at once (/healthz); /readyz turns 200 when the default model is in.
        background = [
            asyncio.create_task(_load_engines(registry, engines)),
            asyncio.create_task(sweep_forever(store, settings.sweep_interval_seconds)),
        ]
        try:
            yield
        finally:
            await interactions_service.live.shutdown()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            for engine in engines.values():
                await engine.close()
            await store.close()

    app = Starlette(
        routes=[*health.routes, *interactions.routes, *models.routes],
        exception_handlers={
            GemserveError: gemserve_error_handler,
            HTTPException: http_error_handler,
            Exception: unhandled_error_handler,
        },
        lifespan=lifespan,
    )
    app.add_middleware(RequestLogMiddleware)
    app.state.ctx = ctx
    return app


async def _load_engines(registry: ModelRegistry, engines: dict[str, Engine]) -> None:
    order = sorted(engines, key=lambda model_id: model_id != registry.default_id)
    for model_id in order:
        try:
            await engines[model_id].start()
            log.info("model %s is loaded", model_id)
        except Exception:
            log.exception("model %s failed to load", model_id)
