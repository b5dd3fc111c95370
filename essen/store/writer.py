"""The store writer: persistence off the hot path, batched, surviving database outages.

Theory of operation: two tasks share one buffer.  The *receiver* drains the
inbox as fast as items come, so whoever sends never waits for the database;
it appends log entries to a bounded FIFO (at most ``max_buffer`` entries; when
full the oldest is dropped and counted) and keeps only the newest rollup per
``(instance, hour)`` (at most ``max_rollup_keys`` keys; beyond that the key
untouched longest is dropped and counted).  The batch being written is held
apart (at most ``batch_size`` entries, or the pending rollups), so memory is
bounded by ``max_buffer + batch_size`` entries and ``max_rollup_keys`` rollups,
and a failed batch goes back in front of the FIFO, where the bound applies
again.  The *flusher* waits until ``batch_size`` items
are pending or the oldest pending item has waited ``flush_interval`` seconds,
then writes one batch.  When the write fails with
:class:`~essen.errors.StoreUnavailable` it keeps the batch, waits with
exponential backoff and tries again; meanwhile the receiver keeps buffering,
so an outage costs at most the buffer's bound in memory and, past that, the
oldest entries.  A write refused for another reason (:class:`StoreError`: a
bug or bad data) would fail the same way forever, so that batch is dropped
and counted instead.

Health: ``on_health(status, reason)`` is called with ``healthy`` when the
writer starts, ``degraded`` at the first failed write, ``down`` after
``down_after`` consecutive failures, and ``healthy`` again at the next
success; only on transitions.

Shutdown: when the inbox closes, whatever is buffered is written (retrying as
above) and ``run`` returns; cancel it to give up on a database that stays down.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import trio

from essen.errors import StoreError, StoreUnavailable
from essen.realtime.backoff import Backoff, BackoffPolicy
from essen.store.rows import MessageLogEntry, Rollup

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from essen.clock import WallClock
    from essen.events import HealthStatus

__all__ = (
    "DEFAULT_BACKOFF",
    "RetentionPolicy",
    "StoreItem",
    "StoreSink",
    "StoreWriter",
    "WriterStatistics",
    "prune_periodically",
)

log = logging.getLogger("essen.store")

StoreItem = MessageLogEntry | Rollup
#: Half a second, doubling, at most 30 s between attempts while the database is down.
DEFAULT_BACKOFF = BackoffPolicy(initial=0.5, factor=2.0, maximum=30.0, jitter=0.2)


class StoreSink(Protocol):
    """What the writer needs of a store (:class:`essen.store.Store` is one)."""

    async def append_messages(self, batch: Sequence[MessageLogEntry]) -> None: ...

    async def upsert_rollups(self, rollups: Iterable[Rollup]) -> int: ...


@dataclass(frozen=True, slots=True)
class WriterStatistics:
    status: HealthStatus
    buffered_messages: int
    buffered_rollups: int
    #: Items of the write in progress (not counted as buffered).
    writing: int
    written_messages: int
    written_rollups: int
    #: Log entries dropped because the buffer was full (oldest first).
    dropped_messages: int
    #: Rollup keys dropped because too many hours were pending.
    dropped_rollups: int
    #: Items dropped because the store refused them (not an outage).
    rejected: int
    #: Failed writes since the last success.
    consecutive_failures: int
    failed_writes: int


class StoreWriter:
    """Batches log entries and rollups into the store; one instance per ``run``."""

    def __init__(
        self,
        *,
        on_health: Callable[[HealthStatus, str | None], None] | None = None,
        max_buffer: int = 10_000,
        max_rollup_keys: int = 2_000,
        backoff: BackoffPolicy = DEFAULT_BACKOFF,
        rng: random.Random | None = None,
        down_after: int = 3,
    ) -> None:
        """
        Args:
            on_health: called on health transitions (must not block).
            max_buffer: most log entries held while the store is slow or down.
            max_rollup_keys: most ``(instance, hour)`` rollups held likewise.
            backoff: delays between failed attempts (seeded by ``rng``).
            down_after: consecutive failed writes after which health is ``down``.
        """
        if max_buffer < 1 or max_rollup_keys < 1 or down_after < 1:
            raise ValueError("max_buffer, max_rollup_keys and down_after must be positive")
        self._on_health = on_health
        self._max_buffer = max_buffer
        self._max_rollup_keys = max_rollup_keys
        self._backoff = Backoff(backoff, rng or random.Random())
        self._down_after = down_after
        self._messages: deque[MessageLogEntry] = deque()
        #: Items of the write in progress (out of the buffer until it ends).
        self._in_flight = 0
        self._rollups: OrderedDict[tuple[str, int], Rollup] = OrderedDict()
        self._pending_since: float | None = None
        self._closed = False
        self._changed = trio.lowlevel.ParkingLot()
        #: None until ``run`` reports the first status.
        self._status: HealthStatus | None = None
        self._started = False
        self._written_messages = 0
        self._written_rollups = 0
        self._dropped_messages = 0
        self._dropped_rollups = 0
        self._rejected = 0
        self._consecutive_failures = 0
        self._failed_writes = 0

    def statistics(self) -> WriterStatistics:
        return WriterStatistics(
            status=self._status or "healthy",
            buffered_messages=len(self._messages),
            buffered_rollups=len(self._rollups),
            writing=self._in_flight,
            written_messages=self._written_messages,
            written_rollups=self._written_rollups,
            dropped_messages=self._dropped_messages,
            dropped_rollups=self._dropped_rollups,
            rejected=self._rejected,
            consecutive_failures=self._consecutive_failures,
            failed_writes=self._failed_writes,
        )

    async def run(
        self,
        inbox: trio.MemoryReceiveChannel[StoreItem],
        *,
        store: StoreSink,
        batch_size: int = 200,
        flush_interval: float = 1.0,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Write what arrives on ``inbox`` until it closes and everything is written.

        Args:
            batch_size: most log entries per write (and the count of pending
                items that triggers a write before ``flush_interval``).
            flush_interval: longest an item waits in the buffer while the
                store is healthy (seconds, Trio clock).

        Cancellation: stops at once; a write in progress finishes first
        (``Store`` waits for its thread) and anything still buffered is lost,
        which ``statistics()`` shows.
        """
        if self._started:
            raise RuntimeError("a StoreWriter runs once; make a new one")
        if batch_size < 1 or flush_interval < 0:
            raise ValueError("batch_size must be positive and flush_interval not negative")
        self._started = True
        self._report("healthy", None)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive, inbox)
            task_status.started()
            while await self._wait_for_work(batch_size, flush_interval):
                await self._flush(store, batch_size)

    # -- receiver -----------------------------------------------------------

    async def _receive(self, inbox: trio.MemoryReceiveChannel[StoreItem]) -> None:
        async with inbox:
            async for item in inbox:
                self._add(item)
        self._closed = True
        self._changed.unpark_all()

    def _add(self, item: StoreItem) -> None:
        if self._pending_since is None:
            self._pending_since = trio.current_time()
        match item:
            case MessageLogEntry():
                if len(self._messages) >= self._max_buffer:
                    self._messages.popleft()
                    self._dropped_messages += 1
                self._messages.append(item)
            case Rollup():
                # Newest value wins; re-inserting moves the key to the end,
                # so the key dropped on overflow is the longest untouched one.
                self._rollups.pop(item.key, None)
                if len(self._rollups) >= self._max_rollup_keys:
                    self._rollups.popitem(last=False)
                    self._dropped_rollups += 1
                self._rollups[item.key] = item
        self._changed.unpark_all()

    # -- flusher --------------------------------------------------------------

    def _pending(self) -> int:
        return len(self._messages) + len(self._rollups)

    async def _wait_for_work(self, batch_size: int, flush_interval: float) -> bool:
        """Wait until a write is due; False when the inbox closed and nothing is left."""
        while not self._pending():
            if self._closed:
                return False
            await self._changed.park()
        assert self._pending_since is not None
        with trio.move_on_at(self._pending_since + flush_interval):
            while self._pending() < batch_size and not self._closed:
                await self._changed.park()
        return True

    async def _flush(self, store: StoreSink, batch_size: int) -> None:
        """Write one batch of log entries and every pending rollup, retrying while
        the store is unavailable."""
        started = trio.current_time()
        while self._pending():
            try:
                await self._write_once(store, batch_size)
            except StoreUnavailable as error:
                self._failed(error)
                await trio.sleep(self._backoff.next())
                continue
            except StoreError as error:
                # Not an outage: the same batch would fail again.  Count it
                # and move on (the batch was removed by _write_once).
                log.error("store refused a batch, dropped: %s", error)
            self._succeeded()
            break
        # Items that arrived during the write are at most this old.
        self._pending_since = started if self._pending() else None

    async def _write_once(self, store: StoreSink, batch_size: int) -> None:
        # What is being written leaves the buffer, so the receiver's
        # drop-oldest never touches it; a failed write puts it back in front.
        if self._messages:
            batch = [self._messages.popleft() for _ in range(min(batch_size, len(self._messages)))]
            self._in_flight = len(batch)
            try:
                await store.append_messages(batch)
            except StoreUnavailable:
                self._requeue_messages(batch)
                raise
            except StoreError:
                self._rejected += len(batch)
                raise
            except BaseException:
                self._requeue_messages(batch)  # cancelled: keep the count honest
                raise
            finally:
                self._in_flight = 0
            self._written_messages += len(batch)
        if self._rollups:
            rollups = list(self._rollups.values())
            self._rollups.clear()
            self._in_flight = len(rollups)
            try:
                await store.upsert_rollups(rollups)
            except StoreError as error:
                if isinstance(error, StoreUnavailable):
                    self._requeue_rollups(rollups)
                else:
                    self._rejected += len(rollups)
                raise
            except BaseException:
                self._requeue_rollups(rollups)
                raise
            finally:
                self._in_flight = 0
            self._written_rollups += len(rollups)

    def _requeue_messages(self, batch: list[MessageLogEntry]) -> None:
        self._messages.extendleft(reversed(batch))
        while len(self._messages) > self._max_buffer:
            self._messages.popleft()
            self._dropped_messages += 1

    def _requeue_rollups(self, rollups: list[Rollup]) -> None:
        # A value that arrived during the write is newer and stays; the
        # others go back in front, oldest first, and the bound applies again.
        newer = self._rollups
        self._rollups = OrderedDict((r.key, r) for r in rollups if r.key not in newer)
        self._rollups.update(newer)
        while len(self._rollups) > self._max_rollup_keys:
            self._rollups.popitem(last=False)
            self._dropped_rollups += 1

    def _failed(self, error: StoreUnavailable) -> None:
        self._failed_writes += 1
        self._consecutive_failures += 1
        status: HealthStatus = (
            "down" if self._consecutive_failures >= self._down_after else "degraded"
        )
        self._report(
            status,
            f"{error}; retrying ({self._consecutive_failures} failed, "
            f"{len(self._messages)} entries buffered, {self._dropped_messages} dropped)",
        )

    def _succeeded(self) -> None:
        self._consecutive_failures = 0
        self._backoff.reset()
        self._report("healthy", None)

    def _report(self, status: HealthStatus, reason: str | None) -> None:
        if status == self._status:
            return
        previous, self._status = self._status, status
        if status != "healthy":
            log.warning("store %s: %s", status, reason)
        elif previous is not None:
            log.info("store writes recovered")
        if self._on_health is not None:
            self._on_health(status, reason)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long the message log keeps entries, and how often it is pruned (seconds)."""

    keep: float = 30 * 86_400.0
    interval: float = 3_600.0

    def cutoff(self, now_wall: float) -> float:
        """Entries with ``at`` before this are due for deletion."""
        return now_wall - self.keep


class _Pruner(Protocol):
    async def prune_messages(self, before_epoch: float) -> int: ...


async def prune_periodically(
    store: _Pruner,
    *,
    policy: RetentionPolicy,
    wall_clock: WallClock,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Delete log entries older than ``policy.keep`` now and every ``policy.interval``.

    An unavailable store is logged and tried again at the next interval (the
    writer's health already reports the outage).  Runs until cancelled.
    """
    task_status.started()
    while True:
        try:
            deleted = await store.prune_messages(policy.cutoff(wall_clock.now()))
        except StoreUnavailable as error:
            log.warning("message log retention skipped: %s", error)
        else:
            if deleted:
                log.info("message log retention deleted %d entries", deleted)
        await trio.sleep(policy.interval)
