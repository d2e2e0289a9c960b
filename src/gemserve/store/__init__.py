"""Persistence: one Store interface, SQLite (embedded default) and PostgreSQL through SQLAlchemy."""

from gemserve.store.base import ApiKeyRecord, EventBatch, InteractionRecord, Store
from gemserve.store.sql import SqlStore, database_url_for

__all__ = [
    "ApiKeyRecord",
    "EventBatch",
    "InteractionRecord",
    "SqlStore",
    "Store",
    "database_url_for",
]
