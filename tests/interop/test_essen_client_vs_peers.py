"""ESSEN's Socket.IO client against the reference servers.

Each test starts a real server in a subprocess on loopback and drives ESSEN's
:class:`SocketIOClient` against it over real TCP:

* ``psio``: python-socketio's ``AsyncServer`` in ASGI mode on uvicorn
  (``peers/psio_uvicorn_server.py``);
* ``node``: the official Node ``socket.io`` v4 server (``node/server_peer.mjs``).

Both servers implement the same small contract (see their docstrings): auth
with ``{"token": "good"}``, ``echo`` acks its arguments, the server calls the
client's ``hello`` on connect and exposes the answer through ``last_hello``,
``bin_roundtrip`` sends binary to the client and back, rooms through
``subscribe``/``publish``, ``kick`` for a server-initiated disconnect, and
``record``/``records`` to see what reached the server, in order.

Nothing sleeps to wait: servers are ready when they print ``READY <port>``,
the client's progress is observed through ``wait_status``, and every wait is
bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import contextlib
import gc
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from essen.errors import ConnectionRefused, DisconnectedError, TransportError
from essen.realtime.backoff import BackoffPolicy
from essen.realtime.client import ClientOptions, ClientState, ClientStatus, SocketIOClient
from essen.realtime.transports import real_network

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from essen.realtime.transports import NetworkTransports

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
NODE_DIR = HERE / "node"
NODE_SERVER = NODE_DIR / "server_peer.mjs"
PSIO_SERVER = HERE / "peers" / "psio_uvicorn_server.py"
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable

GOOD = {"token": "good"}
KINDS = ("psio", "node")
TRANSPORTS = {
    "upgrade": ("polling", "websocket"),
    "websocket": ("websocket",),
    "polling": ("polling",),
}
FAST = BackoffPolicy(initial=0.2, factor=2.0, maximum=0.5, jitter=0.0)
HELLO = {"greeting": "hi", "n": 41}
#: Clients that only ask the server what it saw: polling keeps them clear of the
#: WebSocket writer bug that test_websocket_sends_frames_queued_while_it_was_sending pins.
CHECKER = ("polling",)


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """Collect garbage after each test, so that a socket a test leaked is
    reported (ResourceWarning, an error here) against that test, not a later one."""
    yield
    gc.collect()


def _node_available() -> bool:
    return shutil.which("node") is not None and (NODE_DIR / "node_modules" / "socket.io").is_dir()


# -- peer servers -----------------------------------------------------------------


@dataclass
class PeerServer:
    kind: str
    process: trio.Process
    port: int = 0
    stderr: bytearray = field(default_factory=bytearray)
    _stdout: bytearray = field(default_factory=bytearray)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def read_ready(self) -> int:
        stream = self.process.stdout
        assert stream is not None
        while b"\n" not in self._stdout:
            chunk = await stream.receive_some(4096)
            if not chunk:
                await self.process.wait()
                raise AssertionError(
                    f"{self.kind} server exited ({self.process.returncode}) before READY:\n"
                    + self.stderr.decode(errors="replace")
                )
            self._stdout += chunk
        line = bytes(self._stdout).split(b"\n", 1)[0].decode().strip()
        assert line.startswith("READY"), f"{self.kind} server said {line!r}"
        return int(line.split()[1])

    async def kill(self) -> None:
        """SIGKILL: the server vanishes without a goodbye, as a crash would."""
        self.process.kill()
        with trio.fail_after(5):
            await self.process.wait()


def _command(kind: str, port: int, path: str, recovery: bool) -> list[str]:
    if kind == "psio":
        assert not recovery, "python-socketio has no connection state recovery"
        return [PYTHON, str(PSIO_SERVER), "--port", str(port), "--path", path]
    command = ["node", str(NODE_SERVER), "--port", str(port), "--path", path]
    if recovery:
        command.append("--recovery")
    return command


async def _kill(process: trio.Process) -> None:
    # The peers keep nothing worth a graceful shutdown (uvicorn would wait for
    # open long-polls), and a kill never leaves a stray process behind.
    process.kill()
    await process.wait()


@contextlib.asynccontextmanager
async def serve(
    kind: str, *, port: int = 0, path: str = "/socket.io/", recovery: bool = False
) -> AsyncIterator[PeerServer]:
    """Run a peer server until the block ends; READY (with its port) before yielding."""
    if kind == "node" and not _node_available():
        pytest.skip("node, or tests/interop/node/node_modules (npm ci), is missing")
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                _command(kind, port, path, recovery),
                cwd=str(HERE),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                check=False,
                deliver_cancel=_kill,
            )
        )
        server = PeerServer(kind, process)

        async def drain(stream: trio.abc.ReceiveStream | None, sink: bytearray) -> None:
            assert stream is not None
            while chunk := await stream.receive_some(65536):
                sink += chunk

        nursery.start_soon(drain, process.stderr, server.stderr)
        try:
            with trio.fail_after(20):
                server.port = await server.read_ready()
            nursery.start_soon(drain, process.stdout, server._stdout)
            yield server
        finally:
            if server.stderr.strip():  # shown by pytest when the test fails
                print(f"--- {kind} server stderr ---\n{server.stderr.decode(errors='replace')}")
            nursery.cancel_scope.cancel()


# -- the client under test ------------------------------------------------------


@dataclass
class Probe:
    """An ESSEN client with the handlers the contract needs, and what it saw."""

    client: SocketIOClient
    statuses: list[ClientStatus] = field(default_factory=list)
    updates: list[Any] = field(default_factory=list)
    hellos: list[Any] = field(default_factory=list)
    _updated: trio.lowlevel.ParkingLot = field(default_factory=trio.lowlevel.ParkingLot)

    async def wait_updates(self, count: int) -> list[Any]:
        while len(self.updates) < count:
            await self._updated.park()
        return self.updates

    async def call(self, event: str, *args: Any) -> list[Any]:
        with trio.fail_after(5):
            return await self.client.call(event, *args)

    async def wait(self, predicate: Any) -> ClientStatus:
        with trio.fail_after(15):
            return await self.client.wait_status(predicate)


def make_probe(server: PeerServer, **options: Any) -> Probe:
    options.setdefault("auth", GOOD)
    options.setdefault("backoff", FAST)
    client = SocketIOClient(server.url, ClientOptions(**options))
    probe = Probe(client)
    client.on_status(probe.statuses.append)

    @client.on("hello")
    async def hello(payload: Any) -> Any:
        probe.hellos.append(payload)
        return {"answer": payload["n"] + 1, "from": "essen"}

    @client.on("bin")
    async def binary(data: Any) -> Any:
        return {"got": data, "reversed": data["blob"][::-1]}

    @client.on("metrics:update")
    async def update(payload: Any) -> None:
        probe.updates.append(payload)
        probe._updated.unpark_all()

    return probe


@contextlib.asynccontextmanager
async def running(*probes: Probe) -> AsyncIterator[Probe]:
    """Run the clients for the block, connected at its start, closed (all at
    once) at its end; yields the first."""
    async with trio.open_nursery() as nursery:
        for probe in probes:
            await nursery.start(probe.client.run)
        try:
            with trio.fail_after(15):
                for probe in probes:
                    await probe.client.wait_connected()
            yield probes[0]
        finally:
            with trio.fail_after(10):
                async with trio.open_nursery() as closer:
                    for probe in probes:
                        closer.start_soon(probe.client.aclose)


def connected(status: ClientStatus) -> bool:
    return status.state is ClientState.CONNECTED


def reconnecting(status: ClientStatus) -> bool:
    return status.state is ClientState.RECONNECTING


def closed(status: ClientStatus) -> bool:
    return status.state is ClientState.CLOSED


async def check_session(probe: Probe) -> None:
    """Acks and binary payloads in both directions on the live connection.

    (The server's call on connect, ``hello``, has its own test.)
    """
    # client → server with an ack: every JSON type comes back as sent
    args = ["text", 42, 3.5, True, None, {"a": [1, "b", {"c": None}]}, [], "ünïcødé ✓"]
    assert await probe.call("echo", *args) == args
    assert await probe.call("echo", "one") == ["one"]
    # binary client → server (event) and server → client (ack), nested too
    blob = bytes(range(256))
    assert await probe.call("echo", blob, {"nested": [b"\x00", {"deep": b"\xff\xfe"}]}) == [
        blob,
        {"nested": [b"\x00", {"deep": b"\xff\xfe"}]},
    ]
    # binary server → client (event) and client → server (ack)
    data = {"blob": b"\x00\x01\xfe\xff", "more": [b"abc", 7]}
    assert await probe.call("bin_roundtrip", data) == [
        {"got": data, "reversed": b"\xff\xfe\x01\x00"}
    ]


# -- both servers -----------------------------------------------------------------


@pytest.mark.parametrize("transport", list(TRANSPORTS))
@pytest.mark.parametrize("kind", KINDS)
async def test_session_on_each_transport(kind: str, transport: str) -> None:
    """Connect on each transport setting, then acks and binary in both directions:
    ``call('echo', ...)`` (client → server event, server → client ack) and
    ``bin_roundtrip`` (server → client binary event, client → server binary ack).

    With polling and WebSocket allowed the client must end up upgraded; with one
    transport it must stay on it.
    """
    async with serve(kind) as server:
        probe = make_probe(server, transports=TRANSPORTS[transport])
        async with running(probe):
            if transport == "upgrade":
                await probe.wait(lambda s: s.transport == "websocket")
                assert probe.client.connected
            await check_session(probe)
            expected = "polling" if transport == "polling" else "websocket"
            assert probe.client.status.transport == expected
            assert probe.client.status.state is ClientState.CONNECTED
            states = [s.state for s in probe.statuses]
            assert states[:2] == [ClientState.CONNECTING, ClientState.CONNECTED]
            assert ClientState.RECONNECTING not in states


@pytest.mark.parametrize("transport", list(TRANSPORTS))
@pytest.mark.parametrize("kind", KINDS)
async def test_server_call_on_connect_is_answered(kind: str, transport: str) -> None:
    """The server calls the client's ``hello`` with an ack the moment the client
    is connected; the return value of our handler must reach the server as the
    ack (the server exposes what it got through ``last_hello``).

    On polling the server's CONNECT and its ``hello`` often arrive in one HTTP
    response (python-socketio does that every time); whether the handler then
    runs before the client has marked itself connected is up to Trio's
    scheduler, so six connections are checked.  (Before 505d236 the client
    dropped the ack when the handler won that race.)
    """
    async with serve(kind) as server:
        probes = [make_probe(server, transports=TRANSPORTS[transport]) for _ in range(6)]
        async with running(*probes):
            for number, probe in enumerate(probes):
                answer = await probe.call("last_hello")
                assert probe.hellos == [HELLO]
                assert answer == [{"answer": 42, "from": "essen"}], (
                    f"connection #{number}: the server never got our handler's answer"
                )


@pytest.mark.parametrize("kind", KINDS)
async def test_websocket_sends_frames_queued_while_it_was_sending(kind: str) -> None:
    """Frames queued while the WebSocket writer is busy sending earlier ones must
    go out too, not wait for some later wake-up (the next ping, 25 s away)."""
    async with serve(kind) as server:
        probe = make_probe(server, transports=("websocket",))
        async with running(probe):
            assert await probe.call("echo", "warm") == ["warm"]
            for i in range(20):
                probe.client.emit("record", i)
            # A few scheduling rounds: the writer takes the 20 frames and is in the
            # middle of sending them when the call below is queued.
            for _ in range(3):
                await trio.lowlevel.checkpoint()
            assert await probe.call("records") == [[[i] for i in range(20)]]


@pytest.mark.parametrize("transport", list(TRANSPORTS))
@pytest.mark.parametrize("kind", KINDS)
async def test_aclose_says_goodbye(kind: str, transport: str) -> None:
    """``aclose()`` sends the namespace DISCONNECT before closing, as
    socket.io-client's ``disconnect()`` does: the server sees a client disconnect,
    not a dropped transport, and closing takes no noticeable time."""
    async with serve(kind) as server:
        probe = make_probe(server, transports=TRANSPORTS[transport])
        async with running(probe):
            if transport == "upgrade":
                await probe.wait(lambda s: s.transport == "websocket")
            assert await probe.call("echo", "hi") == ["hi"]
            started = trio.current_time()
            with trio.fail_after(5):
                await probe.client.aclose()
            took = trio.current_time() - started
        assert probe.client.status.state is ClientState.CLOSED
        async with running(make_probe(server, transports=CHECKER)) as checker:
            reasons = (await checker.call("disconnects", 1))[0]
        expected = "client namespace disconnect" if kind == "node" else "client disconnect"
        assert reasons == [expected]
        assert took < 0.5, f"aclose() took {took:.2f} s"


class _FailPollWhileClosing:
    """The real network, except that one long-poll GET fails (as a reset
    connection does) at the very moment the application calls ``aclose()``."""

    def __init__(self, inner: NetworkTransports, nursery: trio.Nursery) -> None:
        self._inner = inner
        self._nursery = nursery
        self.http = self
        self.websocket = inner.websocket
        self.client: SocketIOClient | None = None
        self.armed = False
        self.fired = False

    async def request(
        self, method: str, url: str, *, content: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        client = self.client
        if self.armed and method == "GET" and "sid=" in url and client is not None:
            self.armed = False
            self.fired = True
            self._nursery.start_soon(client.aclose)
            with trio.CancelScope(shield=True):
                # Until aclose() has run as far as it can: run() is cancelled by then.
                await trio.testing.wait_all_tasks_blocked()
            assert client.closing
            raise TransportError("GET failed: connection reset by peer (simulated)")
        return await self._inner.http.request(method, url, content=content, headers=headers)


@pytest.mark.parametrize("kind", KINDS)
async def test_aclose_while_the_connection_fails_returns_cleanly(kind: str) -> None:
    """The server goes away just as the application closes the client: ``run()``
    must still return normally after ``aclose()``, not raise an ExceptionGroup
    holding the transport error."""
    async with serve(kind) as server, real_network() as net:
        async with trio.open_nursery() as closer:
            network = _FailPollWhileClosing(net, closer)
            client = SocketIOClient(
                server.url,
                ClientOptions(auth=GOOD, transports=("polling",), backoff=FAST),
                network=network,
            )
            network.client = client
            async with trio.open_nursery() as nursery:
                await nursery.start(client.run)
                with trio.fail_after(10):
                    await client.wait_connected()
                    network.armed = True
                    # Its answer ends the pending long-poll; the next GET fails,
                    # maybe before the answer came (then the call fails: fine).
                    with contextlib.suppress(DisconnectedError):
                        await client.call("echo", "x")
                    await client.wait_status(closed)
        assert network.fired
        assert client.status.state is ClientState.CLOSED


@pytest.mark.parametrize("kind", KINDS)
async def test_auth_refused_raises_with_the_servers_message(kind: str) -> None:
    """A refused CONNECT ends ``run()`` with ConnectionRefused carrying the message
    (and, from Node, the error's ``data``); a good token on the same server works."""
    async with serve(kind) as server:
        for auth, transports in (
            ({"token": "bad"}, ("polling", "websocket")),
            (None, ("websocket",)),
        ):
            probe = make_probe(server, auth=auth, transports=transports, retry_refused=False)
            with trio.fail_after(10), pytest.raises(ConnectionRefused) as refused:
                await probe.client.run()
            assert refused.value.message == "bad token"
            if kind == "node":
                assert refused.value.data == {"reason": "token must be good"}
            assert probe.client.status.state is ClientState.CLOSED
            assert probe.client.status.reason == "refused: bad token"
            assert ClientState.CONNECTED not in [s.state for s in probe.statuses]
        async with running(make_probe(server, transports=CHECKER)) as probe:
            assert await probe.call("stats") == [
                {"connects": 1, "refused": 2, **({"recovered": 0} if kind == "node" else {})}
            ]


@pytest.mark.parametrize("kind", KINDS)
async def test_rooms_broadcast_reaches_only_members(kind: str) -> None:
    """``publish`` to a room reaches the clients in it, in order, and nobody else."""
    async with serve(kind) as server:
        alpha = make_probe(server)
        beta = make_probe(server, transports=("websocket",))
        async with running(alpha, beta):
            assert await alpha.call("subscribe", "alpha") == [True]
            assert await beta.call("subscribe", "beta") == [True]
            # Interleaved: a leak into the wrong room would show up between the
            # events that room is meant to get (each connection keeps order).
            for probe, room, payload in (
                (alpha, "alpha", {"v": "a1"}),
                (beta, "beta", {"v": "b1"}),
                (alpha, "alpha", {"v": "a2", "bin": b"\x01\x02"}),
                (beta, "beta", {"v": "b2"}),
                (beta, "alpha", {"v": "a3"}),  # a non-member may publish to the room
            ):
                assert await probe.call("publish", room, payload) == [True]
            with trio.fail_after(10):
                await alpha.wait_updates(3)
                await beta.wait_updates(2)
            assert alpha.updates == [{"v": "a1"}, {"v": "a2", "bin": b"\x01\x02"}, {"v": "a3"}]
            assert beta.updates == [{"v": "b1"}, {"v": "b2"}]


@pytest.mark.parametrize(
    ("kind", "transport", "close"),
    [
        ("psio", "websocket", False),
        ("psio", "polling", False),
        ("node", "websocket", False),
        ("node", "polling", False),
        ("node", "websocket", True),
    ],
)
async def test_server_disconnect_closes_without_reconnecting(
    kind: str, transport: str, close: bool
) -> None:
    """A server-initiated DISCONNECT ends the client: CLOSED with reason
    'io server disconnect', ``run()`` returns, and no new connection is made."""
    async with serve(kind) as server:
        probe = make_probe(server, transports=TRANSPORTS[transport])
        run_returned = trio.Event()

        async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            await probe.client.run(task_status=task_status)
            run_returned.set()

        async with trio.open_nursery() as nursery:
            await nursery.start(run)
            with trio.fail_after(15):
                await probe.client.wait_connected()
            assert await probe.call("echo", "still here") == ["still here"]
            seen = len(probe.statuses)
            if close:
                probe.client.emit("kick", True)  # Node: socket.disconnect(true)
            else:
                probe.client.emit("kick")
            with trio.fail_after(10):
                await run_returned.wait()
        status = probe.client.status
        assert status.state is ClientState.CLOSED
        assert status.reason == "io server disconnect"
        assert [s.state for s in probe.statuses[seen:]] == [ClientState.CLOSED] * len(
            probe.statuses[seen:]
        )
        with pytest.raises(DisconnectedError):
            await probe.client.call("echo", "gone")
        async with running(make_probe(server, transports=CHECKER)) as checker:
            stats = (await checker.call("stats"))[0]
            assert stats["connects"] == 2  # the kicked client and this checker


@pytest.mark.parametrize("transport", ["upgrade", "websocket", "polling"])
@pytest.mark.parametrize("kind", KINDS)
async def test_reconnects_with_backoff_after_restart_and_flushes_buffer(
    kind: str, transport: str
) -> None:
    """Kill the server process: the client goes RECONNECTING with the backoff
    schedule, events emitted meanwhile are buffered, and once a new server is
    up on the same port the client reconnects and delivers them in order."""
    async with serve(kind) as first:
        port = first.port
        probe = make_probe(first, transports=TRANSPORTS[transport])
        async with running(probe):
            if transport == "upgrade":
                await probe.wait(lambda s: s.transport == "websocket")
            old_sid = probe.client.sid
            probe.client.emit("record", "before the crash")  # lost with the server
            assert await probe.call("records") == [[["before the crash"]]]
            seen = len(probe.statuses)
            await first.kill()
            await probe.wait(reconnecting)
            buffered = [[i, f"item-{i}"] for i in range(5)] + [[5, {"blob": b"\x00\xff"}]]
            for args in buffered:
                probe.client.emit("record", *args)
            # Let at least two attempts fail against the closed port.
            await probe.wait(lambda s: reconnecting(s) and s.attempt >= 2 and s.retry_in)
            async with serve(first.kind, port=port) as second:
                assert second.port == port
                await probe.wait(connected)
                assert await probe.call("records") == [buffered]
                assert probe.client.sid != old_sid
                assert await probe.call("echo", "after") == ["after"]
                after = probe.statuses[seen:]
                # Close while the server is still up: a server that dies while
                # the client closes is another test's subject.
                with trio.fail_after(10):
                    await probe.client.aclose()
    states = [s.state for s in after]
    first_connected = states.index(ClientState.CONNECTED)
    assert first_connected > 0
    assert set(states[:first_connected]) == {ClientState.RECONNECTING}
    # The delays follow the policy (no jitter): 0.2, 0.4, then capped at 0.5.
    delays = [s.retry_in for s in after[:first_connected] if s.retry_in is not None]
    assert len(delays) >= 2
    expected = [min(FAST.initial * FAST.factor**i, FAST.maximum) for i in range(len(delays))]
    assert delays == pytest.approx(expected)
    assert not after[first_connected].recovered


# -- Node only ------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["upgrade", "websocket"])
async def test_node_custom_path(transport: str) -> None:
    """A server on /api/socket.io/ is reached with ``path="/api/socket.io/"`` for
    polling and WebSocket alike; the default path finds nothing there."""
    async with serve("node", path="/api/socket.io/") as server:
        probe = make_probe(server, path="/api/socket.io/", transports=TRANSPORTS[transport])
        async with running(probe):
            if transport == "upgrade":
                await probe.wait(lambda s: s.transport == "websocket")
            await check_session(probe)
        if transport == "upgrade":
            lost = make_probe(server, max_attempts=0)
            with trio.fail_after(10), pytest.raises(DisconnectedError, match="HTTP 404"):
                await lost.client.run()


@pytest.mark.parametrize("transport", ["upgrade", "websocket", "polling"])
async def test_node_connection_state_recovery(transport: str) -> None:
    """socket.io's connection state recovery: after the server drops the transport
    the client comes back with ``status.recovered``, the same sid, its rooms, and
    the broadcasts it missed while away, in order."""
    async with serve("node", recovery=True) as server:
        probe = make_probe(server, transports=TRANSPORTS[transport], backoff=FAST)
        async with running(probe):
            if transport == "upgrade":
                await probe.wait(lambda s: s.transport == "websocket")
            assert not probe.client.status.recovered
            sid = probe.client.sid
            assert await probe.call("subscribe", "live") == [True]
            # One broadcast received before the drop: it carries the offset to resume from.
            assert await probe.call("publish", "live", {"seq": "before"}) == [True]
            with trio.fail_after(10):
                await probe.wait_updates(1)
            seen = len(probe.statuses)
            # The server closes the Engine.IO connection, then broadcasts 3 events.
            probe.client.emit("drop_me", "live", 3)
            await probe.wait(reconnecting)
            status = await probe.wait(connected)
            assert status.recovered, probe.statuses[seen:]
            assert probe.client.sid == sid
            with trio.fail_after(10):
                await probe.wait_updates(4)
            assert probe.updates == [
                {"seq": "before"},
                {"seq": 0, "missed": True},
                {"seq": 1, "missed": True},
                {"seq": 2, "missed": True},
            ]
            whoami = (await probe.call("whoami"))[0]
            assert whoami["sid"] == sid
            assert whoami["recovered"] is True
            assert "live" in whoami["rooms"]
            # Still in the room, live again.
            assert await probe.call("publish", "live", {"seq": "after"}) == [True]
            with trio.fail_after(10):
                await probe.wait_updates(5)
            assert probe.updates[-1] == {"seq": "after"}
            stats = (await probe.call("stats"))[0]
            assert stats == {"connects": 2, "refused": 0, "recovered": 1}


async def test_node_recovery_needs_an_offset() -> None:
    """Without a broadcast received there is no offset to resume from, and
    socket.io then refuses to recover (it requires both pid and offset): the
    client gets a fresh session (new sid, no rooms) and says so."""
    async with serve("node", recovery=True) as server:
        probe = make_probe(server, transports=("websocket",))
        async with running(probe):
            sid = probe.client.sid
            assert await probe.call("subscribe", "live") == [True]
            probe.client.emit("drop_me", "live", 0)
            await probe.wait(reconnecting)
            status = await probe.wait(connected)
            assert not status.recovered
            assert probe.client.sid != sid
            whoami = (await probe.call("whoami"))[0]
            assert whoami["recovered"] is False
            assert "live" not in whoami["rooms"]
