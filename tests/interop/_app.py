"""The server side of the interop scenarios, served by Hypercorn on loopback.

:class:`InteropApp` is one ``SocketIOServer`` with the handlers every peer's
scenario script relies on, plus a record of what the server observed so the
tests can check both ends.  :func:`start_server` serves it on a real socket
(port 0, or a given port to "restart" a server where the previous one was),
either the production way or through plain Hypercorn (see ``SERVINGS``).

Event handlers (all namespaces "/" unless said otherwise):

* ``whoami()`` → ack ``{sid, user, nsp, query, transport, recovered, rooms}``
* ``ping-event(*args)`` → the server emits ``pong-event(*args)`` back (no ack)
* ``sum(*numbers)`` → ack ``sum``; ``multi()`` → ack ``"a", 1, {"b": None}``;
  ``void()`` → ack with no arguments; ``echo(*args)`` → ack ``*args``
* ``call-me(event, *args)`` → ``await socket.call(event, *args)``, ack its result
  (a call the client leaves unanswered by disconnecting is recorded in ``failed_calls``)
* ``make-bytes()`` → emits ``bytes(BLOB, {"inner": b"\\x00\\xff", "list": [b"", b"abc"]})``
* ``subscribe(room)`` / ``unsubscribe(room)`` → ack ``True``
* ``broadcast({event, args, to, exclude})`` → ``server.emit(...)``, ack the count
* ``kick-me()`` → ``await socket.disconnect()``
* ``record(i)`` / ``recorded()`` → remember numbers in order / ack them
* ``burst(n)`` → emits ``seq(0)`` … ``seq(n - 1)``, ack ``n``

Auth: ``{"token": TOKEN, "user": name}``; anything else is refused with
``ConnectionRefused("bad token", {"reason": "invalid token", "got": token})``.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.trio import serve

from essen.errors import ConnectionRefused, DisconnectedError
from essen.realtime import ServerOptions, Socket, SocketIOMount, SocketIOServer
from essen.web.serving import hypercorn_config, serve_app

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

TOKEN = "s3cret"
PATHS = ("/socket.io/", "/api/socket.io/")
ALLOWED_ORIGIN = "https://dashboard.example"
#: What ``make-bytes`` sends: every byte value, twice.
BLOB = bytes(range(256)) * 2


@dataclass
class Observed:
    """What the server saw, for the tests to compare with what the peer saw."""

    auths: list[dict[str, Any] | None] = field(default_factory=list)
    refused: list[Any] = field(default_factory=list)
    connects: list[tuple[str, str, bool]] = field(default_factory=list)  # sid, user, recovered
    disconnects: list[tuple[str, str]] = field(default_factory=list)  # sid, reason
    events: list[tuple[str, str, list[Any]]] = field(default_factory=list)  # user, event, args
    calls: list[tuple[str, str, list[Any], list[Any]]] = field(default_factory=list)
    failed_calls: list[tuple[str, str, str]] = field(default_factory=list)  # user, event, error


class InteropApp:
    def __init__(self, options: ServerOptions | None = None) -> None:
        self.server = SocketIOServer(options or ServerOptions(cors_origins=(ALLOWED_ORIGIN,)))
        self.seen = Observed()
        self.records: dict[str, list[Any]] = {}
        self._changed = trio.Event()
        self._register()

    # -- waiting on the server's own observations ----------------------------

    async def wait_for(self, predicate: Callable[[], Any]) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked whenever the app records something).

        Bound it with ``trio.fail_after``.
        """
        while not (result := predicate()):
            await self._changed.wait()
        return result

    def _note(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def socket(self, sid: str, namespace: str = "/") -> Socket | None:
        return self.server.namespaces[namespace].sockets.get(sid)

    # -- handlers ---------------------------------------------------------------

    def _register(self) -> None:
        server, seen = self.server, self.seen

        async def authenticate(socket: Socket, auth: dict[str, Any] | None) -> None:
            seen.auths.append(auth)
            self._note()
            token = auth.get("token") if isinstance(auth, dict) else None
            if token != TOKEN:
                seen.refused.append(token)
                raise ConnectionRefused("bad token", {"reason": "invalid token", "got": token})
            assert auth is not None
            socket.data["user"] = auth.get("user", "?")

        async def connected(socket: Socket) -> None:
            seen.connects.append((socket.sid, socket.data["user"], socket.recovered))
            self._note()

        async def disconnected(socket: Socket, reason: str) -> None:
            seen.disconnects.append((socket.sid, reason))
            self._note()

        for name in ("/", "/admin"):
            namespace = server.of(name)
            namespace.use(authenticate)
            namespace.on_connect(connected)
            namespace.on_disconnect(disconnected)

            @namespace.on("whoami")
            async def whoami(socket: Socket) -> dict[str, Any]:
                return {
                    "sid": socket.sid,
                    "user": socket.data["user"],
                    "nsp": socket.namespace.name,
                    "query": {k: v for k, v in socket.handshake.query.items() if k != "t"},
                    "transport": str(socket.handshake.transport),
                    "recovered": socket.recovered,
                    "rooms": sorted(socket.rooms - {socket.sid}),
                }

        def record(socket: Socket, event: str, args: list[Any]) -> None:
            seen.events.append((socket.data["user"], event, args))
            self._note()

        @server.on("ping-event")
        async def ping_event(socket: Socket, *args: Any) -> None:
            record(socket, "ping-event", list(args))
            socket.emit("pong-event", *args)

        @server.on("sum")
        async def sum_(socket: Socket, *numbers: float) -> float:
            record(socket, "sum", list(numbers))
            return sum(numbers)

        @server.on("multi")
        async def multi(socket: Socket) -> tuple[Any, ...]:
            return ("a", 1, {"b": None})

        @server.on("void")
        async def void(socket: Socket) -> None:
            record(socket, "void", [])

        @server.on("echo")
        async def echo(socket: Socket, *args: Any) -> tuple[Any, ...]:
            record(socket, "echo", list(args))
            return args

        @server.on("call-me")
        async def call_me(socket: Socket, event: str, *args: Any) -> tuple[Any, ...]:
            try:
                with trio.fail_after(5):
                    result = await socket.call(event, *args)
            except DisconnectedError as exc:
                seen.failed_calls.append((socket.data["user"], event, str(exc)))
                self._note()
                return ()
            seen.calls.append((socket.data["user"], event, list(args), result))
            self._note()
            return tuple(result)

        @server.on("make-bytes")
        async def make_bytes(socket: Socket) -> bool:
            socket.emit("bytes", BLOB, {"inner": b"\x00\xff", "list": [b"", b"abc"]})
            return True

        @server.on("subscribe")
        async def subscribe(socket: Socket, room: str) -> bool:
            socket.join(room)
            return True

        @server.on("unsubscribe")
        async def unsubscribe(socket: Socket, room: str) -> bool:
            socket.leave(room)
            return True

        @server.on("broadcast")
        async def broadcast(socket: Socket, spec: dict[str, Any]) -> int:
            return server.emit(
                spec["event"],
                *spec.get("args", ()),
                to=spec.get("to"),
                exclude=spec.get("exclude") or (),
            )

        @server.on("kick-me")
        async def kick_me(socket: Socket) -> None:
            await socket.disconnect()

        @server.on("record")
        async def record_number(socket: Socket, number: Any) -> None:
            self.records.setdefault(socket.sid, []).append(number)

        @server.on("recorded")
        async def recorded(socket: Socket) -> list[Any]:
            return self.records.get(socket.sid, [])

        @server.on("burst")
        async def burst(socket: Socket, count: int) -> int:
            for i in range(count):
                socket.emit("seq", i)
            return count


#: How the server is put on the network: "fastpath" is production
#: (:func:`essen.web.serving.serve_app`: Socket.IO WebSockets on the raw Trio
#: stream, the rest through Hypercorn), "asgi" is plain Hypercorn with the mount
#: as its ASGI app (WebSockets through ASGI too).
SERVINGS = ("fastpath", "asgi")


class RunningServer:
    """One served instance; :meth:`stop` is a server crash/restart (connections die)."""

    def __init__(self, app: InteropApp, port: int, serving: str) -> None:
        if serving not in SERVINGS:
            raise ValueError(serving)
        self.app = app
        self.port = port
        self.serving = serving
        self._scope = trio.CancelScope()
        self._stopped = trio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        self._scope.cancel()
        await self._stopped.wait()

    async def _run(self, *, task_status: trio.TaskStatus[RunningServer]) -> None:
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    await nursery.start(self.app.server.run)
                    mount = SocketIOMount(None, self.app.server, PATHS)
                    if self.serving == "fastpath":
                        binds = await nursery.start(
                            partial(serve_app, mount, "127.0.0.1", self.port, socketio=mount)
                        )
                    else:
                        config = hypercorn_config("127.0.0.1", self.port)
                        binds = await nursery.start(serve, mount, config)
                    self.port = int(binds[0].rsplit(":", 1)[1])
                    task_status.started(self)
        finally:
            self._stopped.set()


async def start_server(
    nursery: trio.Nursery, app: InteropApp, port: int = 0, serving: str = "fastpath"
) -> RunningServer:
    """Serve ``app`` on 127.0.0.1 (``port`` 0: any free port) until :meth:`RunningServer.stop`."""
    running: RunningServer = await nursery.start(RunningServer(app, port, serving)._run)
    return running


@asynccontextmanager
async def serving(app: InteropApp, how: str = "fastpath") -> AsyncIterator[RunningServer]:
    """``async with serving(app) as server``: served for the duration of the block."""
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, app, serving=how)
        try:
            yield server
        finally:
            await server.stop()
