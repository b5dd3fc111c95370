"""In-process Socket.IO fixtures: server and clients joined by the memory network."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
import trio

from essen.realtime import EngineConfig, ServerOptions, SocketIOMount, SocketIOServer
from essen.realtime._http import Receive, Scope, Send, json_error, respond
from essen.realtime.client import ClientOptions, SocketIOClient
from essen.realtime.transports import MemoryNetwork

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable


class Switchboard:
    """An ASGI app whose server can be stopped and started, like a restarting process."""

    def __init__(self) -> None:
        self.target: SocketIOMount | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.target is not None:
            await self.target(scope, receive, send)
        elif scope["type"] == "http":
            await respond(send, 503, json_error(3, "server down"))
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1011})


@dataclass
class Rig:
    """One memory network, a restartable server, and a trace of what crossed it."""

    nursery: trio.Nursery
    make_server: Callable[[], SocketIOServer]
    switchboard: Switchboard = field(default_factory=Switchboard)
    trace: list[tuple[float, str, str]] = field(default_factory=list)
    server: SocketIOServer | None = None
    _server_scope: trio.CancelScope | None = None
    t0: float = 0.0

    def __post_init__(self) -> None:
        self.t0 = trio.current_time()
        self.network = MemoryNetwork(self.switchboard, trace=self.record)

    def record(self, kind: str, detail: str) -> None:
        self.trace.append((round(trio.current_time() - self.t0, 6), kind, detail))

    async def start_server(self) -> SocketIOServer:
        server = self.make_server()

        async def serve(task_status: trio.TaskStatus[None]) -> None:
            with trio.CancelScope() as scope:
                self._server_scope = scope
                await server.run(task_status=task_status)

        await self.nursery.start(serve)
        self.server = server
        self.switchboard.target = SocketIOMount(None, server)
        self.record("server", "started")
        return server

    async def stop_server(self) -> None:
        self.switchboard.target = None
        self.network.sever()
        if self._server_scope is not None:
            self._server_scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        self.record("server", "stopped")

    def client(self, options: ClientOptions, seed: int = 7) -> SocketIOClient:
        client = SocketIOClient(
            "http://essen.test", options, network=self.network, rng=random.Random(seed)
        )
        client.on_status(lambda s: self.record("status", f"{s.state.value} {s.retry_in}"))
        return client


FAST = EngineConfig(ping_interval=5.0, ping_timeout=3.0)


def server_factory(seed: int, options: ServerOptions | None = None) -> Callable[[], SocketIOServer]:
    """A new server per call (a restarted process), ids drawn from one seeded RNG."""
    rng = random.Random(seed)
    opts = options or ServerOptions(engine=FAST)

    def make() -> SocketIOServer:
        server = SocketIOServer(opts, rng=rng)

        @server.on("subscribe")
        async def subscribe(socket, room):
            socket.join(room)
            return True

        @server.on("echo")
        async def echo(socket, *args):
            return args

        return server

    return make


@pytest.fixture
async def rig(nursery: trio.Nursery) -> AsyncIterator[Rig]:
    rig = Rig(nursery, server_factory(1))
    yield rig
    await rig.network.aclose()
