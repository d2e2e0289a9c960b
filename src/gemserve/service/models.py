"""The models catalogue: real models first, then aliases, with offset paging."""

from __future__ import annotations

from typing import Any

from gemserve.config import ModelRegistry
from gemserve.protocol.models import model_resource
from gemserve.protocol.openai.response import model_object
from gemserve.service.paging import page_window

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50


class ModelCatalog:
    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry

    def _all(self) -> list[dict[str, Any]]:
        out = [model_resource(spec.id, spec) for spec in self._registry.specs]
        specs = {spec.id: spec for spec in self._registry.specs}
        for alias, target in sorted(self._registry.aliases.items()):
            out.append(model_resource(alias, specs[target], alias_of=target))
        return out

    def list(self, page_size: str | None, page_token: str | None) -> dict[str, Any]:
        offset, size = page_window(page_size, page_token, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        models = self._all()
        page: dict[str, Any] = {"models": models[offset : offset + size]}
        if offset + size < len(models):
            page["nextPageToken"] = str(offset + size)
        return page

    def get(self, name: str) -> dict[str, Any]:
        resolved = self._registry.resolve(name)
        spec = resolved.spec
        alias_of = None if resolved.requested_name == spec.id else spec.id
        return model_resource(resolved.requested_name, spec, alias_of=alias_of)

    # ----- the OpenAI-compatible view -------------------------------------------------------

    def openai_list(self) -> dict[str, Any]:
        names = [spec.id for spec in self._registry.specs] + sorted(self._registry.aliases)
        return {"object": "list", "data": [model_object(name) for name in names]}

    def openai_get(self, name: str) -> dict[str, Any]:
        return model_object(self._registry.resolve(name).requested_name)
