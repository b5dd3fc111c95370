"""The ingest actor: the admin API's one truthful picture of the fleet.

Validated payloads from the hub arrive here; this actor alone owns the
:class:`Aggregator` (merged metrics, the 60-minute series, hourly rollups),
the :class:`RecentFeed` and the table of component health, so nothing needs a
lock.  Others ask it questions through one-shot reply channels (the
``subscribe`` snapshot, a conversation's history, the REST endpoints).

Every ``tick`` seconds it judges the bots' liveness (a bot that stops sending
turns ``stale`` then ``down``; ``health:changed`` on transitions only) and, if
anything changed, publishes the merged metrics: at most one ``metrics:update``
per tick however many bots report, which is what keeps the dashboard smooth.
Every minute the hourly rollups go to the store writer.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import trio

from essen.admin.broadcast import Broadcast
from essen.admin.hub import Ingest
from essen.events import ComponentStatus, HealthChanged, HealthStatus, MessageBatch, MetricsSnapshot
from essen.store.rows import MessageLogEntry, Rollup

if TYPE_CHECKING:
    from essen.admin.aggregate import Aggregator
    from essen.admin.cluster import Outgoing
    from essen.admin.feed import RecentFeed
    from essen.clock import WallClock
    from essen.store.writer import StoreItem

__all__ = ("ComponentReport", "IngestInbox", "Question", "run")

log = logging.getLogger("essen.admin")

ROLLUP_SECONDS = 60.0
MAX_REASON = 500
SNAPSHOT_FEED = 50
#: Bot components whose last report is remembered (instances come and go with deploys).
MAX_REPORTED = 2_000


@dataclass(frozen=True, slots=True)
class ComponentReport:
    """The status of one of the admin's own components (store, Redis, ...)."""

    component: str
    status: HealthStatus
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Question:
    """Ask the actor for ``what``; the answer (JSON-ready) arrives on ``reply``."""

    what: Literal["snapshot", "history", "metrics", "health"]
    reply: trio.MemorySendChannel[Any]
    user: str | None = None


IngestInbox = Ingest | ComponentReport | Question

_INSTANCE_STATUS: dict[str, HealthStatus] = {"healthy": "healthy", "stale": "stale", "down": "down"}


class _State:
    def __init__(
        self, admin_instance: str, aggregator: Aggregator, feed: RecentFeed, wall: WallClock
    ) -> None:
        self.admin_instance = admin_instance
        self.aggregator = aggregator
        self.feed = feed
        self.wall = wall
        self.components: dict[str, ComponentStatus] = {}
        #: What each bot last said of its components (restored when it comes back).
        self.reported: dict[str, tuple[HealthStatus, str | None]] = {}
        self.dirty = True

    def set_component(
        self, name: str, status: HealthStatus, reason: str | None, instance: str
    ) -> HealthChanged | None:
        if reason is not None and len(reason) > MAX_REASON:
            reason = reason[: MAX_REASON - 1] + "…"  # free text: cut, never crash on it
        current = self.components.get(name)
        if current is not None and current.status == status:
            return None
        now = self.wall.now()
        self.components[name] = ComponentStatus(
            component=name, status=status, since=now, reason=reason
        )
        return HealthChanged(
            instance=instance,
            component=name,
            status=status,
            previous=current.status if current else None,
            since=now,
            reason=reason,
        )

    def health(self) -> list[dict[str, Any]]:
        return [c.model_dump(mode="json") for c in self.components.values()]

    def metrics(self) -> dict[str, Any]:
        merged = self.aggregator.merged(trio.current_time())
        series = self.aggregator.series(self.wall.now())
        return {
            **merged.model_dump(mode="json"),
            "series": [bucket.model_dump(mode="json") for bucket in series],
        }


async def run(
    inbox: trio.MemoryReceiveChannel[IngestInbox],
    fanout: trio.MemorySendChannel[Broadcast],
    store: trio.MemorySendChannel[StoreItem] | None,
    *,
    bus: trio.MemorySendChannel[Outgoing] | None = None,
    admin_instance: str,
    aggregator: Aggregator,
    feed: RecentFeed,
    wall: WallClock,
    tick: float = 1.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Own the fleet's picture until cancelled or the inbox closes.

    ``bus``, when there are several admin instances, takes what this
    instance's own bots send to the others (:mod:`essen.admin.cluster`);
    items from the others arrive in ``inbox`` with their ``origin``.
    """
    state = _State(admin_instance, aggregator, feed, wall)
    dropped_store = 0
    dropped_bus = 0

    async def announce(change: HealthChanged | None) -> None:
        if change is not None:
            await fanout.send(
                Broadcast(
                    "health:changed", change.model_dump(mode="json"), ("monitoring", "admins")
                )
            )

    def to_store(item: StoreItem) -> None:
        nonlocal dropped_store
        if store is None:
            return
        try:
            store.send_nowait(item)
        except trio.WouldBlock:
            dropped_store += 1

    def to_bus(item: Ingest) -> None:
        nonlocal dropped_bus
        if bus is None or item.origin is not None:
            return
        try:
            bus.send_nowait(item)
        except trio.WouldBlock:
            dropped_bus += 1  # Redis is away and the outbox is full: newest dropped

    async def on_ingest(item: Ingest) -> None:
        to_bus(item)
        match item.item:
            case MetricsSnapshot() as snapshot:
                state.aggregator.ingest(snapshot, item.at)
                state.dirty = True
                await bot_alive(item.instance)
            case MessageBatch() as batch:
                for event in batch.events:
                    if not state.feed.add(event):
                        continue  # seen already (a resent batch): once per dashboard
                    rooms = ("monitoring", f"user-{event.user}")
                    await fanout.send(
                        Broadcast(
                            "message:processed",
                            event.model_dump(mode="json"),
                            rooms,
                            droppable=True,
                        )
                    )
                    if item.origin is None:  # the bot's own admin logs it, once
                        to_store(MessageLogEntry.from_event(event))
            case HealthChanged() as change:
                name = f"{item.instance}:{change.component}"
                state.reported.pop(name, None)
                state.reported[name] = (change.status, change.reason)
                if len(state.reported) > MAX_REPORTED:
                    del state.reported[next(iter(state.reported))]  # least recently reported
                await announce(
                    state.set_component(name, change.status, change.reason, item.instance)
                )

    async def bot_alive(instance: str) -> None:
        change = state.set_component(f"bot:{instance}", "healthy", None, instance)
        await announce(change)
        if change is not None and change.previous in ("stale", "down"):
            # Back from silence: its parts are what it last said of them (a bot
            # on another admin instance does not restate them to this one).
            for name, (status, reason) in state.reported.items():
                if name.startswith(f"{instance}:"):
                    await announce(state.set_component(name, status, reason, instance))

    async def on_tick(now: float) -> None:
        for instance in state.aggregator.instances():
            status = state.aggregator.status(instance, now)
            if status is None:
                continue
            reason = None if status == "healthy" else f"no metrics for {status} threshold"
            change = state.set_component(
                f"bot:{instance}", _INSTANCE_STATUS[status], reason, instance
            )
            if change is not None:
                state.dirty = True
                await announce(change)
                if status != "healthy":
                    # A silent bot cannot report its own parts: they are as
                    # unknown as the bot (it resends them when it is back).
                    for name in [n for n in state.components if n.startswith(f"{instance}:")]:
                        await announce(
                            state.set_component(
                                name,
                                _INSTANCE_STATUS[status],
                                f"bot {instance} is {status}",
                                instance,
                            )
                        )
        if state.dirty:
            state.dirty = False
            await fanout.send(
                Broadcast(
                    "metrics:update",
                    state.metrics(),
                    ("monitoring",),
                    volatile=True,
                    droppable=True,
                    coalesce="metrics:update",
                )
            )

    def answer(question: Question) -> Any:
        match question.what:
            case "snapshot":
                return {
                    "metrics": state.metrics(),
                    "health": state.health(),
                    "feed": [e.model_dump(mode="json") for e in state.feed.last(SNAPSHOT_FEED)],
                }
            case "history":
                events = state.feed.for_user(question.user or "")
                return [e.model_dump(mode="json") for e in events]
            case "metrics":
                return state.metrics()
            case "health":
                return {
                    "components": state.health(),
                    "instances": list(state.aggregator.instances()),
                }

    next_tick = trio.current_time() + tick
    next_rollup = trio.current_time() + ROLLUP_SECONDS
    task_status.started()
    while True:
        message: IngestInbox | None = None
        # Only the wait is under the deadline: a message being handled when the
        # tick falls due must be handled to the end, never cut off halfway.
        with trio.move_on_at(min(next_tick, next_rollup)):
            try:
                message = await inbox.receive()
            except trio.EndOfChannel:
                return
        match message:
            case None:
                pass
            case Ingest():
                await on_ingest(message)
            case ComponentReport(component=component, status=status, reason=reason):
                await announce(state.set_component(component, status, reason, admin_instance))
            case Question():
                # The asker may have given up (timed out): that is fine.
                with contextlib.suppress(
                    trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError
                ):
                    message.reply.send_nowait(answer(message))
        now = trio.current_time()
        if now >= next_tick:
            next_tick = now + tick
            await on_tick(now)
        if now >= next_rollup:
            next_rollup = now + ROLLUP_SECONDS
            # Only the hours that can still change (older ones were written already).
            since = wall.now() - 2 * 3600
            for row in state.aggregator.hourly_rollups(wall.now(), since=since):
                to_store(
                    Rollup(
                        instance=row.instance,
                        hour_epoch=row.hour,
                        received=row.received,
                        answered=row.answered,
                        failed=row.failed,
                    )
                )


async def ask(
    inbox: trio.MemorySendChannel[IngestInbox],
    what: Literal["snapshot", "history", "metrics", "health"],
    user: str | None = None,
) -> Any:
    """Ask the ingest actor a question and wait for its answer (wrap in a timeout)."""
    send, receive = trio.open_memory_channel[Any](1)
    await inbox.send(Question(what, send, user))
    async with receive:
        return await receive.receive()
