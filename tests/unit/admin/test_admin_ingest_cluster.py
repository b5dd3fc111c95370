"""The ingest actor with several admin instances: what it shares, logs and shows."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio
import trio.testing

from essen.admin import ingest
from essen.admin.aggregate import Aggregator
from essen.admin.broadcast import Broadcast
from essen.admin.cluster import Outgoing
from essen.admin.feed import RecentFeed
from essen.admin.hub import Ingest
from essen.clock import TrioWallClock
from essen.events import (
    HealthChanged,
    Histogram,
    MessageBatch,
    MessageProcessed,
    MetricsSnapshot,
)
from essen.store.writer import StoreItem


def batch(instance: str, *ids: str) -> MessageBatch:
    return MessageBatch(
        instance=instance,
        events=tuple(
            MessageProcessed(
                instance=instance,
                id=i,
                user="u_abcdef",
                kind="text",
                direction="in",
                outcome="answered",
                at=1.0,
            )
            for i in ids
        ),
    )


def snapshot(instance: str) -> MetricsSnapshot:
    now = TrioWallClock().now()
    return MetricsSnapshot(
        instance=instance,
        at=now,
        started_at=now,
        uptime_s=0.0,
        totals={"received": 1},
        windows={},
        send_api=Histogram(),
        per_minute=(),
    )


@dataclass
class Rig:
    inbox: trio.MemorySendChannel[ingest.IngestInbox]
    bus: trio.MemoryReceiveChannel[Outgoing]
    broadcasts: list[Broadcast] = field(default_factory=list)
    stored: list[StoreItem] = field(default_factory=list)

    async def send(self, instance: str, item: object, origin: str | None = None) -> None:
        await self.inbox.send(Ingest(instance, item, trio.current_time(), origin=origin))  # type: ignore[arg-type]
        await trio.testing.wait_all_tasks_blocked()

    def feed(self) -> list[str]:
        return [b.payload["id"] for b in self.broadcasts if b.event == "message:processed"]

    def health(self, component: str) -> list[str]:
        return [
            b.payload["status"]
            for b in self.broadcasts
            if b.event == "health:changed" and b.payload["component"] == component
        ]


@asynccontextmanager
async def running() -> AsyncIterator[Rig]:
    inbox_send, inbox = trio.open_memory_channel[ingest.IngestInbox](100)
    fanout, fanout_receive = trio.open_memory_channel[Broadcast](100)
    store, store_receive = trio.open_memory_channel[StoreItem](100)
    bus_send, bus_receive = trio.open_memory_channel[Outgoing](100)
    rig = Rig(inbox_send, bus_receive)

    async def drain() -> None:
        async with trio.open_nursery() as inner:

            async def broadcasts() -> None:
                async for item in fanout_receive:
                    rig.broadcasts.append(item)

            async def stored() -> None:
                async for item in store_receive:
                    rig.stored.append(item)

            inner.start_soon(broadcasts)
            inner.start_soon(stored)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        await nursery.start(
            lambda task_status: ingest.run(
                inbox,
                fanout,
                store,
                bus=bus_send,
                admin_instance="admin-a",
                aggregator=Aggregator(stale_after=15, down_after=60),
                feed=RecentFeed(),
                wall=TrioWallClock(),
                task_status=task_status,
            )
        )
        yield rig
        nursery.cancel_scope.cancel()


def drained(receive: trio.MemoryReceiveChannel[Outgoing]) -> list[Outgoing]:
    items = []
    while True:
        try:
            items.append(receive.receive_nowait())
        except trio.WouldBlock:
            return items


async def test_only_this_instances_own_bot_events_are_shared(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as rig:
        await rig.send("bot-1", batch("bot-1", "e1"))
        await rig.send("bot-9", batch("bot-9", "r1"), origin="admin-b")
        shared = drained(rig.bus)
    assert [item.instance for item in shared if isinstance(item, Ingest)] == ["bot-1"]
    assert rig.feed() == ["e1", "r1"]  # both shown to this instance's dashboards


async def test_the_message_log_is_written_by_the_bots_own_admin_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as rig:
        await rig.send("bot-1", batch("bot-1", "e1"))
        await rig.send("bot-9", batch("bot-9", "r1"), origin="admin-b")
    logged = [getattr(item, "id", None) for item in rig.stored]
    assert logged == ["e1"]


async def test_an_event_seen_twice_is_shown_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as rig:
        await rig.send("bot-1", batch("bot-1", "e1", "e2"))
        await rig.send("bot-1", batch("bot-1", "e2", "e3"))  # a resent batch
    assert rig.feed() == ["e1", "e2", "e3"]


async def test_a_bot_back_from_silence_gets_its_components_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A bot on another admin instance does not restate its components to this
    one when it is heard again (after a Redis outage): they come back as it
    last reported them, instead of staying "down"."""
    async with running() as rig:
        await rig.send("bot-9", snapshot("bot-9"), origin="admin-b")
        change = HealthChanged(
            instance="bot-9", component="graph_api", status="degraded", since=0.0, reason="429s"
        )
        await rig.send("bot-9", change, origin="admin-b")
        await trio.sleep(62)  # silent past down_after (ticks are whole seconds)
        assert rig.health("bot:bot-9")[-1] == "down"
        assert rig.health("bot-9:graph_api")[-1] == "down"
        await rig.send("bot-9", snapshot("bot-9"), origin="admin-b")
    assert rig.health("bot:bot-9")[-1] == "healthy"
    assert rig.health("bot-9:graph_api")[-1] == "degraded"
