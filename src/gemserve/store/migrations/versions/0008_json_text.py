"""Stored JSON keeps its text on PostgreSQL: ``json``, not ``jsonb``.

JSONB re-orders an object's keys (shorter keys first), so an interaction read back from
PostgreSQL serialized differently from the same interaction served by the replica that ran it
(``{"type", "text"}`` became ``{"text", "type"}``): a response must not depend on which replica
or restart answers it. Nothing queries inside these columns, so JSONB's indexing is not lost.
SQLite stores JSON as text already; there this migration does nothing.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = {
    "interactions": ("input", "generation_config", "steps", "usage", "error"),
    "interaction_events": ("event",),
    "cached_contents": ("content",),
    "batches": ("own_hosts", "error"),
    "batch_items": ("request", "metadata", "response", "error"),
}


def _retype(target: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in COLUMNS.items():
        for column in columns:
            op.execute(
                f'ALTER TABLE {table} ALTER COLUMN "{column}" TYPE {target} '
                f'USING "{column}"::text::{target}'
            )


def upgrade() -> None:
    _retype("json")


def downgrade() -> None:
    _retype("jsonb")
