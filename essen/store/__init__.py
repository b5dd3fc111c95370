"""The persistent store: admin accounts, hourly rollups, the sanitized message log.

One code path for SQLite (the default, ``sqlite:///<ESSEN_DATA_DIR>/essen.db``,
WAL mode) and PostgreSQL (``postgresql://...``, psycopg 3) through SQLAlchemy
Core; Alembic migrations shipped in this package run at :meth:`Store.open`
under a database lock.  Blocking calls run in worker threads; the
:class:`StoreWriter` keeps writes off the hot path.
"""

from __future__ import annotations

from essen.store._engine import EngineSettings, default_url
from essen.store._migrate import head_revision
from essen.store.rows import HOUR, AdminUser, MessageLogEntry, Rollup, hour_of
from essen.store.store import MAX_USER_MESSAGES, Store, StoreStatistics
from essen.store.writer import (
    DEFAULT_BACKOFF,
    RetentionPolicy,
    StoreItem,
    StoreSink,
    StoreWriter,
    WriterStatistics,
    prune_periodically,
)

__all__ = (
    "DEFAULT_BACKOFF",
    "HOUR",
    "MAX_USER_MESSAGES",
    "AdminUser",
    "EngineSettings",
    "MessageLogEntry",
    "RetentionPolicy",
    "Rollup",
    "Store",
    "StoreItem",
    "StoreSink",
    "StoreStatistics",
    "StoreWriter",
    "WriterStatistics",
    "default_url",
    "head_revision",
    "hour_of",
    "prune_periodically",
)
