"""Engines for SQLite and PostgreSQL, and the translation of driver errors.

Everything dialect-specific the store needs lives here (plus the UPSERT
constructs in ``_queries``): URL spelling, connection settings, SQLite's
pragmas, and which driver exceptions mean "the database is unavailable" (retry
later) versus "this statement is wrong" (do not retry).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event, exc

from essen.errors import StoreError, StoreUnavailable

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable

T = TypeVar("T")

__all__ = (
    "SQLITE_BEGIN",
    "EngineSettings",
    "create_engine",
    "default_url",
    "normalize_url",
    "translate",
)

DEFAULT_FILE = "essen.db"
#: Execution option naming the statement that opens a SQLite transaction.
SQLITE_BEGIN = "essen_sqlite_begin"


def default_url(data_dir: Path) -> str:
    """``sqlite:///<data_dir>/essen.db``: the zero-setup default of ``DATABASE_URL``."""
    return f"sqlite:///{(data_dir / DEFAULT_FILE).resolve()}"


def normalize_url(url: str) -> sa.URL:
    """Parse ``url`` and pin the driver ESSEN ships with.

    Operators write ``postgresql://`` (or Heroku-style ``postgres://``) as
    their platform hands it out; SQLAlchemy would pick psycopg2 for that, which
    ESSEN does not install, so the plain spellings become
    ``postgresql+psycopg`` (psycopg 3).  Only SQLite and PostgreSQL are
    accepted: they are the two dialects the store is tested against.
    """
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    try:
        parsed = sa.make_url(url)
    except exc.ArgumentError as error:
        raise StoreError(f"DATABASE_URL is not a database URL: {error}") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgresql":
        if driver not in ("", "psycopg"):
            raise StoreError(f"PostgreSQL driver {driver!r} is not supported; use psycopg 3")
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise StoreError(f"SQLite driver {driver!r} is not supported")
        return parsed.set(drivername="sqlite+pysqlite")
    raise StoreError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Timeouts that bound every blocking call (seconds), and the pool size.

    They are the reason worker threads never hang: a statement that waits
    longer than this fails with :class:`StoreUnavailable` instead, so a
    cancelled caller waits at most about this long for its thread to return.
    """

    connect_timeout: float = 5.0
    statement_timeout: float = 15.0
    #: SQLite: how long a writer waits for another connection's lock.
    busy_timeout: float = 5.0
    pool_size: int = 4


def create_engine(url: sa.URL, settings: EngineSettings) -> sa.Engine:
    """An engine for ``url`` (already normalized) with ESSEN's connection settings."""
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings)
    return sa.create_engine(
        url,
        pool_size=settings.pool_size,
        max_overflow=0,
        pool_timeout=settings.connect_timeout,
        # A connection the server dropped (restart, failover) is noticed on
        # checkout instead of failing the first statement after the outage.
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": max(1, round(settings.connect_timeout)),
            "options": f"-c statement_timeout={round(settings.statement_timeout * 1000)}",
            "application_name": "essen-admin",
        },
    )


def _sqlite_engine(url: sa.URL, settings: EngineSettings) -> sa.Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        try:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreUnavailable(f"cannot create the database folder: {error}") from None
    engine = sa.create_engine(
        url,
        pool_size=settings.pool_size,
        max_overflow=0,
        pool_timeout=settings.connect_timeout,
        connect_args={
            # Trio's worker threads come and go; a pooled connection is used by
            # one thread at a time, which is all SQLite requires.
            "check_same_thread": False,
            "timeout": settings.busy_timeout,
        },
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Python's sqlite3 (3.11) opens transactions only before DML, so DDL
        # would run outside any transaction and a failed migration would be
        # left half done.  Taking transaction control away from it and
        # emitting BEGIN ourselves (below) makes every transaction real.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # WAL: readers (the dashboard's REST calls) never wait for the
            # writer, and a crash loses at most the last transaction.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={round(settings.busy_timeout * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        # The migration runner asks for BEGIN EXCLUSIVE: that is its lock.
        connection.exec_driver_sql(connection.get_execution_options().get(SQLITE_BEGIN, "BEGIN"))

    return engine


#: Errors that say nothing about the statement, only about the database's
#: reachability or load: worth retrying.
_UNAVAILABLE = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.DisconnectionError,
    exc.TimeoutError,
    exc.ResourceClosedError,
)


def translate(call: Callable[[], T], what: str) -> T:
    """Run ``call`` and turn SQLAlchemy's errors into ESSEN's.

    Only :class:`StoreError` (and subclasses) leave the store; the original is
    chained as ``__cause__`` for the log.
    """
    try:
        return call()
    except _UNAVAILABLE as error:
        raise StoreUnavailable(f"{what}: {_summary(error)}") from error
    except exc.SQLAlchemyError as error:
        raise StoreError(f"{what}: {_summary(error)}") from error


def _summary(error: exc.SQLAlchemyError) -> str:
    """The driver's one-line message, without the statement and parameters.

    SQLAlchemy's ``str()`` appends the SQL and its parameters; those can hold
    log previews, so they stay out of health reasons and log lines.
    """
    original = getattr(error, "orig", None)
    text = str(original) if original is not None else str(error)
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return first[:300]
