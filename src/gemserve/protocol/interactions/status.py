"""An interaction's status values: one definition for the wire, the service and the store."""

from __future__ import annotations

from typing import Literal

InteractionStatus = Literal[
    "in_progress", "requires_action", "completed", "incomplete", "failed", "cancelled"
]

# The run is over: ``requires_action`` waits for the client's function results, which come in
# a new interaction continuing this one.
TERMINAL_STATUSES: frozenset[str] = frozenset(
    {"completed", "requires_action", "incomplete", "failed", "cancelled"}
)
