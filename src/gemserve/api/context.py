"""What route handlers need, built once by the app factory and kept on ``app.state``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.requests import Request

from gemserve.config import ModelRegistry, Settings
from gemserve.engine import Engine
from gemserve.errors import InvalidArgument, NotFound
from gemserve.service.classic import GenerateContentService
from gemserve.service.classic.batches import BatchService
from gemserve.service.classic.caches import CacheService
from gemserve.service.embeddings import EmbeddingService
from gemserve.service.files import FileService
from gemserve.service.interactions import InteractionService
from gemserve.service.keys import Authenticator
from gemserve.service.metrics import Metrics
from gemserve.service.models import ModelCatalog
from gemserve.service.openai import ChatCompletionService
from gemserve.service.turn import TurnPipeline

_VERSION = re.compile(r"^v\d+(?:(?:alpha|beta)\d*)?$")


@dataclass
class AppContext:
    settings: Settings
    registry: ModelRegistry
    engines: dict[str, Engine]
    turns: TurnPipeline
    interactions: InteractionService
    generate_content: GenerateContentService
    chat_completions: ChatCompletionService
    models: ModelCatalog
    auth: Authenticator
    files: FileService
    caches: CacheService
    batches: BatchService
    embeddings: EmbeddingService
    metrics: Metrics | None = None  # None: metrics_enabled is false

    @staticmethod
    def of(request: Request) -> AppContext:
        ctx: AppContext = request.app.state.ctx
        return ctx


def check_version(request: Request) -> None:
    """Any API version segment is served (the SDKs send v1, the docs v1beta)."""
    version = request.path_params.get("version", "")
    if not _VERSION.match(version):
        raise NotFound(f"The requested URL {request.url.path} was not found on this server.")


def own_hosts(request: Request) -> frozenset[str]:
    """The host[:port] this request reached us by: file uris we handed out name it."""
    host = request.headers.get("host")
    return frozenset({host.lower()}) if host else frozenset()


def query_flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw == "false":
        return False
    if raw == "true":
        return True
    raise InvalidArgument(f"Invalid value at '{name}': expected true or false, got {raw!r}.")
