"""The client's view of the network: an HTTP requester and a WebSocket connector.

Two implementations of each: the real network (httpx, and wsproto on a Trio
stream) and memory (the server's ASGI app called in-process, so a whole system
runs under ``trio.testing.MockClock`` with no sockets, no threads and no wall
clock).  The client only sees these protocols, so both paths run the same
client and server code.
"""

from __future__ import annotations

import contextlib
import math
import ssl
from collections import deque
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import httpx
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState as WsState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.events import Event as WsEvent

from essen.errors import TransportError

from ._http import Message

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from essen.protocol.engineio import Frame

    from ._http import ASGIApp

__all__ = (
    "HttpRequester",
    "MemoryNetwork",
    "NetworkTransports",
    "WebSocketChannel",
    "WebSocketConnector",
    "real_network",
)


class HttpRequester(Protocol):
    async def request(
        self, method: str, url: str, *, content: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """One HTTP request; raises TransportError when it cannot be completed."""


class WebSocketChannel(Protocol):
    async def receive(self) -> Frame:
        """The next frame; raises TransportError once the socket is closed."""

    async def send(self, frame: Frame) -> None:
        """Raises TransportError once the socket is closed."""


class WebSocketConnector(Protocol):
    def connect(
        self, url: str, headers: dict[str, str]
    ) -> contextlib.AbstractAsyncContextManager[WebSocketChannel]:
        """Open a WebSocket for the duration of the context; TransportError if refused."""


class NetworkTransports(Protocol):
    http: HttpRequester
    websocket: WebSocketConnector


# -- real network ---------------------------------------------------------------


class _HttpxRequester:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def request(
        self, method: str, url: str, *, content: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        try:
            response = await self._client.request(method, url, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise TransportError(f"{method} {_redact(url)} failed: {exc!r}") from exc
        return response.status_code, response.content


class _StreamWebSocket:
    """A client WebSocket on a Trio stream, framed by wsproto.

    trio-websocket leaves its TCP socket open when a handshake is refused or
    the server closes first (0.12); this owns the stream and always closes it.
    """

    def __init__(self, stream: trio.abc.Stream, ws: WSConnection, max_message: int) -> None:
        self._stream = stream
        self._ws = ws
        self._max_message = max_message
        self._events: deque[WsEvent] = deque(ws.events())
        self._parts: list[str | bytes | bytearray] = []
        self._size = 0
        self._write_lock = trio.StrictFIFOLock()
        self.closed = False

    async def _write(self, data: bytes) -> None:
        try:
            async with self._write_lock:
                await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.closed = True
            raise TransportError("websocket closed") from exc

    async def receive(self) -> Frame:
        while not self.closed:
            while self._events:
                event = self._events.popleft()
                if isinstance(event, TextMessage | BytesMessage):
                    self._parts.append(event.data)
                    self._size += len(event.data)
                    if self._size > self._max_message:
                        raise TransportError("websocket message too large")
                    if event.message_finished:
                        parts, self._parts, self._size = self._parts, [], 0
                        if isinstance(event, TextMessage):
                            return "".join(str(p) for p in parts)
                        return b"".join(
                            p.encode() if isinstance(p, str) else bytes(p) for p in parts
                        )
                elif isinstance(event, Ping):
                    await self._write(self._ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if self._ws.state is WsState.REMOTE_CLOSING:
                        with contextlib.suppress(TransportError):
                            await self._write(self._ws.send(event.response()))
                    self.closed = True
                    raise TransportError(f"websocket closed by server ({event.code})")
            try:
                data = await self._stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.closed = True
                raise TransportError("websocket connection lost") from exc
            if not data:
                self.closed = True
                raise TransportError("websocket connection lost")
            self._ws.receive_data(bytes(data))
            self._events.extend(self._ws.events())
        raise TransportError("websocket closed")

    async def send(self, frame: Frame) -> None:
        if self.closed:
            raise TransportError("websocket closed")
        message = TextMessage(data=frame) if isinstance(frame, str) else BytesMessage(data=frame)
        await self._write(self._ws.send(message))

    async def close(self) -> None:
        if not self.closed and self._ws.state is WsState.OPEN:
            self.closed = True
            with contextlib.suppress(TransportError), trio.move_on_after(1):
                await self._write(self._ws.send(CloseConnection(code=1000)))


class _TrioWebSocketConnector:
    def __init__(self, max_message_size: int) -> None:
        self._max_message_size = max_message_size

    @contextlib.asynccontextmanager
    async def connect(self, url: str, headers: dict[str, str]) -> AsyncIterator[WebSocketChannel]:
        parts = urlsplit(url)
        secure = parts.scheme in ("https", "wss")
        host = parts.hostname or "localhost"
        port = parts.port or (443 if secure else 80)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            with trio.fail_after(20):
                if secure:
                    stream: trio.abc.Stream = await trio.open_ssl_over_tcp_stream(
                        host,
                        port,
                        ssl_context=ssl.create_default_context(),
                        https_compatible=True,
                    )
                else:
                    stream = await trio.open_tcp_stream(host, port)
        except (OSError, trio.TooSlowError) as exc:
            raise TransportError(f"websocket to {_redact(url)} failed: {exc!r}") from exc
        try:
            ws = WSConnection(ConnectionType.CLIENT)
            request = Request(
                host=parts.netloc,
                target=target,
                extra_headers=[
                    (k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
                ],
            )
            await stream.send_all(ws.send(request))
            with trio.fail_after(20):
                accepted = await _handshake(stream, ws)
            if not accepted:
                raise TransportError(f"websocket to {_redact(url)} refused")
            channel = _StreamWebSocket(stream, ws, self._max_message_size)
            try:
                yield channel
            finally:
                with trio.CancelScope(shield=True):
                    await channel.close()
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            OSError,
            trio.TooSlowError,
        ) as exc:
            raise TransportError(f"websocket to {_redact(url)} failed: {exc!r}") from exc
        finally:
            await trio.aclose_forcefully(stream)


async def _handshake(stream: trio.abc.Stream, ws: WSConnection) -> bool:
    """Read until the server accepts (True) or refuses (False) the upgrade."""
    while True:
        data = await stream.receive_some(65536)
        if not data:
            return False
        ws.receive_data(bytes(data))
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                return True
            if isinstance(event, RejectConnection):
                return False


class _RealNetwork:
    def __init__(self, client: httpx.AsyncClient, max_message_size: int) -> None:
        self.http: HttpRequester = _HttpxRequester(client)
        self.websocket: WebSocketConnector = _TrioWebSocketConnector(max_message_size)


@contextlib.asynccontextmanager
async def real_network(
    *, max_message_size: int = 16 * 1024 * 1024
) -> AsyncIterator[NetworkTransports]:
    """httpx for polling and wsproto on a Trio stream for WebSocket, closed on exit."""
    # Long-polls last up to pingInterval; the client's own heartbeat bounds them.
    timeout = httpx.Timeout(connect=20.0, read=None, write=20.0, pool=20.0)
    async with httpx.AsyncClient(timeout=timeout) as client:
        yield _RealNetwork(client, max_message_size)


# -- memory ---------------------------------------------------------------------


class _AsgiWebSocketChannel:
    def __init__(
        self,
        to_app: trio.MemorySendChannel[Message],
        from_app: trio.MemoryReceiveChannel[Message],
        trace: Callable[[str, str], None],
    ) -> None:
        self._trace = trace
        self._to_app = to_app
        self._from_app = from_app
        self._closed = False

    async def receive(self) -> Frame:
        if self._closed:
            raise TransportError("websocket closed")
        try:
            message = await self._from_app.receive()
        except trio.EndOfChannel:
            message = {"type": "websocket.close"}
        if message["type"] == "websocket.send":
            text = message.get("text")
            return str(text) if text is not None else bytes(message["bytes"])
        self._closed = True
        raise TransportError("websocket closed by server")

    async def send(self, frame: Frame) -> None:
        if self._closed:
            raise TransportError("websocket closed")
        self._trace("ws>", repr(frame))
        message: Message = {"type": "websocket.receive"}
        message["text" if isinstance(frame, str) else "bytes"] = frame
        try:
            await self._to_app.send(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise TransportError("websocket closed by server") from exc


class MemoryNetwork:
    """Reach an ASGI app in-process: HTTP through httpx's ASGI transport, WebSocket
    through a pair of memory channels speaking the ASGI WebSocket messages.

    ``partitioned`` makes every new request and WebSocket fail, and ``sever()``
    breaks the open WebSockets: the two faults a harness needs to simulate a
    network partition.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        client_addr: tuple[str, int] = ("10.0.0.2", 50000),
        trace: Callable[[str, str], None] | None = None,
        websocket_buffer: int = 16,
        nursery: trio.Nursery | None = None,
    ) -> None:
        self.app = app
        self.client_addr = client_addr
        self.partitioned = False
        #: Frames the server may have in flight to a WebSocket client that is not
        #: reading; beyond it the server's write blocks, as TCP back-pressure would.
        self.websocket_buffer = websocket_buffer
        #: Where the server side of WebSockets runs (default: the client's context).
        self.nursery = nursery
        self._trace = trace or _no_trace
        self._open_sockets: set[trio.CancelScope] = set()
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=client_addr),
            base_url="http://essen.test",
        )
        self.http: HttpRequester = self
        self.websocket: WebSocketConnector = self

    async def request(
        self, method: str, url: str, *, content: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        if self.partitioned:
            raise TransportError("network partitioned")
        path = _redact(url)
        self._trace("http>", f"{method} {path} {content!r}")
        try:
            response = await self._client.request(method, url, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise TransportError(f"{method} failed: {exc!r}") from exc
        self._trace("http<", f"{method} {path} {response.status_code} {response.content!r}")
        return response.status_code, response.content

    def sever(self) -> None:
        """Break every open WebSocket, as a network failure would."""
        for scope in list(self._open_sockets):
            scope.cancel()

    @contextlib.asynccontextmanager
    async def connect(self, url: str, headers: dict[str, str]) -> AsyncIterator[WebSocketChannel]:
        if self.partitioned:
            raise TransportError("network partitioned")
        parts = urlsplit(url)
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "path": parts.path,
            "raw_path": parts.path.encode(),
            "query_string": parts.query.encode(),
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
            + [(b"host", b"essen.test")],
            "client": self.client_addr,
            "server": ("essen.test", 80),
            "subprotocols": [],
            "extensions": {"websocket.http.response": {}},
        }
        to_app_send, to_app_receive = trio.open_memory_channel[Message](math.inf)
        from_app_send, from_app_receive = trio.open_memory_channel[Message](self.websocket_buffer)
        trace = self._trace

        async def receive() -> Message:
            try:
                return await to_app_receive.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return {"type": "websocket.disconnect", "code": 1006}

        async def send(message: Message) -> None:
            trace("ws<", repr(message.get("text", message.get("bytes", message["type"]))))
            try:
                await from_app_send.send(message)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise OSError("client went away") from None

        async with trio.open_nursery() as nursery:
            # The server's side runs in the network's nursery when it has one, as
            # it would in another process: a client that dies (is cancelled)
            # closes its end, and the server sees the disconnect, not a
            # cancellation of its own handler.
            (self.nursery or nursery).start_soon(self.app, scope, receive, send)
            await to_app_send.send({"type": "websocket.connect"})
            first = await from_app_receive.receive()
            if first["type"] != "websocket.accept":
                to_app_send.close()
                raise TransportError(f"websocket refused: {first.get('status', 403)}")
            channel = _AsgiWebSocketChannel(to_app_send, from_app_receive, trace)
            sever_scope = trio.CancelScope()
            self._open_sockets.add(sever_scope)
            try:
                with sever_scope:
                    yield channel
                if sever_scope.cancelled_caught:
                    raise TransportError("network severed")
            finally:
                self._open_sockets.discard(sever_scope)
                to_app_send.close()
                from_app_receive.close()

    async def aclose(self) -> None:
        await self._client.aclose()


def _no_trace(kind: str, detail: str) -> None:
    pass


def _redact(url: str) -> str:
    """A URL without its query string (which can carry session ids) for messages."""
    return url.split("?", 1)[0]
