"""Serve Socket.IO WebSockets on the raw Trio stream, beside an ASGI server.

Why: under ASGI every frame of every receiver is a message dict, a protocol
event in the server and one ``send_all`` on the socket; at a thousand
dashboards that is most of the CPU a broadcast costs (``bench/fanout.py``).
Here a WebSocket request for the Engine.IO path is taken before it reaches the
ASGI server: the handshake is done with wsproto, frames are written as the
bytes each broadcast encoded once (:attr:`Outgoing.wire`), and whatever is
queued for a socket goes out in one write.  Everything else on the port (REST,
polling, the dashboard, other WebSocket paths) is handed, with the bytes
already read, to Hypercorn and the Quart app.  Both paths run the same
:meth:`EngineServer.serve_websocket`, so they behave the same.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from typing import TYPE_CHECKING

import h11
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    TextMessage,
)

from essen.errors import TransportError
from essen.protocol.wsframe import OP_BINARY, OP_TEXT, encode_frame

from ._http import json_error

if TYPE_CHECKING:
    from essen.protocol.engine_server import Outgoing
    from essen.protocol.engineio import Frame

    from ._http import Scope

__all__ = ("RawWebSocket", "WebSocketRequest", "read_request_head")

log = logging.getLogger("essen.realtime")

MAX_HEAD = 16 * 1024
_RECEIVE_SIZE = 65536


class WebSocketRequest:
    """The parsed head of a request, enough to route it."""

    def __init__(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.method = method
        path, _, query = target.partition(b"?")
        self.path = path.decode("latin-1")
        self.query_string = query
        self.headers = headers

    @property
    def is_websocket(self) -> bool:
        values = {name: value.lower() for name, value in self.headers}
        return self.method == b"GET" and values.get(b"upgrade") == b"websocket"


async def read_request_head(
    stream: trio.abc.ReceiveStream,
) -> tuple[bytes, WebSocketRequest | None]:
    """Read until the end of the first request head (bounded).

    Returns the bytes read (to replay to whoever serves the request) and the
    parsed head, or None when it is not an HTTP/1.1 request head we can parse
    (HTTP/2 preface, garbage, too long): then the bytes go to Hypercorn as they are.
    """
    buffer = bytearray()
    while b"\r\n\r\n" not in buffer and len(buffer) < MAX_HEAD:
        chunk = await stream.receive_some(_RECEIVE_SIZE)
        if not chunk:
            break
        buffer += chunk
    data = bytes(buffer)
    if b"\r\n\r\n" not in data:
        return data, None
    parser = h11.Connection(h11.SERVER)
    parser.receive_data(data[: data.index(b"\r\n\r\n") + 4])
    try:
        event = parser.next_event()
    except h11.RemoteProtocolError:
        return data, None
    if not isinstance(event, h11.Request):
        return data, None
    return data, WebSocketRequest(bytes(event.method), bytes(event.target), list(event.headers))


class RawWebSocket:
    """A server WebSocket on a Trio stream (the fast path's :class:`WebSocketTransport`)."""

    def __init__(
        self, stream: trio.abc.Stream, head: bytes, scope: Scope, *, max_message: int
    ) -> None:
        self._stream = stream
        self._ws = WSConnection(ConnectionType.SERVER)
        self._ws.receive_data(head)
        self._events: deque[Event] = deque(self._ws.events())
        self._scope = scope
        self._max_message = max_message
        self._write_lock = trio.StrictFIFOLock()
        self._waiting_writes = 0
        socket = getattr(stream, "socket", None)
        self._fileno: int | None = socket.fileno() if socket is not None else None
        self._parts: list[str | bytes | bytearray] = []
        self._part_size = 0
        self.closed = False

    async def _write(self, data: bytes) -> None:
        """Write ``data`` in order with every other write on this socket.

        Fast path: when no write is in progress, one non-blocking ``write(2)``
        on the socket, with no trip through the scheduler; that is the common
        case (the kernel buffer has room) and it halves what a delivery costs.
        Whatever the kernel does not take waits its turn on a FIFO lock, and
        while anything waits there every later write queues behind it.
        """
        if not self._waiting_writes and self._fileno is not None:
            try:
                written = os.write(self._fileno, data)
            except BlockingIOError:
                written = 0
            except OSError as exc:
                self.closed = True
                raise TransportError(f"websocket peer went away: {exc!r}") from exc
            if written == len(data):
                return
            data = data[written:]
        self._waiting_writes += 1
        try:
            async with self._write_lock:
                await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.closed = True
            raise TransportError("websocket peer went away") from exc
        finally:
            self._waiting_writes -= 1

    async def accept(self) -> None:
        await self._write(self._ws.send(AcceptConnection()))

    async def reject(self, error: tuple[int, str, int]) -> None:
        code, message, status = error
        body = json_error(code, message)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        data = self._ws.send(RejectConnection(status_code=status, headers=headers, has_body=True))
        data += self._ws.send(RejectData(data=body))
        try:
            await self._write(data)
        finally:
            self.closed = True
            await self._stream.aclose()

    async def receive(self) -> Frame | None:
        while not self.closed:
            while self._events:
                event = self._events.popleft()
                if isinstance(event, TextMessage | BytesMessage):
                    self._parts.append(event.data)
                    self._part_size += len(event.data)
                    if event.message_finished or self._part_size > self._max_message:
                        # An oversized message is handed over as far as it got
                        # (bounded): the Engine.IO session closes it as "payload
                        # too large", exactly as on the ASGI path.
                        parts, self._parts, self._part_size = self._parts, [], 0
                        if isinstance(event, TextMessage):
                            return "".join(str(p) for p in parts)
                        return b"".join(
                            p.encode() if isinstance(p, str) else bytes(p) for p in parts
                        )
                elif isinstance(event, Ping):
                    await self._write(self._ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    with contextlib.suppress(TransportError):
                        await self._write(self._ws.send(event.response()))
                    self.closed = True
                    return None
            try:
                data = await self._stream.receive_some(_RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            self._ws.receive_data(bytes(data) if data else None)
            self._events.extend(self._ws.events())
            if not data and not self._events:
                self.closed = True
        return None

    async def send(self, frame: Frame) -> None:
        if isinstance(frame, str):
            await self._write(encode_frame(frame.encode("utf-8"), OP_TEXT))
        else:
            await self._write(encode_frame(frame, OP_BINARY))

    async def send_items(self, items: list[Outgoing]) -> None:
        # Everything queued for this socket in one write: under load a
        # dashboard's backlog costs one syscall, not one per event.
        await self._write(items[0].wire if len(items) == 1 else b"".join(i.wire for i in items))

    async def close(self, code: int = 1000) -> None:
        if self.closed:
            await self._stream.aclose()
            return
        self.closed = True
        if self._ws.state is ConnectionState.OPEN:
            with contextlib.suppress(TransportError), trio.move_on_after(1):
                await self._write(self._ws.send(CloseConnection(code=code)))
        await self._stream.aclose()
