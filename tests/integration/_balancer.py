"""A TCP load balancer shaped like App Platform's: round robin, no sticky sessions.

Every accepted connection goes to the next admin backend in turn; a backend
that refuses the connection (its process is dead) is skipped for the next
one, so after a ``kill -9`` every reconnect lands on the survivor.  Nothing
ties a client to the backend it had before: that is exactly why several
admin instances run Socket.IO WebSocket-only (a polling session's requests
would be spread over instances that do not know it).

It forwards bytes both ways and looks at nothing but the head of the first
request on each connection, to record which client went where: a test client
may name itself in an ``x-essen-test-client`` header (our dashboards do; a
bot cannot, the admins' logs say where the bots are).  When either side
closes or breaks, both are closed, so the death of a backend is seen by the
client at once, as a load balancer that resets its upstream would show it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("CLIENT_HEADER", "Placement", "RoundRobin")

#: The header a test client names itself with (lower case, as parsed).
CLIENT_HEADER = "x-essen-test-client"
#: The most of a request head looked at; past this the connection is forwarded unrecorded.
MAX_HEAD = 16 * 1024
RECEIVE_SIZE = 65536


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one client connection went: its first request and the backend that took it."""

    client: str | None
    backend: tuple[str, int]
    request: str


@dataclass
class RoundRobin:
    """The balancer; ``await nursery.start(balancer.serve)`` returns its port."""

    backends: Sequence[tuple[str, int]]
    placements: list[Placement] = field(default_factory=list)
    #: Connections per backend, and connections no backend would take.
    forwarded: Counter[tuple[str, int]] = field(default_factory=Counter)
    refused_by_backend: Counter[tuple[str, int]] = field(default_factory=Counter)
    unplaced: int = 0
    _next: int = 0
    _changed: trio.Event = field(default_factory=trio.Event)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on a free loopback port and forward connections until cancelled."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._handle, listeners)

    def backend_of(self, client: str) -> tuple[str, int] | None:
        """The backend of ``client``'s latest connection (None: it has not connected yet)."""
        for placement in reversed(self.placements):
            if placement.client == client:
                return placement.backend
        return None

    async def wait_placed(self, client: str, *, after: int = 0) -> Placement:
        """``client``'s first connection recorded at index ``after`` or later; waits for it."""
        seen = after
        while True:
            for placement in self.placements[seen:]:
                if placement.client == client:
                    return placement
            seen = len(self.placements)
            await self._changed.wait()

    async def _connect(self) -> tuple[trio.SocketStream, tuple[str, int]] | None:
        """The next backend that accepts, in turn; None when none does."""
        for _ in range(len(self.backends)):
            backend = self.backends[self._next % len(self.backends)]
            self._next += 1
            try:
                return await trio.open_tcp_stream(*backend), backend
            except OSError:
                self.refused_by_backend[backend] += 1
        return None

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            connected = await self._connect()
            if connected is None:
                self.unplaced += 1
                return  # closing the connection: the client retries, as it would at a 502
            upstream, backend = connected
            self.forwarded[backend] += 1
            async with upstream, trio.open_nursery() as nursery:

                async def responses() -> None:
                    await _pipe(upstream, client)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(responses)
                await self._requests(client, upstream, backend)
                nursery.cancel_scope.cancel()

    async def _requests(
        self, client: trio.SocketStream, upstream: trio.SocketStream, backend: tuple[str, int]
    ) -> None:
        head = b""
        recorded = False
        while data := await _receive(client):
            if not recorded:
                head += data
                if b"\r\n\r\n" in head or len(head) > MAX_HEAD:
                    self._record(head, backend)
                    recorded = True
            if not await _send(upstream, data):
                return

    def _record(self, head: bytes, backend: tuple[str, int]) -> None:
        request_line, _, rest = head.partition(b"\r\n")
        client = None
        for line in rest.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == CLIENT_HEADER.encode():
                client = value.strip().decode("latin-1")
        self.placements.append(Placement(client, backend, request_line.decode("latin-1")))
        self._changed.set()
        self._changed = trio.Event()


async def _receive(stream: trio.SocketStream) -> bytes:
    try:
        return await stream.receive_some(RECEIVE_SIZE)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return b""


async def _send(stream: trio.SocketStream, data: bytes) -> bool:
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    return True


async def _pipe(source: trio.SocketStream, sink: trio.SocketStream) -> None:
    while data := await _receive(source):
        if not await _send(sink, data):
            return
