"""Engine.IO v4 server I/O on Trio: ASGI routes for polling and WebSocket.

The protocol decisions are made by :class:`essen.protocol.engine_server.ServerSession`;
this module moves bytes and schedules tasks.  Each session gets one task in
the server's nursery (its timer and whatever the Socket.IO layer runs for it);
HTTP requests and the WebSocket handler only ever touch the session through
:class:`EngineConnection`, so a misbehaving peer can close its own session and
nothing else.
"""

from __future__ import annotations

import base64
import logging
import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import trio

from essen.errors import RemoteProtocolError
from essen.protocol.engine_server import (
    Closed,
    CloseReason,
    EngineConfig,
    MessageReceived,
    Outgoing,
    SendOutcome,
    ServerSession,
    SessionState,
    Transport,
)

from ._http import (
    CorsPolicy,
    Receive,
    Scope,
    Send,
    header,
    json_error,
    query_params,
    read_body,
    respond,
)

if TYPE_CHECKING:
    from essen.protocol.engineio import Frame

__all__ = ("EngineConnection", "EngineHandler", "EngineServer", "RequestInfo")

log = logging.getLogger("essen.realtime")

# The protocol's HTTP error codes (engine.io's Server.errors).
UNKNOWN_TRANSPORT = (0, "Transport unknown", 400)
UNKNOWN_SID = (1, "Session ID unknown", 400)
BAD_HANDSHAKE_METHOD = (2, "Bad handshake method", 400)
BAD_REQUEST = (3, "Bad request", 400)
FORBIDDEN = (4, "Forbidden", 403)
UNSUPPORTED_PROTOCOL_VERSION = (5, "Unsupported protocol version", 400)


#: Closes caused by what a POST carried: that POST is answered 400.
_REFUSED = frozenset(
    {CloseReason.PARSE_ERROR, CloseReason.PAYLOAD_TOO_LARGE, CloseReason.POLL_OVERLAP}
)


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the handshake request said, for auth middleware and logs."""

    headers: dict[str, str]
    query: dict[str, str]
    client: tuple[str, int] | None
    transport: Transport


class EngineHandler(Protocol):
    """What the Socket.IO layer provides to the Engine.IO layer."""

    async def run_connection(self, conn: EngineConnection) -> None:
        """Serve one connection; cancelled when it closes."""

    async def connection_closed(self, conn: EngineConnection, closed: Closed) -> None:
        """The connection is gone; called once, after :meth:`run_connection` ended."""


@dataclass(eq=False)
class EngineConnection:
    """The I/O side of one Engine.IO session."""

    session: ServerSession
    request: RequestInfo
    inbox_size: int
    _wake: trio.lowlevel.ParkingLot = field(default_factory=trio.lowlevel.ParkingLot)
    _done: trio.Event = field(default_factory=trio.Event)
    _timer_scope: trio.CancelScope | None = None
    _post_active: bool = False

    def __post_init__(self) -> None:
        self.inbox_send, self.inbox = trio.open_memory_channel[str | bytes](self.inbox_size)

    @property
    def sid(self) -> str:
        return self.session.sid

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def send(self, item: Outgoing) -> SendOutcome:
        """Queue frames for the peer; never blocks (the queue policy decides)."""
        outcome = self.session.send(item)
        if outcome is SendOutcome.CLOSED:
            self._settle()
        elif outcome is not SendOutcome.DROPPED:
            self._wake.unpark_all()
        return outcome

    def close(self) -> None:
        """Close gracefully: what is queued is delivered first."""
        self.session.close(trio.current_time())
        self._settle()

    def abort(self, reason: CloseReason = CloseReason.SERVER_CLOSE) -> None:
        """Close at once, dropping what is queued."""
        self.session._close_now(reason)
        self._settle()

    async def wait_closed(self) -> None:
        await self._done.wait()

    def _settle(self) -> None:
        """Bring the I/O in line with the session after any protocol call."""
        self._wake.unpark_all()
        if self.session.closed:
            self._done.set()
        elif self._timer_scope is not None:
            self._timer_scope.deadline = self.session.next_deadline()

    async def _deliver(self, events: list[MessageReceived | Closed]) -> None:
        for event in events:
            if isinstance(event, MessageReceived):
                try:
                    await self.inbox_send.send(event.data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
        self._settle()

    async def _wait_for_outgoing(self) -> None:
        while not self.session.has_outgoing and self.session.state in (
            SessionState.OPEN,
            SessionState.UPGRADING,
        ):
            await self._wake.park()

    async def _wait_poll_ready(self) -> None:
        while not self.session.poll_ready:
            await self._wake.park()


class WebSocketTransport(Protocol):
    """A WebSocket as the Engine.IO server needs it; ``receive`` gives None once closed."""

    async def accept(self) -> None: ...
    async def reject(self, error: tuple[int, str, int]) -> None: ...
    async def receive(self) -> Frame | None: ...
    async def send(self, frame: Frame) -> None: ...
    async def send_items(self, items: list[Outgoing]) -> None: ...
    async def close(self, code: int = 1000) -> None: ...


class _AsgiWebSocket:
    """A WebSocket carried by ASGI messages (Hypercorn, or the memory network)."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._scope = scope
        self._receive = receive
        self._send = send
        self.closed = False

    async def accept(self) -> None:
        await self._send({"type": "websocket.accept"})

    async def reject(self, error: tuple[int, str, int]) -> None:
        code, message, status = error
        self.closed = True
        if "websocket.http.response" in self._scope.get("extensions", {}):
            body = json_error(code, message)
            await self._send(
                {
                    "type": "websocket.http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await self._send({"type": "websocket.http.response.body", "body": body})
        else:
            await self._send({"type": "websocket.close", "code": 1008})

    async def receive(self) -> Frame | None:
        if self.closed:
            return None
        message = await self._receive()
        if message["type"] == "websocket.receive":
            text = message.get("text")
            if text is not None:
                return str(text)
            return bytes(message.get("bytes") or b"")
        self.closed = True
        return None

    async def send(self, frame: Frame) -> None:
        if isinstance(frame, str):
            await self._send({"type": "websocket.send", "text": frame})
        else:
            await self._send({"type": "websocket.send", "bytes": frame})

    async def send_items(self, items: list[Outgoing]) -> None:
        for item in items:
            for frame in item.frames:
                await self.send(frame)

    async def close(self, code: int = 1000) -> None:
        if not self.closed:
            self.closed = True
            try:
                await self._send({"type": "websocket.close", "code": code})
            except Exception:  # the peer may already be gone; nothing left to tell it
                log.debug("websocket close after peer left", exc_info=True)


class EngineServer:
    """Engine.IO server: an ASGI app for the Engine.IO path, plus the sessions' tasks.

    Start it with ``await nursery.start(engine.run)`` before serving requests.
    """

    def __init__(
        self,
        handler: EngineHandler,
        config: EngineConfig,
        *,
        cors: CorsPolicy,
        max_sessions: int = 10_000,
        inbox_size: int = 64,
        rng: random.Random | None = None,
    ) -> None:
        self.handler = handler
        self.config = config
        self.cors = cors
        self.max_sessions = max_sessions
        self.inbox_size = inbox_size
        self._rng = rng or random.SystemRandom()
        self.sessions: dict[str, EngineConnection] = {}
        self._nursery: trio.Nursery | None = None
        self.closed_by_reason: dict[str, int] = {}

    # -- lifecycle ----------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the sessions' tasks until cancelled; then every session is closed."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None

    def new_id(self) -> str:
        return base64.urlsafe_b64encode(self._rng.getrandbits(120).to_bytes(15, "big")).decode()

    def _open(self, transport: Transport, scope: Scope) -> EngineConnection:
        if self._nursery is None:
            raise RuntimeError("EngineServer.run() is not running")
        sid = self.new_id()
        session = ServerSession(sid, self.config, transport=transport, now=trio.current_time())
        client = scope.get("client")
        request = RequestInfo(
            headers={
                bytes(k).decode("latin-1"): bytes(v).decode("latin-1")
                for k, v in scope.get("headers", ())
            },
            query=query_params(scope),
            client=(str(client[0]), int(client[1])) if client else None,
            transport=transport,
        )
        conn = EngineConnection(session, request, self.inbox_size)
        self.sessions[sid] = conn
        self._nursery.start_soon(self._serve_connection, conn, name=f"engine.io session {sid}")
        return conn

    async def _serve_connection(self, conn: EngineConnection) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._timer, conn)
                nursery.start_soon(self.handler.run_connection, conn)
                await conn.wait_closed()
                nursery.cancel_scope.cancel()
        finally:
            self.sessions.pop(conn.sid, None)
            # Nobody reads the inbox any more: a transport blocked on it must fail, not hang.
            conn.inbox.close()
            closed = Closed(
                conn.session.close_reason or CloseReason.SERVER_CLOSE, conn.session.close_detail
            )
            if not conn.session.closed:
                # Server shutdown: the session dies with the process.
                conn.session._close_now(CloseReason.SERVER_CLOSE, "server shutting down")
                closed = Closed(CloseReason.SERVER_CLOSE, "server shutting down")
            conn._wake.unpark_all()
            conn._done.set()
            self.closed_by_reason[closed.reason.value] = (
                self.closed_by_reason.get(closed.reason.value, 0) + 1
            )
            if closed.reason in (
                CloseReason.PARSE_ERROR,
                CloseReason.PAYLOAD_TOO_LARGE,
                CloseReason.POLL_OVERLAP,
                CloseReason.SLOW_CONSUMER,
            ):
                log.warning("engine.io session closed: %s %s", closed.reason.value, closed.detail)
            # Shielded so disconnect handlers run even at shutdown, but bounded.
            with trio.CancelScope(shield=True, deadline=trio.current_time() + 5):
                await self.handler.connection_closed(conn, closed)

    async def _timer(self, conn: EngineConnection) -> None:
        session = conn.session
        while not session.closed:
            with trio.CancelScope(deadline=session.next_deadline()) as scope:
                conn._timer_scope = scope
                await trio.sleep_forever()
            conn._timer_scope = None
            session.handle_timeout(trio.current_time())
            conn._settle()

    # -- ASGI ---------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)

    async def _http_error(
        self, send: Send, error: tuple[int, str, int], cors: list[tuple[bytes, bytes]]
    ) -> None:
        code, message, status = error
        await respond(
            send, status, json_error(code, message), content_type="application/json", headers=cors
        )

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = header(scope, b"origin")
        if not self.cors.allows(origin, header(scope, b"host")):
            await self._http_error(send, FORBIDDEN, [])
            return
        cors = self.cors.response_headers(origin)
        method = scope["method"]
        if method == "OPTIONS":
            requested = header(scope, b"access-control-request-headers") or "content-type"
            await respond(
                send,
                204,
                headers=[
                    *cors,
                    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                    (b"access-control-allow-headers", requested.encode("latin-1")),
                    (b"access-control-max-age", b"600"),
                ],
            )
            return
        query = query_params(scope)
        if query.get("transport") != Transport.POLLING or (
            Transport.POLLING not in self.config.transports
        ):
            await self._http_error(send, UNKNOWN_TRANSPORT, cors)
            return
        if query.get("EIO") != "4":
            await self._http_error(send, UNSUPPORTED_PROTOCOL_VERSION, cors)
            return
        sid = query.get("sid")
        if sid is None:
            if method != "GET":
                await self._http_error(send, BAD_HANDSHAKE_METHOD, cors)
                return
            if len(self.sessions) >= self.max_sessions:
                await respond(
                    send,
                    503,
                    json_error(3, "Too many sessions"),
                    content_type="application/json",
                    headers=cors,
                )
                return
            conn = self._open(Transport.POLLING, scope)
            await respond(send, 200, conn.session.open_packet, headers=cors)
            return
        found = self.sessions.get(sid)
        if found is None:
            await self._http_error(send, UNKNOWN_SID, cors)
            return
        if found.session.transport is not Transport.POLLING:
            await self._http_error(send, BAD_REQUEST, cors)
            return
        if method == "GET":
            await self._poll(found, receive, send, cors)
        elif method == "POST":
            await self._post(found, receive, send, cors)
        else:
            await self._http_error(send, BAD_REQUEST, cors)

    async def _poll(
        self, conn: EngineConnection, receive: Receive, send: Send, cors: list[tuple[bytes, bytes]]
    ) -> None:
        session = conn.session
        if not session.start_poll():
            conn._settle()
            await self._http_error(send, BAD_REQUEST, cors)
            return
        try:
            async with trio.open_nursery() as nursery:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    # The client gave up on the request: the session's transport is gone.
                    session.transport_closed(error=True)
                    conn._settle()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch_disconnect)
                await conn._wait_poll_ready()
                nursery.cancel_scope.cancel()
        finally:
            session.end_poll()
        payload = session.drain_for_polling() or "1"
        conn._settle()
        await respond(send, 200, payload, headers=cors)

    async def _post(
        self, conn: EngineConnection, receive: Receive, send: Send, cors: list[tuple[bytes, bytes]]
    ) -> None:
        if conn._post_active:
            conn.abort(CloseReason.POLL_OVERLAP)
            await self._http_error(send, BAD_REQUEST, cors)
            return
        conn._post_active = True
        try:
            try:
                body = await read_body(receive, limit=self.config.max_payload)
            except ConnectionAbortedError:
                return
            if body is None:
                conn.abort(CloseReason.PAYLOAD_TOO_LARGE)
                await respond(
                    send,
                    413,
                    json_error(3, "Payload too large"),
                    content_type="application/json",
                    headers=cors,
                )
                return
            events = conn.session.receive_payload(body, trio.current_time())
            await conn._deliver(events)
            if conn.session.closed and conn.session.close_reason in _REFUSED:
                await self._http_error(send, BAD_REQUEST, cors)
                return
        finally:
            conn._post_active = False
        await respond(send, 200, "ok", content_type="text/html", headers=cors)

    def check_websocket(self, scope: Scope) -> tuple[int, str, int] | None:
        """The protocol error a WebSocket request deserves, or None if it may proceed."""
        if not self.cors.allows(header(scope, b"origin"), header(scope, b"host")):
            log.warning("refused cross-site websocket from origin %r", header(scope, b"origin"))
            return FORBIDDEN
        query = query_params(scope)
        if query.get("transport") != Transport.WEBSOCKET or (
            Transport.WEBSOCKET not in self.config.transports
        ):
            return UNKNOWN_TRANSPORT
        if query.get("EIO") != "4":
            return UNSUPPORTED_PROTOCOL_VERSION
        sid = query.get("sid")
        if sid is None and len(self.sessions) >= self.max_sessions:
            return (3, "Too many sessions", 503)
        if sid is not None and sid not in self.sessions:
            return UNKNOWN_SID
        return None

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        await self.serve_websocket(scope, _AsgiWebSocket(scope, receive, send))

    async def serve_websocket(self, scope: Scope, ws: WebSocketTransport) -> None:
        """Serve one WebSocket request, whatever carries it (ASGI or a raw stream).

        Rejects it with the protocol's error, or accepts it as a new session or
        as the upgrade of a polling session, and runs it until it closes.
        """
        error = self.check_websocket(scope)
        if error is not None:
            await ws.reject(error)
            return
        sid = query_params(scope).get("sid")
        if sid is None:
            await ws.accept()
            conn = self._open(Transport.WEBSOCKET, scope)
            await ws.send(conn.session.open_packet)
        else:
            conn = self.sessions[sid]
            try:
                conn.session.begin_upgrade(trio.current_time())
            except RemoteProtocolError:
                await ws.reject(BAD_REQUEST)
                return
            conn._settle()
            await ws.accept()
            if not await self._upgrade(conn, ws):
                await ws.close()
                return
        await self._serve_websocket(conn, ws)

    async def _upgrade(self, conn: EngineConnection, ws: WebSocketTransport) -> bool:
        session = conn.session
        with trio.move_on_at(session.upgrade_deadline or -math.inf):
            while session.state is SessionState.UPGRADING:
                frame = await ws.receive()
                if frame is None:
                    break
                try:
                    reply = session.receive_upgrade_frame(frame)
                except RemoteProtocolError as exc:
                    log.info("upgrade of %s aborted: %s", session.sid, exc)
                    break
                conn._settle()
                if reply is None:
                    return True
                await ws.send(reply)
        session.abort_upgrade()
        conn._settle()
        return False

    async def _serve_websocket(self, conn: EngineConnection, ws: WebSocketTransport) -> None:
        session = conn.session
        try:
            async with trio.open_nursery() as nursery:

                async def writer() -> None:
                    while True:
                        items = session.drain_items()
                        if items:
                            await ws.send_items(items)
                        if session.state is SessionState.CLOSING or session.closed:
                            break
                        await conn._wait_for_outgoing()
                    nursery.cancel_scope.cancel()

                async def reader() -> None:
                    while not session.closed:
                        frame = await ws.receive()
                        if frame is None:
                            session.transport_closed()
                            break
                        await conn._deliver(session.receive_frame(frame, trio.current_time()))
                    conn._settle()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(writer)
                nursery.start_soon(reader)
                await conn.wait_closed()
                nursery.cancel_scope.cancel()
        except* Exception as group:  # transport failure: the session ends, the server goes on
            log.debug("websocket transport failed", exc_info=group)
            session.transport_closed(error=True)
        finally:
            if session.state is SessionState.CLOSING:
                session.transport_closed()
            conn._settle()
            with trio.CancelScope(shield=True):
                await ws.close()
