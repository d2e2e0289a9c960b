"""Files across replicas: an upload's bytes as segments recorded in the database.

Sessions of an older server kept their bytes in one partial blob, ``partial/<file id>``: it
becomes the session's first segment (its first ``received`` bytes; bytes past them were
never acknowledged and are ignored), so an upload in progress resumes after the upgrade.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    segments = op.create_table(
        "upload_segments",
        sa.Column(
            "upload_id",
            sa.String(64),
            sa.ForeignKey("uploads.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("start_byte", sa.BigInteger, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("blob_key", sa.String(160), nullable=False),
    )
    uploads = sa.table(
        "uploads",
        sa.column("id", sa.String),
        sa.column("file_id", sa.String),
        sa.column("received", sa.BigInteger),
    )
    op.execute(
        segments.insert().from_select(
            ["upload_id", "start_byte", "size", "blob_key"],
            sa.select(
                uploads.c.id,
                sa.literal(0, sa.BigInteger),
                uploads.c.received,
                sa.literal("partial/", sa.String) + uploads.c.file_id,
            ).where(uploads.c.received > 0),
        )
    )


def downgrade() -> None:
    op.drop_table("upload_segments")
