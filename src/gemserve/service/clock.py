"""Time and id sources, injected so tests can pin them."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
IdFactory = Callable[[], str]


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_interaction_id() -> str:
    # Opaque, URL-safe and unguessable; "v1_" mirrors the ids the SDK tests use.
    return "v1_" + secrets.token_hex(12)
