"""What route handlers need, built once by the app factory and kept on ``app.state``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.requests import Request

from gemserve.config import ModelRegistry, Settings
from gemserve.engine import Engine
from gemserve.errors import NotFound
from gemserve.service.files import FileService
from gemserve.service.interactions import InteractionService
from gemserve.service.keys import Authenticator
from gemserve.service.models import ModelCatalog

_VERSION = re.compile(r"^v\d+(?:(?:alpha|beta)\d*)?$")


@dataclass
class AppContext:
    settings: Settings
    registry: ModelRegistry
    engines: dict[str, Engine]
    interactions: InteractionService
    models: ModelCatalog
    auth: Authenticator
    files: FileService

    @staticmethod
    def of(request: Request) -> AppContext:
        ctx: AppContext = request.app.state.ctx
        return ctx


def check_version(request: Request) -> None:
    """Any API version segment is served (the SDKs send v1, the docs v1beta)."""
    version = request.path_params.get("version", "")
    if not _VERSION.match(version):
        raise NotFound(f"The requested URL {request.url.path} was not found on this server.")
