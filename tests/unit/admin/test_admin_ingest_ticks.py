"""The ingest actor's tick must never cut a message's handling short."""

import trio
import trio.testing

from essen.admin import ingest
from essen.admin.aggregate import Aggregator
from essen.admin.broadcast import Broadcast
from essen.admin.feed import RecentFeed
from essen.admin.hub import Ingest
from essen.clock import TrioWallClock
from essen.events import MessageBatch, MessageProcessed


def batch(start: int, size: int) -> MessageBatch:
    return MessageBatch(instance="bot-1", events=tuple(
        MessageProcessed(instance="bot-1", id=f"e{n}", user="u_abcdef", kind="text",
                         direction="in", outcome="answered", at=1.0)
        for n in range(start, start + size)
    ))


async def test_every_event_is_broadcast_while_ticks_fall_due(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox_send, inbox = trio.open_memory_channel[ingest.IngestInbox](100)
    fanout, fanout_receive = trio.open_memory_channel[Broadcast](0)
    seen: list[str] = []
    all_seen = trio.Event()

    async def slow_fanout() -> None:
        async for item in fanout_receive:
            if item.event == "message:processed":
                seen.append(item.payload["id"])
                if len(seen) == 2000:
                    all_seen.set()
            await trio.sleep(0.002)  # a busy broadcaster: ticks fall due mid-batch

    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_fanout)
            await nursery.start(lambda task_status: ingest.run(
                inbox, fanout, None, admin_instance="admin-1",
                aggregator=Aggregator(stale_after=15, down_after=60), feed=RecentFeed(),
                wall=TrioWallClock(), tick=0.05, task_status=task_status,
            ))
            for start in range(0, 2000, 100):
                await inbox_send.send(Ingest("bot-1", batch(start, 100), trio.current_time()))
            with trio.move_on_after(60):
                await all_seen.wait()
            nursery.cancel_scope.cancel()
    assert seen == [f"e{n}" for n in range(2000)]
