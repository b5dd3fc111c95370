"""Migrations at start: Alembic under a lock, so instances starting together do not race.

Theory of operation: the migrating connection first takes a lock that every
other migrator also takes, then lets Alembic compare ``alembic_version`` with
the scripts shipped in ``migrations/versions`` and apply what is missing,
all in one transaction.  The second instance to start waits for the lock,
then finds the schema at head and does nothing.

* PostgreSQL: ``pg_advisory_xact_lock`` on a fixed key.  The transaction-scoped
  variant is released by COMMIT or ROLLBACK, so no error path (and no pooled
  connection returned mid-way) can leave it held; DDL is transactional there,
  so a failed migration leaves nothing behind.
* SQLite: ``BEGIN EXCLUSIVE`` on the migrating connection (the engine emits
  the BEGIN, see ``_engine``), waiting up to ``lock_timeout`` for a migrator
  in another process.  SQLite's DDL is transactional too.

Alembic's ``context`` and ``op`` are module-level proxies, so two migrations
in one process (two stores opened at once) are also serialized by a thread
lock; it is held only while a migration runs.
"""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from essen.store._engine import SQLITE_BEGIN

__all__ = ("MIGRATIONS", "current_revision", "head_revision", "migrate")

MIGRATIONS = Path(__file__).parent / "migrations"
#: The advisory lock key (any constant; this one spells "ESSENMIG" in ASCII).
PG_LOCK_KEY = 0x455353454E4D4947
_in_process = threading.Lock()


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision shipped with this version of ESSEN."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "no migrations shipped"
    return head


def current_revision(connection: sa.Connection) -> str | None:
    """The revision the database is at (None before the first migration)."""
    return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: sa.Engine, *, lock_timeout: float = 60.0) -> str:
    """Bring the database to the head revision; blocking, run it in a worker thread.

    Returns the revision the database is at afterwards.  Waits at most about
    ``lock_timeout`` seconds for another instance's migration.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the caller translates (``_engine.translate``).
    """
    backend = engine.dialect.name
    with _in_process:
        if backend == "sqlite":
            with engine.connect() as plain:
                # Wait for a migrator in another process as long as asked, on
                # this connection only (it is discarded afterwards, so the
                # pool never sees the long timeout), then lock exclusively.
                # (On the driver's connection: through SQLAlchemy the PRAGMA
                # would autobegin a transaction, and ours must be EXCLUSIVE.)
                raw = plain.connection.dbapi_connection
                assert raw is not None
                cursor = raw.cursor()
                try:
                    cursor.execute(f"PRAGMA busy_timeout={round(lock_timeout * 1000)}")
                finally:
                    cursor.close()
                connection = plain.execution_options(**{SQLITE_BEGIN: "BEGIN EXCLUSIVE"})
                try:
                    with connection.begin():
                        command.upgrade(_config(connection), "head")
                        revision = current_revision(connection)
                finally:
                    plain.invalidate()
        else:
            with engine.connect() as connection, connection.begin():
                ms = round(lock_timeout * 1000)
                connection.exec_driver_sql(f"SET LOCAL lock_timeout = {ms}")
                # Migrations may rewrite big tables: not bounded by the
                # per-statement timeout of ordinary calls, only by this.
                connection.exec_driver_sql(f"SET LOCAL statement_timeout = {ms * 10}")
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_LOCK_KEY)))
                command.upgrade(_config(connection), "head")
                revision = current_revision(connection)
    if revision is None:  # pragma: no cover - upgrade to head always stamps
        raise RuntimeError("migration finished without a revision")
    return revision
