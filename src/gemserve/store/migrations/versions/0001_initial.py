"""Interactions, their event log, and API keys.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "interactions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("background", sa.Boolean, nullable=False),
        sa.Column("previous_interaction_id", sa.String(64), nullable=True),
        sa.Column("input", Json, nullable=False),
        sa.Column("system_instruction", sa.Text, nullable=True),
        sa.Column("generation_config", Json, nullable=True),
        sa.Column("steps", Json, nullable=False),
        sa.Column("usage", Json, nullable=True),
        sa.Column("error", Json, nullable=True),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
        sa.Column("expires_at", Stamp, nullable=False),
    )
    op.create_index("ix_interactions_tenant", "interactions", ["tenant"])
    op.create_index("ix_interactions_status", "interactions", ["status"])
    op.create_index("ix_interactions_expires_at", "interactions", ["expires_at"])
    op.create_table(
        "interaction_events",
        sa.Column(
            "interaction_id",
            sa.String(64),
            sa.ForeignKey("interactions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("event", Json, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("revoked_at", Stamp, nullable=True),
    )
    op.create_index("ix_api_keys_tenant", "api_keys", ["tenant"])


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("interaction_events")
    op.drop_table("interactions")
