"""The API key comes from ``x-goog-api-key``, ``?key=`` or (the OpenAI-compatible surface's
way) ``Authorization: Bearer``; the service maps it to a tenant."""

from __future__ import annotations

from starlette.requests import Request

from gemserve.api.context import AppContext


async def authenticate(request: Request) -> str:
    """Return the caller's tenant, or raise (403 without a key, 400 for an unknown one)."""
    key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    if key is None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            key = token.strip()
    return await AppContext.of(request).auth.tenant_for(key)
