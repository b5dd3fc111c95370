"""A whole Socket.IO session in-process under MockClock: same trace every run."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from essen.realtime.backoff import Backoff, BackoffPolicy
from essen.realtime.client import ClientOptions, ClientState
from essen.testing import deterministic_scheduling

from .conftest import Rig, server_factory

pytestmark = pytest.mark.harness

BACKOFF = BackoffPolicy(initial=1.0, factor=2.0, maximum=10.0, jitter=0.5)


async def scripted_session(nursery: trio.Nursery) -> list[tuple[float, str, str]]:
    """Connect (polling, then upgrade), talk, live through heartbeats and a server restart."""
    rig = Rig(nursery, server_factory(seed=42))
    await rig.start_server()
    client = rig.client(ClientOptions(backoff=BACKOFF), seed=3)
    received: list[object] = []

    @client.on("metrics:update")
    async def on_metrics(data: object) -> None:
        received.append(data)

    with trio.fail_after(120):
        await nursery.start(client.run)
        await client.wait_status(lambda s: s.transport == "websocket")
        assert await client.call("subscribe", "monitoring") == [True]
        assert rig.server is not None
        for n in range(3):
            rig.server.emit("metrics:update", {"n": n}, to="monitoring")
        await trio.sleep(12)  # two heartbeat cycles of simulated time
        await rig.stop_server()
        await client.wait_status(lambda s: s.state is ClientState.RECONNECTING)
        await trio.sleep(3)  # the server stays down for three simulated seconds
        await rig.start_server()
        await client.wait_connected()
        await client.aclose()
    await rig.network.aclose()
    assert received == [{"n": 0}, {"n": 1}, {"n": 2}]
    return rig.trace


async def run_scripted(seed: int) -> list[tuple[float, str, str]]:
    with deterministic_scheduling(seed):
        async with trio.open_nursery() as nursery:
            trace = await scripted_session(nursery)
            nursery.cancel_scope.cancel()  # the restarted server would serve forever
        return trace


async def test_same_trace_every_run(autojump_clock: trio.testing.MockClock) -> None:
    first = await run_scripted(seed=5)
    second = await run_scripted(seed=5)
    assert first == second
    kinds = [(kind, detail) for _, kind, detail in first]
    # The trace holds the protocol, not just the outcome: the upgrade probe,
    # a heartbeat at the ping interval, and the reconnection after the restart.
    assert ("ws>", "'2probe'") in kinds
    assert ("ws<", "'3probe'") in kinds
    pings = [t for t, kind, detail in first if kind == "ws<" and detail == "'2'"]
    assert len(pings) >= 2
    assert pings[1] - pings[0] == pytest.approx(5.0)
    assert sum(1 for kind, detail in kinds if kind == "server" and detail == "started") == 2


async def test_backoff_schedule_is_exact_to_the_injected_rng(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    # No server at all: every attempt fails at once, so attempt times are the delays.
    client = rig.client(ClientOptions(backoff=BACKOFF, max_attempts=6), seed=99)
    handshakes: list[float] = []
    t0 = trio.current_time()
    client.on_status(
        lambda s: handshakes.append(trio.current_time() - t0)
        if s.state in (ClientState.CONNECTING, ClientState.RECONNECTING) and s.retry_in is None
        else None
    )
    with trio.fail_after(300), pytest.raises(Exception, match="gave up after 6 attempts"):
        await client.run()
    expected = Backoff(BACKOFF, random.Random(99))
    t, times = 0.0, [0.0]
    for _ in range(6):
        t += expected.next()
        times.append(t)
    assert handshakes == pytest.approx(times)
    assert client.status.state is ClientState.CLOSED


async def test_offline_buffer_keeps_newest_and_flushes_in_order(
    rig: Rig, autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    server = rig.make_server
    seen: list[int] = []
    done = trio.Event()

    def make():  # type: ignore[no-untyped-def]
        s = server()

        @s.on("reading")
        async def reading(socket, n):
            seen.append(n)
            if n == 9:
                done.set()

        return s

    rig.make_server = make
    client = rig.client(ClientOptions(backoff=BACKOFF, buffer_limit=5))
    with trio.fail_after(60):
        await nursery.start(client.run)
        for n in range(10):  # emitted while the admin API is down
            client.emit("reading", n)
        assert client.buffer_dropped == 5
        await trio.sleep(4)
        await rig.start_server()
        await done.wait()
    assert seen == [5, 6, 7, 8, 9]
    await client.aclose()


async def test_recovers_sid_rooms_and_missed_events_after_a_network_cut(
    rig: Rig, autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    server = await rig.start_server()
    client = rig.client(ClientOptions(transports=("websocket",), backoff=BACKOFF))
    got: list[object] = []
    third = trio.Event()

    @client.on("feed")
    async def on_feed(item: object) -> None:
        got.append(item)
        if item == 3:
            third.set()

    with trio.fail_after(60):
        await nursery.start(client.run)
        await client.wait_connected()
        await client.call("subscribe", "monitoring")
        sid = client.sid
        server.emit("feed", 0, to="monitoring")
        rig.network.sever()  # the WebSocket dies; the client does not know why
        await client.wait_status(lambda s: s.state is ClientState.RECONNECTING)
        for n in (1, 2, 3):  # broadcast while the client is away
            server.emit("feed", n, to="monitoring")
        server.emit("feed", "not for you", to="elsewhere")
        await client.wait_connected()
        await third.wait()
    assert client.status.recovered
    assert client.sid == sid
    assert got == [0, 1, 2, 3]
    socket = server.namespaces["/"].sockets[sid]
    assert "monitoring" in socket.rooms
    await client.aclose()


@pytest.mark.parametrize("seed", range(20))
async def test_session_survives_every_interleaving(
    seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    # Trio runs same-instant tasks in a shuffled order; each seed is another
    # legal interleaving of the upgrade, heartbeats, restart and reconnection.
    # (This is how the upgrade races in the client and server were found.)
    trace = await run_scripted(seed)
    assert ("server", "started") in [(kind, detail) for _, kind, detail in trace]
