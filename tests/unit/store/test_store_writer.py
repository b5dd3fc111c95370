"""The store writer: batching, backoff, the bounded buffer, health transitions.

A fake store records each write with the Trio time it happened and fails on
command, so under ``autojump_clock`` every flush and retry time is exact.  The
last tests run the writer against a real SQLite store (real threads, real
clock).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from essen.clock import TrioWallClock
from essen.errors import StoreError, StoreUnavailable
from essen.realtime.backoff import BackoffPolicy
from essen.store import (
    HOUR,
    MessageLogEntry,
    RetentionPolicy,
    Rollup,
    Store,
    StoreItem,
    StoreWriter,
    default_url,
    prune_periodically,
)
from tests.unit.store.store_contract import T0, entry

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

#: No jitter: retry delays are 1, 2, 4, 8... seconds exactly.
EXACT = BackoffPolicy(initial=1.0, factor=2.0, maximum=8.0, jitter=0.0)


@dataclass
class FakeStore:
    """Records writes; raises the queued errors first, one per call."""

    failures: list[Exception] = field(default_factory=list)
    messages: list[tuple[float, list[MessageLogEntry]]] = field(default_factory=list)
    rollups: list[tuple[float, list[Rollup]]] = field(default_factory=list)
    attempts: list[float] = field(default_factory=list)
    #: When set, writes wait for it (a slow database).
    gate: trio.Event | None = None

    async def _enter(self) -> None:
        self.attempts.append(trio.current_time())
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)

    async def append_messages(self, batch: Sequence[MessageLogEntry]) -> None:
        await self._enter()
        self.messages.append((trio.current_time(), list(batch)))

    async def upsert_rollups(self, rollups: Iterable[Rollup]) -> int:
        await self._enter()
        written = list(rollups)
        self.rollups.append((trio.current_time(), written))
        return len(written)

    def written(self) -> list[MessageLogEntry]:
        return [e for _, batch in self.messages for e in batch]


@dataclass
class HealthLog:
    events: list[tuple[str, str | None]] = field(default_factory=list)

    def __call__(self, status: str, reason: str | None) -> None:
        self.events.append((status, reason))

    @property
    def statuses(self) -> list[str]:
        return [status for status, _ in self.events]


def writer(health: HealthLog | None = None, **kwargs: object) -> StoreWriter:
    return StoreWriter(on_health=health, backoff=EXACT, rng=random.Random(1), **kwargs)  # type: ignore[arg-type]


async def test_full_batches_go_at_once_and_the_rest_after_the_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore()
    send, receive = trio.open_memory_channel[StoreItem](1000)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            start = trio.current_time()
            await nursery.start(
                partial(writer().run, receive, store=store, batch_size=100, flush_interval=5.0)
            )
            for n in range(250):
                send.send_nowait(entry(n))
            await trio.testing.wait_all_tasks_blocked()
            assert [len(b) for _, b in store.messages] == [100, 100]
            assert all(at == start for at, _ in store.messages)
            await trio.sleep(10)
            await send.aclose()
    assert [len(b) for _, b in store.messages] == [100, 100, 50]
    assert store.messages[2][0] == pytest.approx(start + 5.0)
    assert store.written() == [entry(n) for n in range(250)]


async def test_a_lone_item_waits_exactly_the_flush_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore()
    send, receive = trio.open_memory_channel[StoreItem](10)
    w = writer()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(w.run, receive, store=store, batch_size=100, flush_interval=2.0)
            )
            await trio.sleep(7)  # idle: nothing is written
            assert store.attempts == []
            sent_at = trio.current_time()
            await send.send(entry(1))
            await trio.sleep(3)
            assert store.messages == [(sent_at + 2.0, [entry(1)])]
            await send.aclose()
    assert w.statistics().written_messages == 1


async def test_rollups_keep_only_the_newest_value_per_hour(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore()
    send, receive = trio.open_memory_channel[StoreItem](100)
    versions = [Rollup("bot-a", T0, received=n) for n in range(1, 6)]
    other = Rollup("bot-b", T0 + HOUR, received=3)
    for rollup in [*versions, other]:
        send.send_nowait(rollup)
    await send.aclose()
    w = writer()
    with trio.fail_after(60):
        await w.run(receive, store=store, batch_size=100, flush_interval=1.0)
    assert [batch for _, batch in store.rollups] == [[versions[-1], other]]
    assert w.statistics().written_rollups == 2


async def test_outage_retries_with_backoff_and_reports_health(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore(failures=[StoreUnavailable(f"down #{n}") for n in range(4)])
    health = HealthLog()
    w = writer(health, down_after=3)
    send, receive = trio.open_memory_channel[StoreItem](100)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            start = trio.current_time()
            await nursery.start(
                partial(w.run, receive, store=store, batch_size=3, flush_interval=1.0)
            )
            assert health.statuses == ["healthy"]
            for n in range(3):
                send.send_nowait(entry(n))
            await trio.testing.wait_all_tasks_blocked()
            assert health.statuses == ["healthy", "degraded"]
            assert w.statistics().consecutive_failures == 1
            await trio.sleep(100)
            await send.aclose()
    # Attempts at 0, then after 1, 2, 4 and 8 s of backoff.
    assert [t - start for t in store.attempts] == [0, 1, 3, 7, 15]
    assert health.statuses == ["healthy", "degraded", "down", "healthy"]
    degraded, down = health.events[1][1], health.events[2][1]
    assert degraded is not None
    assert "down #0" in degraded
    assert down is not None
    assert "down #2" in down
    assert store.written() == [entry(n) for n in range(3)]
    stats = w.statistics()
    assert (stats.failed_writes, stats.consecutive_failures, stats.status) == (4, 0, "healthy")


async def test_backoff_starts_over_after_a_success(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore(failures=[StoreUnavailable("a"), StoreUnavailable("b")])
    w = writer()
    send, receive = trio.open_memory_channel[StoreItem](100)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            start = trio.current_time()
            await nursery.start(
                partial(w.run, receive, store=store, batch_size=1, flush_interval=1.0)
            )
            await send.send(entry(1))
            await trio.sleep(50)
            store.failures.append(StoreUnavailable("c"))
            await send.send(entry(2))
            await trio.sleep(50)
            await send.aclose()
    assert [t - start for t in store.attempts] == [0, 1, 3, 50, 51]


async def test_buffer_is_bounded_and_drops_the_oldest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The database hangs; the sender never blocks, the buffer keeps the newest 10."""
    store = FakeStore(gate=trio.Event())
    health = HealthLog()
    w = writer(health, max_buffer=10)
    send, receive = trio.open_memory_channel[StoreItem](1)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(w.run, receive, store=store, batch_size=4, flush_interval=1.0)
            )
            for n in range(4):
                await send.send(entry(n))
            await trio.testing.wait_all_tasks_blocked()
            assert len(store.attempts) == 1  # writing 0..3, stuck
            for n in range(4, 30):
                with trio.fail_after(1):  # never waits for the database
                    await send.send(entry(n))
            await trio.testing.wait_all_tasks_blocked()
            stats = w.statistics()
            assert (stats.buffered_messages, stats.dropped_messages, stats.writing) == (10, 16, 4)
            store.gate.set()  # type: ignore[union-attr]
            await send.aclose()
    written = store.written()
    # The batch in flight (0..3) lands; 4..19 were dropped while it hung.
    assert written == [entry(n) for n in [0, 1, 2, 3, *range(20, 30)]]
    stats = w.statistics()
    assert (stats.written_messages, stats.dropped_messages, stats.buffered_messages) == (14, 16, 0)
    assert health.statuses == ["healthy"]


async def test_rollup_keys_are_bounded_too(autojump_clock: trio.testing.MockClock) -> None:
    store = FakeStore(failures=[StoreUnavailable("down")] * 3)
    w = writer(max_rollup_keys=3)
    send, receive = trio.open_memory_channel[StoreItem](100)
    for hour in range(5):
        send.send_nowait(Rollup("bot-a", T0 + hour * HOUR, received=hour))
    send.send_nowait(Rollup("bot-a", T0 + 2 * HOUR, received=99))  # touches hour 2 again
    await send.aclose()
    with trio.fail_after(600):
        await w.run(receive, store=store, batch_size=100, flush_interval=1.0)
    [(_, written)] = store.rollups
    assert sorted((r.hour_epoch - T0) // HOUR for r in written) == [2, 3, 4]
    assert w.statistics().dropped_rollups == 2


async def test_a_refused_batch_is_dropped_not_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore(failures=[StoreError("value too long")])
    health = HealthLog()
    w = writer(health)
    send, receive = trio.open_memory_channel[StoreItem](100)
    for n in range(3):
        send.send_nowait(entry(n))
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: w.run(receive, store=store, batch_size=3, flush_interval=1.0)
            )
            await trio.testing.wait_all_tasks_blocked()
            await send.send(entry(3))
            await send.aclose()
    assert store.written() == [entry(3)]
    stats = w.statistics()
    assert (stats.rejected, stats.written_messages, stats.failed_writes) == (3, 1, 0)
    assert health.statuses == ["healthy"]


async def test_closing_the_inbox_flushes_what_is_buffered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore(failures=[StoreUnavailable("down")])
    send, receive = trio.open_memory_channel[StoreItem](100)
    for n in range(7):
        send.send_nowait(entry(n))
    send.send_nowait(Rollup("bot-a", T0, received=7))
    await send.aclose()
    with trio.fail_after(60):
        await writer().run(receive, store=store, batch_size=5, flush_interval=60.0)
    assert store.written() == [entry(n) for n in range(7)]
    assert [r for _, batch in store.rollups for r in batch] == [Rollup("bot-a", T0, received=7)]


async def test_cancelling_stops_even_while_the_database_is_down(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore(failures=[StoreUnavailable("down")] * 1000)
    w = writer()
    send, receive = trio.open_memory_channel[StoreItem](100)
    send.send_nowait(entry(1))
    await send.aclose()
    with trio.move_on_after(30) as scope:
        await w.run(receive, store=store, batch_size=5, flush_interval=1.0)
    assert scope.cancelled_caught
    assert w.statistics().buffered_messages == 1


async def test_a_writer_runs_once(autojump_clock: trio.testing.MockClock) -> None:
    w = writer()
    send, receive = trio.open_memory_channel[StoreItem](1)
    await send.aclose()
    await w.run(receive, store=FakeStore())
    _, receive2 = trio.open_memory_channel[StoreItem](1)
    with pytest.raises(RuntimeError, match="once"):
        await w.run(receive2, store=FakeStore())


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        StoreWriter(max_buffer=0)


async def test_retention_prunes_every_interval(autojump_clock: trio.testing.MockClock) -> None:
    cutoffs: list[float] = []

    class Pruner:
        async def prune_messages(self, before_epoch: float) -> int:
            cutoffs.append(before_epoch)
            if len(cutoffs) == 2:
                raise StoreUnavailable("down")
            return 1

    wall = TrioWallClock(epoch=T0)
    policy = RetentionPolicy(keep=30 * 86_400.0, interval=3_600.0)
    with trio.move_on_after(3 * 3_600.0 + 1):
        await prune_periodically(Pruner(), policy=policy, wall_clock=wall)
    assert cutoffs == [T0 - policy.keep + h * 3_600.0 for h in range(4)]


# -- against a real SQLite store (threads and a real clock) -----------------


class FlakyStore:
    """A real store whose first ``failures`` calls fail as an outage would."""

    def __init__(self, store: Store, failures: int) -> None:
        self.store = store
        self.failures = failures

    async def append_messages(self, batch: Sequence[MessageLogEntry]) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("connection refused")
        await self.store.append_messages(batch)

    async def upsert_rollups(self, rollups: Iterable[Rollup]) -> int:
        return await self.store.upsert_rollups(rollups)


QUICK = BackoffPolicy(initial=0.001, factor=2.0, maximum=0.01, jitter=0.0)


async def test_writer_into_sqlite_survives_failures(tmp_path) -> None:
    health = HealthLog()
    w = StoreWriter(on_health=health, backoff=QUICK, down_after=2)
    send, receive = trio.open_memory_channel[StoreItem](100)
    with trio.fail_after(30):
        async with await Store.open(default_url(tmp_path)) as store:
            async with send:
                for n in range(25):
                    send.send_nowait(entry(n))
                send.send_nowait(Rollup("bot-a", T0, received=25))
            await w.run(
                receive, store=FlakyStore(store, failures=3), batch_size=10, flush_interval=0.01
            )
            assert await store.messages_for_user("u_alice01", limit=100) == [
                entry(n) for n in reversed(range(25))
            ]
            assert await store.rollups(T0, T0 + HOUR) == [Rollup("bot-a", T0, received=25)]
    assert health.statuses == ["healthy", "degraded", "down", "healthy"]


async def test_writer_into_a_closed_store_goes_down(tmp_path) -> None:
    health = HealthLog()
    w = StoreWriter(on_health=health, backoff=QUICK, down_after=2)
    send, receive = trio.open_memory_channel[StoreItem](100)
    store = await Store.open(default_url(tmp_path))
    await store.close()
    send.send_nowait(entry(1))
    await send.aclose()
    with trio.move_on_after(1):
        await w.run(receive, store=store, batch_size=10, flush_interval=0.01)
    assert health.statuses == ["healthy", "degraded", "down"]
    reason = health.events[-1][1]
    assert reason is not None
    assert "closed" in reason
    assert w.statistics().buffered_messages == 1
