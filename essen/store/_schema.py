"""The tables, as SQLAlchemy Core metadata (the one description both dialects use).

The migrations under ``migrations/versions`` create exactly this; a test
compares the migrated database with this metadata, so the two cannot drift.
Times are epoch seconds as floating point (``at``, ``created_at``) or whole
hours (``hour_epoch``): the store never interprets time zones, the caller's
:class:`essen.clock.WallClock` is the only source of wall time.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ("admin_users", "hourly_rollups", "message_log", "metadata")

#: Constraint names fixed by convention, so migrations on SQLite (which
#: recreates tables to alter them) and PostgreSQL name things the same.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)

admin_users = sa.Table(
    "admin_users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
)

hourly_rollups = sa.Table(
    "hourly_rollups",
    metadata,
    sa.Column("instance", sa.String(64), primary_key=True),
    sa.Column("hour_epoch", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("received", sa.BigInteger, nullable=False),
    sa.Column("answered", sa.BigInteger, nullable=False),
    sa.Column("failed", sa.BigInteger, nullable=False),
    # The wire histogram's bucket counts (LATENCY_BOUNDS_MS + overflow) as a
    # JSON array: the bounds are fixed by the contract, so columns per bucket
    # would only make a bounds change a schema change.
    sa.Column("latency_counts", sa.JSON, nullable=False),
    sa.Column("latency_sum_ms", sa.Float, nullable=False),
    sa.Column("unique_users_estimate", sa.BigInteger, nullable=False),
)

message_log = sa.Table(
    "message_log",
    metadata,
    sa.Column("instance", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),
    # ``user`` is reserved in PostgreSQL; the column says what it holds.
    sa.Column("user_pseudonym", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("direction", sa.String(3), nullable=False),
    sa.Column("preview", sa.String(200), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=True),
    sa.Column("error_code", sa.Integer, nullable=True),
    sa.Index(None, "at"),
    sa.Index(None, "user_pseudonym", "at"),
)
