"""API keys: from ``x-goog-api-key`` or ``?key=``.

This release runs in open mode only: any non-empty key is accepted, and the server refuses to
listen on a non-loopback address (see ``cli``). Each distinct key is reported as its own
tenant so that stored state can be scoped later.
"""

from __future__ import annotations

import hashlib

from starlette.requests import Request

from gemserve.errors import PermissionDenied

MISSING_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)


def authenticate(request: Request) -> str:
    """Return the caller's tenant id, or raise 403 as Google does for a missing key."""
    key = request.headers.get("x-goog-api-key") or request.query_params.get("key") or ""
    key = key.strip()
    if not key:
        raise PermissionDenied(MISSING_KEY)
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:24]
