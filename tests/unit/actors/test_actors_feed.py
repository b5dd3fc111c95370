"""FeedHub: fan-out in order, a reader that falls behind is dropped, a bounded subscriber count."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from essen.actors.feed import FeedHub


def drain(channel: trio.MemoryReceiveChannel[int]) -> tuple[list[int], bool]:
    """What is buffered in ``channel`` now, and whether it has ended."""
    items: list[int] = []
    while True:
        try:
            items.append(channel.receive_nowait())
        except trio.WouldBlock:
            return items, False
        except trio.EndOfChannel:
            return items, True


async def test_every_subscriber_gets_everything_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub: FeedHub[int] = FeedHub(per_subscriber=8)
    channels = [hub.subscribe() for _ in range(3)]
    received: list[list[int]] = [[] for _ in channels]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def read(index: int) -> None:
                async for item in channels[index]:
                    received[index].append(item)

            for index in range(len(channels)):
                nursery.start_soon(read, index)
            for n in range(100):
                hub.publish(n)
                if n % 5 == 4:
                    # Readers keep up: they run whenever the publisher pauses.
                    await trio.testing.wait_all_tasks_blocked()
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert received == [list(range(100))] * 3
    assert hub.published == 100
    assert hub.dropped_subscribers == 0
    assert hub.subscribers == 3


async def test_only_what_is_published_after_subscribing() -> None:
    hub: FeedHub[int] = FeedHub()
    hub.publish(1)
    channel = hub.subscribe()
    hub.publish(2)
    assert drain(channel) == ([2], False)
    await trio.lowlevel.checkpoint()


async def test_a_reader_that_falls_behind_is_dropped_and_the_others_go_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub: FeedHub[int] = FeedHub(per_subscriber=4)
    stuck = hub.subscribe()  # never reads
    live = hub.subscribe()
    got: list[int] = []
    with trio.fail_after(10):
        for n in range(4):
            hub.publish(n)
            got.extend(drain(live)[0])
        # Exactly full, not over: still subscribed.
        assert hub.subscribers == 2
        assert hub.dropped_subscribers == 0
        for n in range(4, 20):
            hub.publish(n)
            got.extend(drain(live)[0])
        await trio.lowlevel.checkpoint()
    # The fifth item did not fit: the stuck reader was dropped, its channel
    # ends after the 4 items it had room for, and it got nothing after.
    assert drain(stuck) == ([0, 1, 2, 3], True)
    with pytest.raises(trio.EndOfChannel):
        stuck.receive_nowait()
    assert hub.dropped_subscribers == 1
    assert hub.subscribers == 1
    assert got == list(range(20))
    assert hub.statistics() == {
        "subscribers": 1,
        "dropped_subscribers": 1,
        "published": 20,
        "per_subscriber": 4,
    }


async def test_a_dropped_reader_waiting_in_receive_sees_the_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub: FeedHub[int] = FeedHub(per_subscriber=2)
    slow = hub.subscribe()
    seen: list[int] = []
    ended = trio.Event()
    release = trio.Event()

    async def slow_reader() -> None:
        await release.wait()  # busy elsewhere while the feed overflows
        async for item in slow:
            seen.append(item)
        ended.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_reader)
            for n in range(3):
                hub.publish(n)
            release.set()
            await ended.wait()
    assert seen == [0, 1]
    assert hub.subscribers == 0


async def test_max_subscribers_is_enforced() -> None:
    hub: FeedHub[int] = FeedHub(per_subscriber=1, max_subscribers=3)
    channels = [hub.subscribe() for _ in range(3)]
    with pytest.raises(OverflowError, match="too many subscribers"):
        hub.subscribe()
    assert hub.subscribers == 3
    # A subscriber dropped for falling behind frees its place.
    hub.publish(0)
    drain(channels[1])
    drain(channels[2])
    hub.publish(1)  # channels[0] is still full of item 0: dropped
    assert hub.subscribers == 2
    channels.append(hub.subscribe())
    with pytest.raises(OverflowError):
        hub.subscribe()
    await trio.lowlevel.checkpoint()


async def test_a_reader_that_left_frees_its_place_without_waiting_for_traffic() -> None:
    """An SSE client that disconnects closes its channel (``async with channel``
    in /debug/message-stream).  On a quiet bot nothing is published for hours,
    and the place must not stay taken until something is: otherwise
    ``max_subscribers`` reconnects of the dashboard lock everyone out with 503
    while nobody is subscribed."""
    hub: FeedHub[int] = FeedHub(max_subscribers=2)
    for _ in range(2):
        channel = hub.subscribe()
        await channel.aclose()
    # Raises OverflowError today: both closed readers still count until the next publish.
    hub.subscribe()
    assert hub.subscribers == 1
