"""Serve an ASGI app with Hypercorn's Trio worker inside the caller's nursery.

With a Socket.IO mount, WebSocket requests for its paths are taken on the raw
stream (:mod:`essen.realtime.rawws`) and everything else is served by Hypercorn
on the same port.  This replaces ``hypercorn.trio.serve``'s accept loop with
one that can route by the request head; lifespan, HTTP/1.1, h2c and the ASGI
WebSocket path remain Hypercorn's.  It uses Hypercorn's ``TCPServer`` and
``Lifespan`` classes (pinned: ``hypercorn>=0.17,<0.19``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import wrap_app

from essen.realtime.rawws import RawWebSocket, read_request_head

if TYPE_CHECKING:
    from essen.realtime import SocketIOMount
    from essen.realtime._http import Scope

__all__ = ("hypercorn_config", "serve_app")

log = logging.getLogger("essen.web")

#: A client must send its request head within this many seconds.
HEAD_TIMEOUT = 30.0


def hypercorn_config(host: str, port: int) -> Config:
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    # Graceful drain on shutdown: a second, then connections are cut.
    config.graceful_timeout = 1.0
    # Engine.IO enforces its own maxPayload; this only stops absurd frames early.
    config.websocket_max_message_size = 16 * 1024 * 1024
    return config


class _ReplayStream:
    """A socket stream that first gives back the bytes already read from it.

    Hypercorn's ``TCPServer`` uses ``socket``, ``receive_some``, ``send_all``
    and ``aclose``; having no ``do_handshake`` marks it as plain TCP.
    """

    def __init__(self, stream: trio.SocketStream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix
        self.socket = stream.socket

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()

    def __getattr__(self, name: str) -> Any:
        if name == "do_handshake":
            raise AttributeError(name)
        return getattr(self._stream, name)


async def serve_app(
    app: Any,  # any ASGI app; Quart types its callables its own way
    host: str,
    port: int,
    *,
    socketio: SocketIOMount | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until cancelled; ``task_status`` receives the bound URLs.

    Port 0 picks a free port (the URL tells which).  With ``socketio``, its
    WebSocket paths take the raw fast path.
    """
    config = hypercorn_config(host, port)
    if socketio is None:
        await serve(app, config, task_status=task_status)
        return
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    lifespan_state: dict[str, Any] = {}
    lifespan = Lifespan(wrapped, config, lifespan_state)
    context = WorkerContext(None)
    engine = socketio.server.engine
    paths = socketio.paths

    async def handle(stream: trio.SocketStream) -> None:
        # One connection's failure is logged and ends that connection, never the server.
        try:
            await route(stream)
        except Exception:
            log.exception("connection handler failed")
            await trio.aclose_forcefully(stream)

    async def route(stream: trio.SocketStream) -> None:
        with trio.move_on_after(HEAD_TIMEOUT) as head_timer:
            try:
                head, request = await read_request_head(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
        if head_timer.cancelled_caught or not head:
            await stream.aclose()
            return
        if request is not None and request.is_websocket and request.path in paths:
            peer = stream.socket.getpeername()
            scope: Scope = {
                "type": "websocket",
                "path": request.path,
                "query_string": request.query_string,
                "headers": [(name.lower(), value) for name, value in request.headers],
                "client": (peer[0], peer[1]),
                "extensions": {},
            }
            ws = RawWebSocket(stream, head, scope, max_message=engine.config.max_payload)
            await engine.serve_websocket(scope, ws)
            return
        state = ConnectionState(lifespan_state.copy())
        replay = _ReplayStream(stream, head)
        await TCPServer(wrapped, config, context, state, replay)  # type: ignore[arg-type]

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        listeners = await trio.open_tcp_listeners(port, host=host)
        urls = []
        for listener in listeners:
            address = listener.socket.getsockname()
            urls.append(f"http://{address[0]}:{address[1]}")
            log.info("Running on http://%s:%s", address[0], address[1])
        task_status.started(urls)
        await trio.serve_listeners(handle, listeners)
