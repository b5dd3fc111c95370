"""A dashboard that stops reading must not stall the others, nor grow memory without bound."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from essen.protocol.engine_server import CloseReason
from essen.realtime import EngineConfig, Overflow, ServerOptions
from essen.realtime.client import ClientOptions, ClientState
from essen.testing import deterministic_scheduling

from .conftest import Rig, server_factory

pytestmark = pytest.mark.harness

WS = "/socket.io/?EIO=4&transport=websocket"


def options(overflow: Overflow) -> ServerOptions:
    return ServerOptions(
        engine=EngineConfig(
            ping_interval=5.0, ping_timeout=3.0, max_queued_packets=20, overflow=overflow
        ),
        recovery=None,
    )


async def stalled_subscriber(rig: Rig, joined: trio.Event, task_status=trio.TASK_STATUS_IGNORED):
    """A raw WebSocket client that joins 'monitoring' and then never reads again."""
    async with rig.network.connect(WS, {}) as ws:
        await ws.receive()  # OPEN
        await ws.send("40")
        await ws.receive()  # CONNECT answer
        await ws.send('420["subscribe","monitoring"]')
        await ws.receive()  # ack
        joined.set()
        task_status.started()
        await trio.sleep_forever()


async def healthy_subscriber(rig: Rig, nursery: trio.Nursery, count: int):
    client = rig.client(ClientOptions(transports=("websocket",)))
    got: list[int] = []
    all_in = trio.Event()

    @client.on("tick")
    async def tick(n: int) -> None:
        got.append(n)
        if len(got) == count:
            all_in.set()

    await nursery.start(client.run)
    await client.wait_connected()
    await client.call("subscribe", "monitoring")
    return client, got, all_in


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_drop_oldest_keeps_the_stalled_client_bounded_and_others_whole(
    seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    with deterministic_scheduling(seed), trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            rig = Rig(nursery, server_factory(seed, options(Overflow.DROP_OLDEST)))
            server = await rig.start_server()
            joined = trio.Event()
            await nursery.start(stalled_subscriber, rig, joined)
            client, got, all_in = await healthy_subscriber(rig, nursery, 200)
            for n in range(200):
                server.emit("tick", n, to="monitoring", volatile=True)
                await trio.sleep(0.01)
            await all_in.wait()
            assert got == list(range(200))  # the healthy dashboard lost nothing
            stats = server.statistics()
            assert stats["dropped_messages"] > 0
            assert stats["sockets"]["/"] == 2  # the stalled one is still connected
            stalled = [c for c in server.engine.sessions.values() if c.session.dropped]
            assert len(stalled) == 1
            assert stalled[0].session.statistics()["queued_packets"] <= 20
            await client.aclose()
            nursery.cancel_scope.cancel()


async def test_disconnect_policy_closes_only_the_stalled_client(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            rig = Rig(nursery, server_factory(4, options(Overflow.DISCONNECT)))
            server = await rig.start_server()
            joined = trio.Event()
            await nursery.start(stalled_subscriber, rig, joined)
            client, got, all_in = await healthy_subscriber(rig, nursery, 100)
            for n in range(100):
                server.emit("tick", n, to="monitoring")
                await trio.sleep(0.01)
            await all_in.wait()
            assert got == list(range(100))
            assert server.statistics()["closed_by_reason"] == {
                CloseReason.SLOW_CONSUMER.value: 1
            }
            assert server.statistics()["sockets"]["/"] == 1
            assert client.status.state is ClientState.CONNECTED
            await client.aclose()
            nursery.cancel_scope.cancel()


async def test_undroppable_backlog_closes_the_stalled_client_under_drop_oldest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Events that must not be dropped (not volatile) cannot make room: the
    # stalled client is disconnected rather than buffered without bound.
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            rig = Rig(nursery, server_factory(5, options(Overflow.DROP_OLDEST)))
            server = await rig.start_server()
            await nursery.start(stalled_subscriber, rig, trio.Event())
            client, got, all_in = await healthy_subscriber(rig, nursery, 100)
            for n in range(100):
                server.emit("tick", n, to="monitoring")
                await trio.sleep(0.01)
            await all_in.wait()
            assert got == list(range(100))
            assert server.statistics()["closed_by_reason"] == {
                CloseReason.SLOW_CONSUMER.value: 1
            }
            await client.aclose()
            nursery.cancel_scope.cancel()


async def test_server_closes_a_client_that_stops_answering_pings(
    autojump_clock: trio.testing.MockClock, rig: Rig, nursery: trio.Nursery
) -> None:
    server = await rig.start_server()
    closed_at = trio.Event()

    @server.on_disconnect
    async def gone(socket, reason: str) -> None:
        assert reason == "ping timeout"
        closed_at.set()

    t0 = trio.current_time()
    with trio.fail_after(60):
        async with rig.network.connect(WS, {}) as ws:
            await ws.receive()
            await ws.send("40")
            await ws.receive()
            await closed_at.wait()  # never answers the server's ping
    # pingInterval 5 s, then pingTimeout 3 s without a pong.
    assert trio.current_time() - t0 == pytest.approx(8.0)
