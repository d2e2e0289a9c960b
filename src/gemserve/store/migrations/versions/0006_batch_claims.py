"""Batch claims: the replica running a batch, and until when its lease holds.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("batches") as table:
        table.add_column(sa.Column("claimed_by", sa.String(40), nullable=True))
        table.add_column(sa.Column("lease_until", Stamp, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batches") as table:
        table.drop_column("lease_until")
        table.drop_column("claimed_by")
