"""Table definitions (SQLAlchemy Core); Alembic migrations create them."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

metadata = sa.MetaData()

# JSON kept as its text (PostgreSQL's ``json``, not ``jsonb``, which re-orders keys): a stored
# interaction reads back byte for byte as the replica that ran it served it (migration 0008).
Json = sa.JSON()


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (naive text) as on PostgreSQL (timestamptz)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Stamp = UtcDateTime()

interactions = sa.Table(
    "interactions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False, index=True),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("status", sa.String(32), nullable=False, index=True),
    sa.Column("background", sa.Boolean, nullable=False, default=False),
    sa.Column("previous_interaction_id", sa.String(64), nullable=True),
    sa.Column("input", Json, nullable=False),
    sa.Column("system_instruction", sa.Text, nullable=True),
    sa.Column("generation_config", Json, nullable=True),
    sa.Column("steps", Json, nullable=False),
    sa.Column("usage", Json, nullable=True),
    sa.Column("error", Json, nullable=True),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
    sa.Column("expires_at", Stamp, nullable=False, index=True),
    # The replica generating it (None: finished, or stored by a server without replicas).
    sa.Column("owner", sa.String(40), nullable=True, index=True),
    # Set by a replica asked to cancel an interaction another replica generates.
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
)

# One row per running server: its lease is renewed while it lives. An interaction whose owner
# has no live lease was lost with its replica.
replicas = sa.Table(
    "replicas",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("host", sa.String(256), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", Stamp, nullable=False),
    sa.Column("lease_until", Stamp, nullable=False),
)

# What every replica must agree on (fingerprints, never secrets): the first replica records
# them, a replica that differs refuses to start.
cluster_settings = sa.Table(
    "cluster_settings",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(512), nullable=False),
    sa.Column("recorded_at", Stamp, nullable=False),
)

interaction_events = sa.Table(
    "interaction_events",
    metadata,
    sa.Column(
        "interaction_id",
        sa.String(64),
        sa.ForeignKey("interactions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("event", Json, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("revoked_at", Stamp, nullable=True),
)

files = sa.Table(
    "files",
    metadata,
    # The blob's key: made by the server, never derived from user input.
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    # The resource name without "files/" (client-chosen or server-made), unique per tenant.
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("display_name", sa.String(512), nullable=True),
    sa.Column("mime_type", sa.String(255), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
    sa.Column("expires_at", Stamp, nullable=False, index=True),
    sa.UniqueConstraint("tenant", "name", name="uq_files_tenant_name"),
)

uploads = sa.Table(
    "uploads",
    metadata,
    # SHA-256 of the upload token in the upload URL (the token is the capability).
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False, index=True),
    # The blob key the finished file will have; the partial blob is kept under it.
    sa.Column("file_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("display_name", sa.String(512), nullable=True),
    sa.Column("mime_type", sa.String(255), nullable=False),
    sa.Column("declared_size", sa.BigInteger, nullable=True),
    sa.Column("received", sa.BigInteger, nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("expires_at", Stamp, nullable=False, index=True),
)

# The bytes of an upload in progress: one blob per accepted chunk request, in offset order.
# A chunk's row is written in the transaction that advances uploads.received from its offset
# (only if received is still that offset), so of two replicas racing one offset exactly one
# records its segment; the other deletes its own blob (segment keys carry a nonce).
upload_segments = sa.Table(
    "upload_segments",
    metadata,
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

cached_contents = sa.Table(
    "cached_contents",
    metadata,
    # The resource id (after "cachedContents/"), made by the server.
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False, index=True),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("display_name", sa.String(512), nullable=True),
    # contents, systemInstruction, tools, toolConfig as validated (camelCase wire JSON).
    sa.Column("content", Json, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("token_count", sa.Integer, nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
    sa.Column("expires_at", Stamp, nullable=False, index=True),
)

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False, index=True),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("display_name", sa.String(512), nullable=True),
    sa.Column("state", sa.String(32), nullable=False, index=True),
    sa.Column("request_count", sa.Integer, nullable=False),
    sa.Column("succeeded", sa.Integer, nullable=False),
    sa.Column("failed", sa.Integer, nullable=False),
    # The host[:port] names the batch was created through (file uris that name this server).
    sa.Column("own_hosts", Json, nullable=False),
    sa.Column("error", Json, nullable=True),
    # A batch read from a JSONL file ("files/…") answers in a file of its own.
    sa.Column("input_file", sa.String(64), nullable=True),
    sa.Column("output_file", sa.String(64), nullable=True),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
    sa.Column("end_time", Stamp, nullable=True),
    # Set when the batch ends; the sweeper deletes it (and its items) after that.
    sa.Column("expires_at", Stamp, nullable=True, index=True),
    # The replica running it, until lease_until (renewed while it runs): a batch whose lease
    # ran out (its replica died) or was released (a clean shutdown) is claimed by another.
    sa.Column("claimed_by", sa.String(40), nullable=True),
    sa.Column("lease_until", Stamp, nullable=True),
    # What the requests are: "generate" or "embed" (asyncBatchEmbedContent).
    sa.Column("kind", sa.String(16), nullable=False, server_default="generate"),
)

batch_items = sa.Table(
    "batch_items",
    metadata,
    sa.Column(
        "batch_id",
        sa.String(64),
        sa.ForeignKey("batches.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("request", Json, nullable=False),
    sa.Column("metadata", Json, nullable=True),
    # pending, succeeded or failed
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("response", Json, nullable=True),
    sa.Column("error", Json, nullable=True),
)
