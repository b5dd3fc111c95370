"""The async facade of the persistent store.

Every database call is blocking (SQLAlchemy Core over sqlite3 or psycopg) and
runs in a Trio worker thread, bounded by a :class:`trio.CapacityLimiter` no
larger than the connection pool, so a slow database ties up threads and
connections, never the event loop.  Each method is one transaction.

Cancellation: a cancelled caller waits for its statement's thread to return
(at most about the engine's statement/busy timeout) so that a write is never
left running unobserved, where it could land after a newer write of the same
key.  :meth:`Store.ping` is the exception: it only reads, so a cancelled ping
abandons its thread at once, which is what a health probe's timeout needs.

Errors: only :class:`~essen.errors.StoreError` leaves this module;
:class:`~essen.errors.StoreUnavailable` means "try again later".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import sqlalchemy as sa
import trio
from pydantic import ValidationError
from sqlalchemy import exc
from sqlalchemy.dialects import postgresql, sqlite

from essen.clock import SystemWallClock
from essen.errors import AdminExists, StoreError, StoreUnavailable
from essen.events import Histogram
from essen.store._engine import EngineSettings, create_engine, normalize_url, translate
from essen.store._migrate import migrate
from essen.store._schema import admin_users, hourly_rollups, message_log
from essen.store.rows import AdminUser, MessageLogEntry, Rollup

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from essen.clock import WallClock

__all__ = ("MAX_USER_MESSAGES", "Store", "StoreStatistics")

T = TypeVar("T")

#: The most log entries one ``messages_for_user`` call returns.
MAX_USER_MESSAGES = 1000
Backend = Literal["sqlite", "postgresql"]


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    backend: Backend
    revision: str
    #: Worker threads currently running a call (at most ``max_threads``).
    threads_busy: int
    max_threads: float
    #: Callers waiting for a worker thread.
    threads_waiting: int


class Store:
    """Admin accounts, hourly rollups and the message log, on SQLite or PostgreSQL.

    Get one with :meth:`open` (it migrates the schema), use it from any
    number of tasks, and :meth:`close` it (or use ``async with``).
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        revision: str,
        limiter: trio.CapacityLimiter,
        wall_clock: WallClock,
    ) -> None:
        """Use :meth:`open`; this only wires an already migrated engine."""
        self._engine: sa.Engine | None = engine
        self._backend: Backend = "sqlite" if engine.dialect.name == "sqlite" else "postgresql"
        self._revision = revision
        self._limiter = limiter
        self._wall = wall_clock

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        wall_clock: WallClock | None = None,
        settings: EngineSettings | None = None,
        limiter: trio.CapacityLimiter | None = None,
        migration_lock_timeout: float = 60.0,
    ) -> Store:
        """Connect to ``url`` (``sqlite:///...`` or ``postgresql://...``) and migrate it.

        Several instances may open the same database at once: migrations are
        serialized by a database lock (see ``essen.store._migrate``), waiting at
        most about ``migration_lock_timeout`` seconds.

        Args:
            wall_clock: stamps ``created_at`` of new admins (the system clock
                by default; the harness passes its own).
            settings: connection timeouts and pool size.
            limiter: bounds the worker threads; by default one per pooled
                connection, so no thread waits for a connection inside the pool.

        Raises:
            StoreUnavailable: the database cannot be reached or stayed locked.
            StoreError: the URL is unusable or a migration failed.
        """
        settings = settings or EngineSettings()
        parsed = normalize_url(url)
        limiter = limiter or trio.CapacityLimiter(settings.pool_size)

        def connect_and_migrate() -> tuple[sa.Engine, str]:
            # Creating the SQLite folder is file I/O too: all of it off the loop.
            engine = create_engine(parsed, settings)
            try:
                revision = translate(
                    lambda: migrate(engine, lock_timeout=migration_lock_timeout),
                    "migrating the store",
                )
            except BaseException:
                engine.dispose()
                raise
            return engine, revision

        engine, revision = await trio.to_thread.run_sync(connect_and_migrate, limiter=limiter)
        return cls(
            engine,
            revision=revision,
            limiter=limiter,
            wall_clock=wall_clock or SystemWallClock(),
        )

    async def close(self) -> None:
        """Close every pooled connection; later calls raise ``StoreUnavailable``.

        Idempotent.  Waits for calls already running in worker threads.
        """
        engine, self._engine = self._engine, None
        if engine is not None:
            await trio.to_thread.run_sync(engine.dispose, limiter=self._limiter)

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with trio.CancelScope(shield=True):
            await self.close()

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def revision(self) -> str:
        """The schema revision the database was migrated to at open."""
        return self._revision

    @property
    def closed(self) -> bool:
        return self._engine is None

    def statistics(self) -> StoreStatistics:
        limiter = self._limiter.statistics()
        return StoreStatistics(
            backend=self._backend,
            revision=self._revision,
            threads_busy=limiter.borrowed_tokens,
            max_threads=limiter.total_tokens,
            threads_waiting=limiter.tasks_waiting,
        )

    # -- admin accounts ---------------------------------------------------

    async def create_admin(self, username: str, password_hash: str) -> AdminUser:
        """Add an enabled admin account, stamped with the wall clock.

        Raises:
            AdminExists: the username is taken (also when another instance
                created it an instant earlier).
        """
        user = AdminUser(username, password_hash, created_at=self._wall.now())

        def insert(connection: sa.Connection) -> AdminUser:
            try:
                connection.execute(
                    admin_users.insert().values(
                        username=user.username,
                        password_hash=user.password_hash,
                        created_at=user.created_at,
                        disabled=False,
                    )
                )
            except exc.IntegrityError:
                raise AdminExists(username) from None
            return user

        return await self._call(insert, "creating an admin")

    async def get_admin(self, username: str) -> AdminUser | None:
        """The account named exactly ``username``, or None."""

        def select(connection: sa.Connection) -> AdminUser | None:
            row = connection.execute(
                sa.select(
                    admin_users.c.username,
                    admin_users.c.password_hash,
                    admin_users.c.created_at,
                    admin_users.c.disabled,
                ).where(admin_users.c.username == username)
            ).one_or_none()
            if row is None:
                return None
            return AdminUser(row.username, row.password_hash, row.created_at, bool(row.disabled))

        return await self._call(select, "reading an admin")

    async def set_password_hash(self, username: str, password_hash: str) -> bool:
        """Replace an account's hash (a new password, or a rehash with new
        parameters); False when there is no such account."""
        return await self._update_admin(username, {"password_hash": password_hash})

    async def set_admin_disabled(self, username: str, disabled: bool) -> bool:
        """Disable (or enable again) an account; False when there is no such account."""
        return await self._update_admin(username, {"disabled": disabled})

    async def _update_admin(self, username: str, values: dict[str, Any]) -> bool:
        def update(connection: sa.Connection) -> bool:
            result = connection.execute(
                admin_users.update().where(admin_users.c.username == username).values(**values)
            )
            return bool(result.rowcount)

        return await self._call(update, "updating an admin")

    # -- hourly rollups ---------------------------------------------------

    async def upsert_rollups(self, rollups: Iterable[Rollup]) -> int:
        """Write each rollup, replacing a stored one with the same (instance, hour)
        unless the stored one counts more.

        Idempotent: writing the same rollups twice, or from two admin
        instances, stores each hour once, never a sum.  An hour's counts only
        grow while it is open, so the fuller row is the truer one: an admin
        instance that started mid-hour, or that missed some of another
        instance's bot events while Redis was away, cannot overwrite a
        complete hour with its partial view.  Within one call a later rollup
        for a key replaces an earlier one.  Returns how many keys were sent.
        """
        latest: dict[tuple[str, int], Rollup] = {}
        for rollup in rollups:
            latest[rollup.key] = rollup
        if not latest:
            return 0
        # Same key order in every writer: two instances upserting the same
        # hours cannot deadlock on each other's row locks (PostgreSQL).
        rows = [_rollup_row(latest[key]) for key in sorted(latest)]

        def upsert(connection: sa.Connection) -> int:
            insert = self._insert(hourly_rollups)
            stored, new = hourly_rollups.c, insert.excluded
            statement = insert.on_conflict_do_update(
                index_elements=[stored.instance, stored.hour_epoch],
                set_={
                    name: insert.excluded[name]
                    for name in rows[0]
                    if name not in ("instance", "hour_epoch")
                },
                where=(new.received + new.answered + new.failed)
                >= (stored.received + stored.answered + stored.failed),
            )
            connection.execute(statement, rows)
            return len(rows)

        return await self._call(upsert, "writing rollups")

    async def rollups(
        self, since_epoch: float, until_epoch: float, instance: str | None = None
    ) -> list[Rollup]:
        """Rollups with ``since_epoch <= hour_epoch < until_epoch``, oldest first
        (then by instance), for one instance or all."""
        statement = (
            sa.select(hourly_rollups)
            .where(hourly_rollups.c.hour_epoch >= since_epoch)
            .where(hourly_rollups.c.hour_epoch < until_epoch)
            .order_by(hourly_rollups.c.hour_epoch, hourly_rollups.c.instance)
        )
        if instance is not None:
            statement = statement.where(hourly_rollups.c.instance == instance)

        def select(connection: sa.Connection) -> list[Rollup]:
            return [_rollup_from(row) for row in connection.execute(statement).mappings()]

        return await self._call(select, "reading rollups")

    # -- message log ------------------------------------------------------

    async def append_messages(self, batch: Sequence[MessageLogEntry]) -> None:
        """Append log entries; an entry whose (instance, id) is stored already is skipped.

        Skipping makes a retried batch (its first attempt committed but the
        answer was lost) harmless.
        """
        unique: dict[tuple[str, str], MessageLogEntry] = {}
        for entry in batch:
            unique.setdefault((entry.instance, entry.id), entry)
        if not unique:
            return
        rows = [_message_row(entry) for entry in unique.values()]

        def insert(connection: sa.Connection) -> None:
            statement = self._insert(message_log).on_conflict_do_nothing(
                index_elements=[message_log.c.instance, message_log.c.id]
            )
            connection.execute(statement, rows)

        await self._call(insert, "appending to the message log")

    async def messages_for_user(self, user: str, limit: int = 50) -> list[MessageLogEntry]:
        """The newest ``limit`` (1..1000) entries of one pseudonymous user, newest first."""
        if not 1 <= limit <= MAX_USER_MESSAGES:
            raise ValueError(f"limit must be 1..{MAX_USER_MESSAGES}, got {limit}")
        statement = (
            sa.select(message_log)
            .where(message_log.c.user_pseudonym == user)
            .order_by(message_log.c.at.desc(), message_log.c.id.desc())
            .limit(limit)
        )

        def select(connection: sa.Connection) -> list[MessageLogEntry]:
            return [_message_from(row) for row in connection.execute(statement).mappings()]

        return await self._call(select, "reading the message log")

    async def prune_messages(self, before_epoch: float) -> int:
        """Delete log entries with ``at < before_epoch`` (retention); returns how many."""

        def delete(connection: sa.Connection) -> int:
            result = connection.execute(message_log.delete().where(message_log.c.at < before_epoch))
            return int(result.rowcount)

        return await self._call(delete, "pruning the message log")

    # -- health -------------------------------------------------------------

    async def ping(self) -> None:
        """Round-trip ``SELECT 1``; returns when the database answered.

        Takes no timeout: wrap it (``with trio.move_on_after(2): await
        store.ping()``).  A cancelled ping returns at once and leaves its
        read-only thread to finish on its own.

        Raises:
            StoreUnavailable: the database did not answer or the store is closed.
        """
        engine = self._require_engine()

        def select_one() -> None:
            with engine.connect() as connection:
                connection.execute(sa.select(sa.literal(1))).scalar_one()

        await trio.to_thread.run_sync(
            translate, select_one, "ping", limiter=self._limiter, abandon_on_cancel=True
        )

    # -- plumbing -----------------------------------------------------------

    def _require_engine(self) -> sa.Engine:
        if self._engine is None:
            raise StoreUnavailable("the store is closed")
        return self._engine

    def _insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        # The one dialect switch of the write path: both dialects spell
        # UPSERT as INSERT ... ON CONFLICT, with the same SQLAlchemy API.
        if self._backend == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    async def _call(self, work: Callable[[sa.Connection], T], what: str) -> T:
        engine = self._require_engine()

        def transaction() -> T:
            with engine.begin() as connection:
                return work(connection)

        return await trio.to_thread.run_sync(translate, transaction, what, limiter=self._limiter)


def _rollup_row(rollup: Rollup) -> dict[str, Any]:
    return {
        "instance": rollup.instance,
        "hour_epoch": rollup.hour_epoch,
        "received": rollup.received,
        "answered": rollup.answered,
        "failed": rollup.failed,
        "latency_counts": list(rollup.latency.counts),
        "latency_sum_ms": rollup.latency.sum_ms,
        "unique_users_estimate": rollup.unique_users_estimate,
    }


def _rollup_from(row: sa.RowMapping) -> Rollup:
    try:
        latency = Histogram(counts=tuple(row["latency_counts"]), sum_ms=row["latency_sum_ms"])
    except (ValidationError, TypeError) as error:
        # Bucket bounds are part of the wire contract; a stored row with
        # another shape predates a contract change and needs a migration.
        raise StoreError(
            f"rollup {row['instance']}@{row['hour_epoch']} has an unreadable histogram"
        ) from error
    return Rollup(
        instance=row["instance"],
        hour_epoch=int(row["hour_epoch"]),
        received=int(row["received"]),
        answered=int(row["answered"]),
        failed=int(row["failed"]),
        latency=latency,
        unique_users_estimate=int(row["unique_users_estimate"]),
    )


def _message_row(entry: MessageLogEntry) -> dict[str, Any]:
    return {
        "instance": entry.instance,
        "id": entry.id,
        "user_pseudonym": entry.user,
        "kind": entry.kind,
        "direction": entry.direction,
        "preview": entry.preview,
        "outcome": entry.outcome,
        "at": entry.at,
        "latency_ms": entry.latency_ms,
        "error_code": entry.error_code,
    }


def _message_from(row: sa.RowMapping) -> MessageLogEntry:
    return MessageLogEntry(
        id=row["id"],
        instance=row["instance"],
        user=row["user_pseudonym"],
        kind=row["kind"],
        direction=row["direction"],
        preview=row["preview"],
        outcome=row["outcome"],
        at=row["at"],
        latency_ms=row["latency_ms"],
        error_code=row["error_code"],
    )
