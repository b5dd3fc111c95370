"""The official socket.io-client v4 (Node) against our server, over real loopback sockets.

Each test serves :class:`~._app.InteropApp` with Hypercorn and runs
``node/client_scenarios.mjs``, which checks what the client observes and
prints it as JSON lines; the test then checks what the server observed.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio

from essen.realtime import EngineConfig, RecoveryConfig, ServerOptions

from ._app import ALLOWED_ORIGIN, TOKEN, InteropApp, start_server
from ._peer import Peer, check_results, run_peer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.interop

NODE_DIR = Path(__file__).parent / "node"

# (serving, mode, path): both transport modes and the second mount path, on the
# production fast path; the WebSocket modes also through plain Hypercorn ASGI.
# ("polling" never touches the WebSocket code, which is where the two differ.)
MODES = [
    pytest.param("fastpath", "upgrade", "/socket.io/", id="fastpath-upgrade"),
    pytest.param("fastpath", "websocket", "/api/socket.io/", id="fastpath-websocket-api-path"),
    pytest.param("fastpath", "upgrade", "/api/socket.io/", id="fastpath-upgrade-api-path"),
    pytest.param("fastpath", "websocket", "/socket.io/", id="fastpath-websocket"),
    pytest.param("fastpath", "polling", "/socket.io/", id="fastpath-polling"),
    pytest.param("asgi", "upgrade", "/socket.io/", id="asgi-upgrade"),
    pytest.param("asgi", "websocket", "/api/socket.io/", id="asgi-websocket-api-path"),
]
# polling -> upgrade and websocket-only, each way of serving.
TWO_MODES = [MODES[0], MODES[1], MODES[5], MODES[6]]

# One Node process runs all of these in order (server_disconnect first, so that a
# wrongful reconnection of the kicked client has the whole run to show up).
BATCH = (
    "server_disconnect",
    "client_disconnect",
    "auth_ok",
    "auth_refused",
    "namespaces",
    "events",
    "acks",
    "binary",
    "rooms",
    "ordering",
    "cors",
)


@asynccontextmanager
async def node_client(
    node: str, url: str, path: str, mode: str, *scenarios: str
) -> AsyncIterator[Peer]:
    command = [node, "client_scenarios.mjs", url, path, mode, *scenarios]
    env = {**os.environ, "INTEROP_TOKEN": TOKEN}
    async with run_peer(command, cwd=NODE_DIR, name=f"node[{mode} {path}]", env=env) as peer:
        yield peer


def server_events(app: InteropApp, user: str, event: str) -> list[list[Any]]:
    return [args for who, name, args in app.seen.events if who == user and name == event]


@pytest.mark.parametrize(("how", "mode", "path"), MODES)
async def test_client_scenarios(node, how, mode, path, subtests):
    """Auth, namespaces, events, acks, binary, rooms, ordering, kick and CORS, one Node run."""
    app = InteropApp()
    with trio.fail_after(45):
        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, app, serving=how)
            async with node_client(node, server.url, path, mode, *BATCH) as peer:
                await peer.finish()
            await server.stop()
    seen = app.seen

    with subtests.test("node exit status"):
        check_results(peer, BATCH)

    with subtests.test("auth_ok"):
        result = peer.result_of("auth_ok")
        assert {"token": TOKEN, "user": "auth_ok"} in seen.auths
        assert (result["sid"], "auth_ok", False) in seen.connects
        if mode == "upgrade":
            assert (result["firstTransport"], result["transport"]) == ("polling", "websocket")

    with subtests.test("auth_refused"):
        # Refused by the middleware with the client's token, and with no auth at all.
        assert "wrong" in seen.refused
        assert None in seen.refused
        assert not any(user == "intruder" for _, user, _ in seen.connects)

    with subtests.test("namespaces"):
        result = peer.result_of("namespaces")
        assert result["admin"]["nsp"] == "/admin"
        assert (result["admin"]["sid"], "ns-admin", False) in seen.connects

    with subtests.test("events"):
        payloads = peer.result_of("events")["payloads"]
        assert server_events(app, "events", "ping-event") == payloads

    with subtests.test("acks"):
        assert server_events(app, "acks", "sum") == [[1, 2, 3.5]]
        assert [call[1:] for call in seen.calls if call[0] == "acks"] == [
            ("ask", [21, "why"], [{"doubled": 42, "y": "why"}]),
            ("ask-multi", [], ["one", 2, [3]]),
            ("ask-none", [], []),
        ]

    with subtests.test("binary"):
        big = bytes(i % 251 for i in range(200_000))
        assert server_events(app, "binary", "echo") == [
            [
                bytes([0, 1, 2, 253, 254, 255]),
                {"nested": "héllo".encode(), "list": [b"", 1, "x"]},
                big,
            ]
        ]
        assert [call[1:] for call in seen.calls if call[0] == "binary"] == [
            ("ask-bin", [b"\x01\x02\x03\x04"], [b"\x04\x03\x02\x01", {"len": 4}])
        ]

    with subtests.test("server_disconnect"):
        sid = peer.result_of("server_disconnect")["sid"]
        assert (sid, "server namespace disconnect") in seen.disconnects
        # It connected once and never came back by itself.
        assert [c for c in seen.connects if c[1] == "kicked"] == [(sid, "kicked", False)]

    with subtests.test("client_disconnect"):
        result = peer.result_of("client_disconnect")
        assert (result["adminSid"], "client namespace disconnect") in seen.disconnects
        assert (result["mainSid"], "client namespace disconnect") in seen.disconnects

    with subtests.test("cors"):
        # The foreign-origin WebSocket was refused before any Engine.IO session existed.
        assert not any(isinstance(a, dict) and a.get("user") == "cors-evil" for a in seen.auths)
        assert any(user == "cors-good" for _, user, _ in seen.connects)
        assert ALLOWED_ORIGIN in app.server.options.cors_origins


async def disconnect_reason(app: InteropApp, sid: str, within: float) -> str | None:
    """The reason the server recorded for ``sid``'s disconnection, waiting up to ``within`` s."""

    def reason() -> str | None:
        return next((r for s, r in app.seen.disconnects if s == sid), None)

    with trio.move_on_after(within):
        await app.wait_for(reason)
    return reason()


@pytest.mark.parametrize(("how", "mode", "path"), [MODES[0], MODES[1]])
async def test_disconnect_while_a_handler_awaits_a_call(node, how, mode, path, subtests):
    """A client leaves a namespace while a server handler awaits ``socket.call`` on it
    (which the ``essen.realtime.server`` docstring says a handler may do).

    socket.io handles a DISCONNECT packet when it arrives, whatever handlers are
    running: the socket is gone at once as "client namespace disconnect" (not a
    recoverable reason) and the calls waiting on it fail.  Here the server's call
    times out after 5 s, so 2 s is ample for the DISCONNECT itself."""
    app = InteropApp()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, app, serving=how)
            async with node_client(node, server.url, path, mode, "leave_during_call") as peer:
                alone = (await peer.expect("left-alone"))["sid"]
                alone_reason = await disconnect_reason(app, alone, within=2)
                saved = app.server.statistics()["recovery"]["saved_sessions"]
                await peer.send("next")
                shared = (await peer.expect("left-shared"))["sid"]
                shared_reason = await disconnect_reason(app, shared, within=2)
                failed = list(app.seen.failed_calls)
                await peer.send("done")
                await peer.finish()
            await server.stop()
    check_results(peer, ["leave_during_call"])

    with subtests.test("its only namespace"):
        assert alone_reason == "client namespace disconnect", (
            "the DISCONNECT waited behind the handler and the connection closed first"
        )
        assert saved == 0, "a session the client left on purpose was kept for recovery"

    with subtests.test("one namespace of a shared connection"):
        assert shared_reason == "client namespace disconnect", (
            f"server's record after 2 s: {shared_reason!r} (the DISCONNECT waits behind "
            "the handler until its call times out)"
        )
        assert ("leave-shared", "ask-never", "disconnected: client namespace disconnect") in failed


@pytest.mark.parametrize(("how", "mode", "path"), TWO_MODES)
async def test_reconnect_after_server_restart(node, how, mode, path):
    """The server dies and a new one comes up on the same port: the client comes back and
    authenticates again with the new server (which cannot recover anything)."""
    first, second = InteropApp(), InteropApp()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, first, serving=how)
            port = server.port
            async with node_client(node, server.url, path, mode, "restart") as peer:
                connected = await peer.expect("connected")
                assert (connected["sid"], "restart", False) in first.seen.connects
                await server.stop()
                dropped = await peer.expect("disconnected")
                assert dropped["reason"] in ("transport close", "transport error")
                server = await start_server(nursery, second, port, serving=how)
                assert server.port == port
                back = await peer.expect("reconnected")
                await peer.finish()
            await server.stop()
    check_results(peer, ["restart"])
    assert back["recovered"] is False
    assert back["sid"] != connected["sid"]
    # The new server ran the auth middleware on the reconnection, with the same credentials.
    assert [a for a in second.seen.auths if a and a.get("user") == "restart"] == [
        {"token": TOKEN, "user": "restart"}
    ]
    assert [c for c in second.seen.connects if c[1] == "restart"] == [
        (back["sid"], "restart", False)
    ]


@pytest.mark.parametrize(("how", "mode", "path"), TWO_MODES)
async def test_heartbeat_and_ping_timeout(node, how, mode, path):
    """The client answers the server's pings (Engine.IO v4: server pings, client pongs) and
    stays connected; once it stops answering, the server closes it for "ping timeout", and
    the client, reconnecting, recovers its session (a ping timeout is recoverable)."""
    options = ServerOptions(
        cors_origins=(ALLOWED_ORIGIN,),
        engine=EngineConfig(ping_interval=0.2, ping_timeout=0.4),
    )
    app = InteropApp(options)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, app, serving=how)
            async with node_client(node, server.url, path, mode, "heartbeat") as peer:
                await peer.finish()
            await server.stop()
    check_results(peer, ["heartbeat"])
    sid = peer.result_of("heartbeat")["sid"]
    assert next(d for d in app.seen.disconnects if d[0] == sid) == (sid, "ping timeout")
    assert [c for c in app.seen.connects if c[1] == "heartbeat"] == [
        (sid, "heartbeat", False),
        (sid, "heartbeat", True),
    ]


# -- connection state recovery -------------------------------------------------------


def broadcast_while_away(app: InteropApp, sid: str) -> list[list[Any]]:
    """Broadcast what a client in room "news" misses; returns what it must get back."""
    server = app.server
    server.emit("news", "m1", to="news")
    server.emit("news", b"\x00\x01bin", to="news")
    server.emit("news", {"k": [1, 2]}, to="news")
    server.emit("other", "not for you", to="elsewhere")
    server.emit("everyone", "not for news members", exclude="news")
    server.emit("private", "for you only", to=sid)
    server.emit("everyone", "all")
    return [
        ["news", "m1"],
        ["news", {"$bytes": b"\x00\x01bin".hex()}],
        ["news", {"k": [1, 2]}],
        ["private", "for you only"],
        ["everyone", "all"],
    ]


async def lose_connection(app: InteropApp, peer: Peer, sid: str) -> str:
    """Have the client close its transport; returns the server's disconnect reason."""
    await peer.send("drop")
    dropped = await peer.expect("dropped")
    assert dropped["reason"] == "transport close"

    def reason() -> str | None:
        return next((r for s, r in app.seen.disconnects if s == sid), None)

    return await app.wait_for(reason)


async def run_recovery(
    node: str,
    mode: str,
    path: str,
    *,
    how: str = "fastpath",
    options: ServerOptions | None = None,
    direct: bool = False,
) -> tuple[InteropApp, dict[str, Any], str, list[list[Any]], str]:
    app = InteropApp(options)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, app, serving=how)
            async with node_client(node, server.url, path, mode, "recovery") as peer:
                ready = await peer.expect("ready")
                sid = ready["sid"]
                if direct:
                    # An event sent to this socket alone, whose last argument is a string.
                    socket = app.socket(sid)
                    assert socket is not None
                    socket.emit("note", "hello")
                    await peer.send("expect note")
                    got = await peer.expect("got")
                    # What the official server's offset would be; essen sends none.
                    assert got["offset"] != "hello", (
                        "socket.io-client took the direct emit's last argument, 'hello', "
                        "as its recovery offset: the server appended no offset to socket.emit"
                    )
                reason = await lose_connection(app, peer, sid)
                expected = broadcast_while_away(app, sid)
                await peer.send("reconnect")
                back = await peer.expect("reconnected")
                await peer.send("done")
                await peer.finish()
            await server.stop()
    check_results(peer, ["recovery"])
    return app, back, sid, expected, reason


def without_offsets(events: list[list[Any]]) -> list[list[Any]]:
    for event in events:
        assert isinstance(event[-1], str), f"broadcast without an offset: {event}"
    assert len({event[-1] for event in events}) == len(events), "offsets are not unique"
    return [event[:-1] for event in events]


@pytest.mark.parametrize(("how", "mode", "path"), TWO_MODES)
async def test_connection_state_recovery(node, how, mode, path):
    """A client whose transport drops comes back within the window with the same id,
    ``recovered`` true, its rooms, and every broadcast it missed, in order."""
    app, back, sid, expected, reason = await run_recovery(node, mode, path, how=how)
    assert reason == "transport close"
    assert back["recovered"] is True
    assert back["sid"] == sid
    assert back["who"]["recovered"] is True
    assert back["who"]["rooms"] == ["news"]
    assert without_offsets(back["events"]) == expected
    assert [c for c in app.seen.connects if c[1] == "recovery"][-1] == (sid, "recovery", True)
    assert app.server.counters["recovered"] == 1


@pytest.mark.parametrize(("how", "mode", "path"), [MODES[1]])
async def test_no_recovery_after_the_window(node, how, mode, path):
    """Past the recovery window the client connects afresh: new id, no rooms, nothing replayed."""
    options = ServerOptions(cors_origins=(ALLOWED_ORIGIN,), recovery=RecoveryConfig(window=0.0))
    app, back, sid, _, _ = await run_recovery(node, mode, path, how=how, options=options)
    assert back["recovered"] is False
    assert back["sid"] != sid
    assert back["who"]["rooms"] == []
    assert back["events"] == []
    assert app.server.counters["recovered"] == 0
    # The client still went through the auth middleware (token kept, pid/offset stripped).
    assert [a for a in app.seen.auths if a and a.get("user") == "recovery"][-1] == {
        "token": TOKEN,
        "user": "recovery",
    }


@pytest.mark.parametrize(("how", "mode", "path"), [MODES[1]])
async def test_recovery_after_a_direct_emit(node, how, mode, path):
    """socket.io-client takes the last string argument of *every* event as the offset
    when recovery is on, so the server must append one to ``socket.emit`` too (the
    official server does: ``emit("note", "hello")`` reaches the client as
    ``["note", "hello", <offset>]``).  A direct emit before the drop must not spoil recovery."""
    _, back, sid, expected, _ = await run_recovery(node, mode, path, how=how, direct=True)
    assert back["recovered"] is True, (
        "not recovered: the direct emit's last argument became the offset"
    )
    assert back["sid"] == sid
    assert without_offsets(back["events"]) == expected


async def test_recovery_after_polling_transport_close(node):
    """A polling client that closes its transport (engine.io-client sends a CLOSE packet,
    e.g. when its own ping timer fires) is recovered by the official server, which
    reports that disconnection as "transport close", a recoverable reason."""
    _, back, sid, expected, reason = await run_recovery(node, "polling", "/socket.io/")
    assert reason == "transport close"
    assert back["recovered"] is True
    assert back["sid"] == sid
    assert without_offsets(back["events"]) == expected
