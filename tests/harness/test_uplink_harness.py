"""The uplink actor against an admin stand-in over the memory network, under MockClock.

``essen.actors.uplink.run`` is driven directly: the test owns its inbox (a
memory channel) and the admin stand-in (``bot_rig.make_admin``'s Socket.IO
server behind the harness's restartable :class:`Rig`), and stamps every
arrival at the admin with the Trio clock.  So batch sizes, the flush timer,
snapshot coalescing, health ordering, the guide's log lines and the bounded
offline buffer are all checked exactly, in no real time.
"""

from __future__ import annotations

import logging
import random
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from essen.actors import uplink
from essen.actors.uplink import UplinkConfig, UplinkItem, UplinkStats
from essen.clock import TrioWallClock
from essen.events import HealthChanged, MessageProcessed, MetricsSnapshot
from essen.metrics.collector import MessageHandled, MetricsCollector
from essen.realtime.backoff import Backoff, BackoffPolicy
from essen.realtime.client import ClientState, ClientStatus, SocketIOClient

from .bot_rig import SERVICE_SECRET, AdminStandIn, make_admin
from .conftest import Rig

pytestmark = pytest.mark.harness

BACKOFF = BackoffPolicy(initial=1.0, factor=2.0, maximum=8.0, jitter=0.5)
SEED = 3
INSTANCE = "bot-1"


class Stamped(list[Any]):
    """A list that remembers the Trio time of each append (an arrival at the admin)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, item: Any) -> None:
        self.times.append(trio.current_time())
        super().append(item)


class Admins:
    """The admin stand-in across restarts: a new server (and record) per start."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.started: list[AdminStandIn] = []
        self.rig = Rig(nursery, self._make)

    def _make(self) -> Any:
        admin = make_admin()
        admin.batches = Stamped()
        admin.snapshots = Stamped()
        admin.health = Stamped()
        self.started.append(admin)
        return admin.server

    @property
    def current(self) -> AdminStandIn:
        return self.started[-1]

    async def start(self) -> AdminStandIn:
        await self.rig.start_server()
        return self.current

    async def stop(self) -> None:
        await self.rig.stop_server()

    def events(self) -> list[dict[str, Any]]:
        return [event for admin in self.started for event in admin.events]


def processed(n: int) -> MessageProcessed:
    return MessageProcessed(
        instance=INSTANCE,
        id=f"e{n}",
        user="u_aaaaaaaaaa",
        kind="text",
        direction="in",
        preview=f"hello {n}",
        outcome="answered",
        at=1_767_225_600.0 + n,
        latency_ms=12.5,
    )


def health(n: int, component: str, status: str) -> HealthChanged:
    return HealthChanged(
        instance=INSTANCE,
        component=component,
        status=status,  # type: ignore[arg-type]
        since=1_767_225_600.0 + n,
        reason=f"change {n}",
    )


class Snapshots:
    """Real metrics snapshots, each different (one more handled message each)."""

    def __init__(self) -> None:
        self.collector = MetricsCollector(INSTANCE, TrioWallClock(), start=trio.current_time())
        self.n = 0

    def next(self) -> MetricsSnapshot:
        self.n += 1
        now = trio.current_time()
        self.collector.record(MessageHandled("text", "answered", f"u_{self.n:010d}", 5.0), now)
        return self.collector.snapshot(now)

    async def request(self) -> MetricsSnapshot:
        await trio.lowlevel.checkpoint()
        return self.next()


async def start_uplink(
    nursery: trio.Nursery,
    admins: Admins,
    inbox: trio.MemoryReceiveChannel[UplinkItem],
    *,
    stats: UplinkStats | None = None,
    snapshots: Snapshots | None = None,
    statuses: list[ClientStatus] | None = None,
    **config: Any,
) -> SocketIOClient:
    settings = UplinkConfig(
        url="http://essen.test",
        secret=SERVICE_SECRET,
        instance=INSTANCE,
        path="/socket.io/",
        backoff=BACKOFF,
        **config,
    )
    client: SocketIOClient = await nursery.start(
        partial(
            uplink.run,
            inbox,
            config=settings,
            request_metrics=(snapshots or Snapshots()).request,
            on_status=statuses.append if statuses is not None else None,
            network=admins.rig.network,
            rng=random.Random(SEED),
            stats=stats,
        )
    )
    return client


def on_websocket(status: ClientStatus) -> bool:
    return status.state is ClientState.CONNECTED and status.transport == "websocket"


def retrying(status: ClientStatus) -> bool:
    return status.state is ClientState.RECONNECTING and status.retry_in is not None


async def test_250_events_at_once_go_as_100_100_50(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    admins = Admins(nursery)
    send, receive = trio.open_memory_channel[UplinkItem](1000)
    stats = UplinkStats()
    with trio.fail_after(60):
        admin = await admins.start()
        client = await start_uplink(nursery, admins, receive, stats=stats)
        await client.wait_status(on_websocket)
        t0 = trio.current_time()
        for n in range(250):
            send.send_nowait(processed(n))
        await admin.wait_until(lambda a: len(a.events) >= 250)
    batches = admin.batches
    assert [len(b["events"]) for b in batches] == [100, 100, 50]
    assert [e["id"] for e in admin.events] == [f"e{n}" for n in range(250)]
    assert {b["instance"] for b in batches} == {INSTANCE}
    assert admin.events[7] == processed(7).model_dump(mode="json")
    # The two full batches left at once; the remainder waited for the flush timer.
    assert isinstance(batches, Stamped)
    assert [t - t0 for t in batches.times] == [0.0, 0.0, pytest.approx(0.25, abs=1e-9)]
    assert (stats.batches, stats.events) == (3, 250)
    await send.aclose()


async def test_a_few_events_then_silence_flush_after_exactly_flush_after(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    admins = Admins(nursery)
    send, receive = trio.open_memory_channel[UplinkItem](100)
    with trio.fail_after(300):
        admin = await admins.start()
        client = await start_uplink(nursery, admins, receive)
        await client.wait_status(on_websocket)
        first = trio.current_time()
        send.send_nowait(processed(0))
        await trio.sleep(0.1)  # simulated time between arrivals
        send.send_nowait(processed(1))
        await trio.sleep(0.1)
        send.send_nowait(processed(2))
        await admin.wait_until(lambda a: len(a.batches) >= 1)
        # Silence: no further (empty) batch, however long.
        await trio.sleep(60)
        assert len(admin.batches) == 1
        # A later event starts a new timer of its own.
        second = trio.current_time()
        send.send_nowait(processed(3))
        await admin.wait_until(lambda a: len(a.batches) >= 2)
    batches = admin.batches
    assert isinstance(batches, Stamped)
    assert [[e["id"] for e in b["events"]] for b in batches] == [["e0", "e1", "e2"], ["e3"]]
    # 0.25 s after the first event of each batch, on the Trio clock, not after the last one.
    assert batches.times[0] - first == pytest.approx(0.25, abs=1e-9)
    assert batches.times[1] - second == pytest.approx(0.25, abs=1e-9)
    await send.aclose()


async def test_snapshots_while_disconnected_are_coalesced_to_the_latest(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    admins = Admins(nursery)
    send, receive = trio.open_memory_channel[UplinkItem](100)
    stats = UplinkStats()
    snapshots = Snapshots()
    with trio.fail_after(120):
        # Admin down from the start.
        client = await start_uplink(nursery, admins, receive, stats=stats, snapshots=snapshots)
        offline = [snapshots.next() for _ in range(3)]
        for snapshot in offline:
            await send.send(snapshot)
        await client.wait_status(retrying)
        first = await admins.start()
        await first.wait_until(lambda a: len(a.snapshots) >= 1)
        await trio.sleep(20)  # long enough for any second copy to show up
        assert first.snapshots == [offline[-1].model_dump(mode="json")]
        assert (stats.snapshots, stats.snapshots_coalesced) == (1, 2)

        # Connected: sent at once, one for one.
        live = snapshots.next()
        await send.send(live)
        await first.wait_until(lambda a: len(a.snapshots) >= 2)
        assert first.snapshots[1] == live.model_dump(mode="json")

        # Lost again: coalesced again, and the latest is sent on reconnecting.
        await admins.stop()
        await client.wait_status(retrying)
        again = [snapshots.next() for _ in range(4)]
        for snapshot in again:
            await send.send(snapshot)
        second = await admins.start()
        await second.wait_until(lambda a: len(a.snapshots) >= 1)
        await trio.sleep(20)
    assert second.snapshots == [again[-1].model_dump(mode="json")]
    assert (stats.snapshots, stats.snapshots_coalesced) == (3, 2 + 3)
    await send.aclose()


async def test_metrics_request_from_the_admin_is_answered_with_a_snapshot(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    admins = Admins(nursery)
    send, receive = trio.open_memory_channel[UplinkItem](100)
    snapshots = Snapshots()
    with trio.fail_after(60):
        admin = await admins.start()
        client = await start_uplink(nursery, admins, receive, snapshots=snapshots)
        await client.wait_connected()
        admin.server.emit("metrics:request")
        await admin.wait_until(lambda a: len(a.snapshots) >= 1)
    assert admin.snapshots[0]["totals"]["handled"] == 1  # the one Snapshots made on request
    await send.aclose()


async def test_health_events_are_sent_in_order_connected_or_not(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    admins = Admins(nursery)
    send, receive = trio.open_memory_channel[UplinkItem](100)
    stats = UplinkStats()
    changes = [
        health(0, "graph_api", "degraded"),
        health(1, "uplink", "healthy"),
        health(2, "graph_api", "healthy"),
        health(3, "actors", "degraded"),
        health(4, "actors", "healthy"),
    ]
    later = [
        health(5, "memory", "degraded"),
        health(6, "event_loop", "stale"),
        health(7, "memory", "healthy"),
    ]
    with trio.fail_after(120):
        first = await admins.start()
        client = await start_uplink(nursery, admins, receive, stats=stats)
        await client.wait_connected()
        for change in changes:
            await send.send(change)
        await first.wait_until(lambda a: len(a.health) >= len(changes))
        await admins.stop()
        await client.wait_status(retrying)
        for change in later:  # buffered while the admin is away
            await send.send(change)
        second = await admins.start()
        await second.wait_until(lambda a: len(a.health) >= len(later))
    assert first.health == [c.model_dump(mode="json") for c in changes]
    assert second.health == [c.model_dump(mode="json") for c in later]
    assert stats.health == len(changes) + len(later)
    await send.aclose()


async def test_the_guides_log_lines(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="essen.uplink")
    admins = Admins(nursery)
    send, receive = trio.open_memory_channel[UplinkItem](100)
    statuses: list[ClientStatus] = []

    def lines() -> list[tuple[int, str]]:
        return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "essen.uplink"]

    expected = Backoff(BACKOFF, random.Random(SEED))
    with trio.fail_after(120):
        # A failed attempt (the admin is down).
        client = await start_uplink(nursery, admins, receive, statuses=statuses)
        await client.wait_status(retrying)
        first_delay = expected.next()
        assert lines() == [
            (
                logging.WARNING,
                "⚠️ Connection error: handshake refused: HTTP 503 "
                """{"code": 3, "message": "server down"}"""
                f"; retry 1 in {first_delay:.1f} s",
            )
        ]
        # Connected (the attempt after the delay).
        await admins.start()
        await client.wait_connected()
        assert lines()[1:] == [
            (logging.INFO, "✅ Connected to admin backend via Socket.io (polling)"),
        ]
        # The upgrade to WebSocket is no new connection: no second line.
        await client.wait_status(on_websocket)
        assert len(lines()) == 2
        # Lost: the disconnection, then the retry it schedules (backoff afresh).
        await admins.stop()
        await client.wait_status(retrying)
        expected.reset()
        assert lines()[2:] == [
            (
                logging.WARNING,
                "❌ Disconnected from admin: connection lost: transport error network severed",
            ),
            (
                logging.WARNING,
                "⚠️ Connection error: connection lost: transport error network severed; "
                f"retry 1 in {expected.next():.1f} s",
            ),
        ]
        await admins.start()
        await client.wait_connected()
    # The restarted stand-in draws the same pid from its seeded RNG, so the client
    # may call this one "session recovered": only the line's start is certain.
    level, last = lines()[-1]
    assert level == logging.INFO
    assert last.startswith("✅ Connected to admin backend via Socket.io (polling")
    # on_status saw every transition the log lines describe.
    states = [s.state for s in statuses]
    assert states[:3] == [
        ClientState.CONNECTING,
        ClientState.RECONNECTING,
        ClientState.RECONNECTING,
    ]
    assert states.count(ClientState.CONNECTED) >= 2
    await send.aclose()


@pytest.mark.parametrize(
    ("flush_at", "sent", "limit", "arriving"),
    [
        # One event per batch: 25 emits into a buffer of 10, the first 15 dropped.
        (1, 25, 10, range(15, 25)),
        # The limit counts emits, i.e. batches: 300 events are 3 batches, one too many.
        (100, 300, 2, range(100, 300)),
    ],
)
async def test_admin_down_buffer_drops_the_oldest_and_counts_them(
    flush_at: int,
    sent: int,
    limit: int,
    arriving: range,
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
) -> None:
    admins = Admins(nursery)
    # Unbuffered: each send returns once the uplink has taken the item.
    send, receive = trio.open_memory_channel[UplinkItem](0)
    stats = UplinkStats()
    snapshots = Snapshots()
    with trio.fail_after(300):
        client = await start_uplink(
            nursery,
            admins,
            receive,
            stats=stats,
            snapshots=snapshots,
            flush_at=flush_at,
            buffer_limit=limit,
        )
        for n in range(sent):
            await send.send(processed(n))
        # Taking this one means the uplink is done with everything before it
        # (and a snapshot does not use the buffer: it is coalesced).
        await send.send(snapshots.next())
        batches = -(-sent // flush_at)
        dropped = batches - limit
        assert (stats.dropped_batches, stats.dropped_events) == (dropped, sent - len(arriving))
        assert (stats.batches, stats.events) == (0, 0)  # nothing could be sent yet
        assert not client.connected
        admin = await admins.start()
        await admin.wait_until(lambda a: len(a.events) >= len(arriving))
        await trio.sleep(20)  # nothing else is on its way
    assert [e["id"] for e in admin.events] == [f"e{n}" for n in arriving]
    assert (stats.batches, stats.events) == (limit, len(arriving))
    assert stats.dropped_batches == dropped
    await send.aclose()


async def test_a_batch_the_admin_never_acknowledged_is_sent_again_to_the_next_admin(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """The admin died with a batch in flight (received, not acknowledged): the
    events reach the next admin instead of being lost with it."""
    admins = Admins(nursery)
    send, receive = trio.open_memory_channel[UplinkItem](100)
    stats = UplinkStats()
    with trio.fail_after(300):
        first = await admins.start()
        client = await start_uplink(nursery, admins, receive, stats=stats)
        await client.wait_status(on_websocket)
        swallowed = trio.Event()

        @first.server.on("message:processed")
        async def never_acknowledge(socket: Any, batch: dict[str, Any]) -> None:
            swallowed.set()
            await trio.sleep_forever()

        for n in range(5):
            send.send_nowait(processed(n))
        await swallowed.wait()
        await admins.stop()
        second = await admins.start()
        await second.wait_until(lambda a: len(a.events) >= 5)
        await trio.sleep(20)  # nothing else is on its way
    assert [e["id"] for e in second.events] == [f"e{n}" for n in range(5)]
    assert (stats.batches, stats.resent, stats.dropped_batches) == (1, 1, 0)
    await send.aclose()
