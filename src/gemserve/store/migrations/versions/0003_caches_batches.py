"""cachedContents and batches (with one row per batch request).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cached_contents",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("display_name", sa.String(512), nullable=True),
        sa.Column("content", Json, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("token_count", sa.Integer, nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
        sa.Column("expires_at", Stamp, nullable=False),
    )
    op.create_index("ix_cached_contents_tenant", "cached_contents", ["tenant"])
    op.create_index("ix_cached_contents_expires_at", "cached_contents", ["expires_at"])
    op.create_table(
        "batches",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("display_name", sa.String(512), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("request_count", sa.Integer, nullable=False),
        sa.Column("succeeded", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("own_hosts", Json, nullable=False),
        sa.Column("error", Json, nullable=True),
        sa.Column("input_file", sa.String(64), nullable=True),
        sa.Column("output_file", sa.String(64), nullable=True),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
        sa.Column("end_time", Stamp, nullable=True),
        sa.Column("expires_at", Stamp, nullable=True),
    )
    op.create_index("ix_batches_tenant", "batches", ["tenant"])
    op.create_index("ix_batches_state", "batches", ["state"])
    op.create_index("ix_batches_expires_at", "batches", ["expires_at"])
    op.create_table(
        "batch_items",
        sa.Column(
            "batch_id",
            sa.String(64),
            sa.ForeignKey("batches.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("request", Json, nullable=False),
        sa.Column("metadata", Json, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("response", Json, nullable=True),
        sa.Column("error", Json, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("batch_items")
    op.drop_table("batches")
    op.drop_table("cached_contents")
