"""The store's contract, written once and run against every backend.

``tests/unit/store/test_store_sqlite.py`` runs it on SQLite in a temporary
folder, ``tests/integration/test_store_postgres.py`` on a real PostgreSQL:
each subclasses :class:`StoreContract` and provides the ``store_url`` fixture
(a fresh, empty database per test).  Real threads and a real clock, so every
test is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import threading
from contextlib import nullcontext
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
import trio
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from essen.clock import TrioWallClock
from essen.errors import AdminExists, StoreUnavailable
from essen.events import LATENCY_BOUNDS_MS, Histogram
from essen.store import HOUR, MessageLogEntry, Rollup, Store, _migrate, head_revision
from essen.store._engine import EngineSettings, create_engine, normalize_url
from essen.store._schema import metadata

if TYPE_CHECKING:
    from collections.abc import Sequence

DEADLINE = 30
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, an hour boundary


def histogram(*latencies_ms: float) -> Histogram:
    counts = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    for latency in latencies_ms:
        index = next((i for i, b in enumerate(LATENCY_BOUNDS_MS) if latency <= b), -1)
        counts[index] += 1
    return Histogram(counts=tuple(counts), sum_ms=float(sum(latencies_ms)))


def entry(n: int, *, user: str = "u_alice01", at: float | None = None) -> MessageLogEntry:
    return MessageLogEntry(
        id=f"evt{n:06d}",
        instance="bot-a",
        user=user,
        kind="text",
        direction="in",
        preview=f"hello #{n}",
        outcome="answered",
        at=float(T0 + n) if at is None else at,
        latency_ms=12.5,
        error_code=None,
    )


def schema_differences(url: str) -> list[object]:
    """What Alembic's autogenerate sees between the migrated database and ``_schema``."""
    engine = create_engine(normalize_url(url), EngineSettings())
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diffs: list[object] = compare_metadata(context, metadata)
            return diffs
    finally:
        engine.dispose()


class StoreContract:
    """Behaviour every backend must show.  Subclasses provide ``store_url``."""

    # -- migrations -------------------------------------------------------

    async def test_open_migrates_to_head_and_matches_the_schema(self, store_url: str) -> None:
        with trio.fail_after(DEADLINE):
            async with await Store.open(store_url) as store:
                assert store.revision == head_revision()
        assert schema_differences(store_url) == []

    async def test_migrations_are_idempotent(self, store_url: str) -> None:
        with trio.fail_after(DEADLINE):
            async with await Store.open(store_url) as store:
                await store.create_admin("ada", "$argon2id$fake")
            for _ in range(2):
                async with await Store.open(store_url) as store:
                    assert store.revision == head_revision()
                    admin = await store.get_admin("ada")
                    assert admin is not None
                    assert admin.username == "ada"

    async def test_stores_opened_together_do_not_race(self, store_url: str) -> None:
        revisions: list[str] = []

        async def open_one() -> None:
            async with await Store.open(store_url) as store:
                revisions.append(store.revision)

        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(open_one)
        assert revisions == [head_revision()] * 4
        assert schema_differences(store_url) == []

    def test_database_lock_alone_serializes_migrators(
        self, store_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without the in-process lock (as in separate processes), threads
        migrating one empty database at the same moment still do not race."""
        monkeypatch.setattr(_migrate, "_in_process", nullcontext())
        engines = [create_engine(normalize_url(store_url), EngineSettings()) for _ in range(3)]
        barrier = threading.Barrier(len(engines))
        results: list[str] = []
        errors: list[BaseException] = []

        def migrate(engine: sa.Engine) -> None:
            try:
                barrier.wait(timeout=DEADLINE)
                results.append(_migrate.migrate(engine, lock_timeout=DEADLINE))
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=migrate, args=(e,)) for e in engines]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=DEADLINE * 2)
        finally:
            for engine in engines:
                engine.dispose()
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert results == [head_revision()] * len(engines)
        assert schema_differences(store_url) == []

    # -- admin accounts ---------------------------------------------------

    async def test_admin_accounts(self, store_url: str) -> None:
        with trio.fail_after(DEADLINE):
            async with await Store.open(store_url, wall_clock=TrioWallClock(epoch=T0)) as store:
                created = await store.create_admin("ada", "$argon2id$v=19$first")
                assert created.created_at == T0
                assert await store.get_admin("nobody") is None
                assert await store.get_admin("ADA") is None  # exact match
                stored = await store.get_admin("ada")
                assert stored == created
                assert not stored.disabled
                with pytest.raises(AdminExists):
                    await store.create_admin("ada", "$argon2id$v=19$other")

                assert await store.set_password_hash("ada", "$argon2id$v=19$second")
                assert await store.set_admin_disabled("ada", True)
                assert not await store.set_password_hash("nobody", "x")
                changed = await store.get_admin("ada")
                assert changed is not None
                assert changed.password_hash == "$argon2id$v=19$second"
                assert changed.disabled
                assert "argon2" not in repr(changed)

    # -- hourly rollups ---------------------------------------------------

    async def test_rollups_round_trip_and_select_by_range_and_instance(
        self, store_url: str
    ) -> None:
        rows = [
            Rollup("bot-a", T0, 10, 8, 1, histogram(4, 30, 900, 30_000), 7),
            Rollup("bot-b", T0, 5, 5, 0, histogram(12), 3),
            Rollup("bot-a", T0 + HOUR, 2, 2, 0, histogram(), 1),
            Rollup("bot-a", T0 + 2 * HOUR, 1, 0, 1, histogram(), 1),
        ]
        with trio.fail_after(DEADLINE):
            async with await Store.open(store_url) as store:
                assert await store.upsert_rollups(rows) == 4
                assert await store.upsert_rollups([]) == 0
                everything = await store.rollups(T0, T0 + 3 * HOUR)
                assert everything == [rows[0], rows[1], rows[2], rows[3]]
                assert everything[0].latency.count == 4
                assert everything[0].latency.sum_ms == pytest.approx(30_934)
                assert await store.rollups(T0 + HOUR, T0 + 2 * HOUR) == [rows[2]]
                assert await store.rollups(T0, T0 + 3 * HOUR, instance="bot-b") == [rows[1]]
                assert await store.rollups(T0 - HOUR, T0) == []

    async def test_upsert_replaces_instead_of_adding(self, store_url: str) -> None:
        first = Rollup("bot-a", T0, received=10, answered=9, latency=histogram(20, 40))
        later = Rollup("bot-a", T0, received=12, answered=11, latency=histogram(20, 40, 60))
        with trio.fail_after(DEADLINE):
            async with await Store.open(store_url) as store:
                await store.upsert_rollups([first])
                await store.upsert_rollups([first])  # a retry after a lost answer
                assert await store.rollups(T0, T0 + HOUR) == [first]
                await store.upsert_rollups([later])
                assert await store.rollups(T0, T0 + HOUR) == [later]
                # Within one call the later value of a key wins.
                await store.upsert_rollups([first, later])
                assert await store.rollups(T0, T0 + HOUR) == [later]

    async def test_a_partial_view_of_an_hour_does_not_replace_a_fuller_one(
        self, store_url: str
    ) -> None:
        """An admin instance that joined mid-hour (or missed events while Redis
        was away) writes less for the same bot and hour: the fuller row stays."""
        full = Rollup("bot-a", T0, received=120, answered=118, failed=2, latency=histogram(20, 40))
        partial = Rollup("bot-a", T0, received=30, answered=30, latency=histogram(20))
        with trio.fail_after(DEADLINE):
            async with await Store.open(store_url) as store:
                await store.upsert_rollups([full])
                await store.upsert_rollups([partial])
                assert await store.rollups(T0, T0 + HOUR) == [full]

    async def test_two_writers_of_the_same_hour_do_not_double_count(self, store_url: str) -> None:
        """Two admin instances write the same bot's hours, interleaved and concurrently."""
        hours = [T0 + h * HOUR for h in range(6)]

        def version(hour: int, n: int) -> Rollup:
            return Rollup("bot-a", hour, received=100 + n, answered=90 + n, latency=histogram(n))

        async def writer(store: Store, order: Sequence[int]) -> None:
            for n in range(1, 6):
                await store.upsert_rollups([version(hours[i], n) for i in order])

        with trio.fail_after(DEADLINE):
            async with (
                await Store.open(store_url) as one,
                await Store.open(store_url) as two,
            ):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(writer, one, range(6))
                    nursery.start_soon(writer, two, range(5, -1, -1))
                stored = await one.rollups(T0, T0 + 6 * HOUR)
        # One row per hour holding the final value (both wrote n=5 last).
        assert stored == [version(hour, 5) for hour in hours]

    # -- message log ------------------------------------------------------

    async def test_message_log_append_is_idempotent_and_reads_newest_first(
        self, store_url: str
    ) -> None:
        alice = [entry(n) for n in range(5)]
        bob = [entry(100 + n, user="u_bob0001") for n in range(3)]
        with trio.fail_after(DEADLINE):
            async with await Store.open(store_url) as store:
                await store.append_messages([*alice, *bob])
                await store.append_messages(alice[:2])  # a retried batch
                await store.append_messages([alice[0], alice[0]])
                await store.append_messages([])
                got = await store.messages_for_user("u_alice01", limit=10)
                assert got == list(reversed(alice))
                assert await store.messages_for_user("u_alice01", limit=2) == [alice[4], alice[3]]
                assert await store.messages_for_user("u_nobody1") == []
                with pytest.raises(ValueError, match="limit"):
                    await store.messages_for_user("u_alice01", limit=0)

    async def test_message_log_keeps_optional_fields(self, store_url: str) -> None:
        failed = MessageLogEntry(
            id="evt-failed",
            instance="bot-a",
            user="u_carol001",
            kind="postback",
            direction="out",
            preview="",
            outcome="failed",
            at=T0 + 0.125,
            latency_ms=None,
            error_code=613,
        )
        with trio.fail_after(DEADLINE):
            async with await Store.open(store_url) as store:
                await store.append_messages([failed])
                assert await store.messages_for_user("u_carol001") == [failed]

    async def test_retention_deletes_only_older_entries(self, store_url: str) -> None:
        day = 86_400.0
        old = [entry(n, at=T0 - 40 * day + n) for n in range(3)]
        recent = [entry(10 + n, at=T0 - day + n) for n in range(2)]
        with trio.fail_after(DEADLINE):
            async with await Store.open(store_url) as store:
                await store.append_messages([*old, *recent])
                assert await store.prune_messages(T0 - 30 * day) == 3
                assert await store.prune_messages(T0 - 30 * day) == 0
                assert await store.messages_for_user("u_alice01") == list(reversed(recent))

    # -- health and lifecycle -----------------------------------------------

    async def test_ping_and_closed_store(self, store_url: str) -> None:
        with trio.fail_after(DEADLINE):
            store = await Store.open(store_url)
            await store.ping()
            assert store.statistics().threads_busy == 0
            await store.close()
            await store.close()  # idempotent
            assert store.closed
            with pytest.raises(StoreUnavailable, match="closed"):
                await store.ping()
            with pytest.raises(StoreUnavailable, match="closed"):
                await store.get_admin("ada")
