"""Batch kinds: a batch's requests are generate requests or (asyncBatchEmbedContent) embedding
requests. Existing batches are generate batches.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as table:
        table.add_column(
            sa.Column("kind", sa.String(16), nullable=False, server_default="generate")
        )


def downgrade() -> None:
    with op.batch_alter_table("batches") as table:
        table.drop_column("kind")
