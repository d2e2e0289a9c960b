"""An interaction's status values: one definition for the wire, the service and the store."""

from __future__ import annotations

from typing import Literal

InteractionStatus = Literal[
    "in_progress", "requires_action", "completed", "incomplete", "failed", "cancelled"
]

TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "incomplete", "failed", "cancelled"})
