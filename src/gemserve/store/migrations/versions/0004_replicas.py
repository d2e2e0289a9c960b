"""Replicas sharing one database: leases, interaction owners, cross-replica cancel, and the
settings every replica must agree on.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("host", sa.String(256), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", Stamp, nullable=False),
        sa.Column("lease_until", Stamp, nullable=False),
    )
    op.create_table(
        "cluster_settings",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(512), nullable=False),
        sa.Column("recorded_at", Stamp, nullable=False),
    )
    with op.batch_alter_table("interactions") as table:
        table.add_column(sa.Column("owner", sa.String(40), nullable=True))
        table.add_column(
            sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false())
        )
    op.create_index("ix_interactions_owner", "interactions", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_interactions_owner", "interactions")
    with op.batch_alter_table("interactions") as table:
        table.drop_column("cancel_requested")
        table.drop_column("owner")
    op.drop_table("cluster_settings")
    op.drop_table("replicas")
