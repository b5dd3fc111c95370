"""Socket.IO v5 server on Trio.

Usage::

    server = SocketIOServer(ServerOptions(cors_origins=("https://admin.example",)))

    @server.use
    async def authenticate(socket: Socket, auth: dict | None) -> None:
        if not auth or auth.get("token") != expected:
            raise ConnectionRefused("invalid token")

    @server.on("subscribe")
    async def subscribe(socket: Socket, room: str) -> bool:
        socket.join(room)
        return True                     # becomes the ack's argument

    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        app = SocketIOMount(quart_app.asgi_app, server, paths=("/socket.io/", "/api/socket.io/"))
        ...                              # serve ``app`` with Hypercorn
        server.emit("metrics:update", snapshot, to="monitoring")

Each client connection has one task that decodes its packets and one that
runs its handlers in order, so one client's events are handled in the order
sent and a slow handler slows only its own client.  Acknowledgements bypass
the handler queue, so a handler may ``await socket.call(...)`` on its own client.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio

from essen.errors import ConnectionRefused, LocalProtocolError, RemoteProtocolError
from essen.protocol.engine_server import Closed, CloseReason, EngineConfig, Outgoing, SendOutcome
from essen.protocol.socketio import Decoder, SioPacket, SioType, encode

from ._engine import EngineConnection, EngineServer
from ._http import CorsPolicy
from ._recovery import LoggedPacket, RecoveryConfig, RecoveryStore, SavedSession
from ._rooms import Rooms
from ._socket import Socket

__all__ = ("EventHandler", "Middleware", "Namespace", "ServerOptions", "SocketIOServer")

log = logging.getLogger("essen.realtime")

EventHandler = Callable[..., Awaitable[Any]]
Middleware = Callable[[Socket, dict[str, Any] | None], Awaitable[None]]
ConnectHandler = Callable[[Socket], Awaitable[None]]
DisconnectHandler = Callable[[Socket, str], Awaitable[None]]
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

# Reasons after which a client may come back and recover its state (socket.io's list).
_RECOVERABLE = frozenset(
    {
        CloseReason.TRANSPORT_CLOSE.value,
        CloseReason.TRANSPORT_ERROR.value,
        CloseReason.PING_TIMEOUT.value,
        CloseReason.SLOW_CONSUMER.value,
        CloseReason.SERVER_CLOSE.value,
    }
)


@dataclass(frozen=True, slots=True)
class ServerOptions:
    engine: EngineConfig = field(default_factory=EngineConfig)
    #: Browser origins allowed for polling and WebSocket ("*" allows any: development only).
    cors_origins: tuple[str, ...] = ()
    #: Connection state recovery; None disables it.
    recovery: RecoveryConfig | None = field(default_factory=RecoveryConfig)
    #: A client that joins no namespace within this many seconds is closed.
    connect_timeout: float = 45.0
    max_sessions: int = 10_000
    #: Packets per client waiting for its handler task (back-pressure beyond).
    inbox_size: int = 64


class Namespace:
    """Handlers, middleware, sockets and rooms of one namespace."""

    def __init__(self, server: SocketIOServer, name: str) -> None:
        self.server = server
        self.name = name
        self.rooms = Rooms()
        self.sockets: dict[str, Socket] = {}
        self.handlers: dict[str, EventHandler] = {}
        self.middlewares: list[Middleware] = []
        self.connect_handlers: list[ConnectHandler] = []
        self.disconnect_handlers: list[DisconnectHandler] = []

    def on(self, event: str) -> Callable[[F], F]:
        """Register ``async def handler(socket, *args)``; its return value is the ack."""

        def register(handler: F) -> F:
            self.handlers[event] = handler
            return handler

        return register

    def use(self, middleware: Middleware) -> Middleware:
        """Register an auth middleware, run on every CONNECT before the socket joins."""
        self.middlewares.append(middleware)
        return middleware

    def on_connect(self, handler: ConnectHandler) -> ConnectHandler:
        self.connect_handlers.append(handler)
        return handler

    def on_disconnect(self, handler: DisconnectHandler) -> DisconnectHandler:
        self.disconnect_handlers.append(handler)
        return handler

    def emit(
        self,
        event: str,
        *args: Any,
        to: str | Iterable[str] | None = None,
        exclude: str | Iterable[str] = (),
        volatile: bool = False,
        droppable: bool | None = None,
        coalesce: str | None = None,
    ) -> int:
        """Broadcast to every socket (``to`` None) or to the rooms ``to``, minus ``exclude``.

        The packet is encoded once whatever the number of receivers.  Returns
        how many sockets it was queued for.

        Args:
            volatile: not kept for connection state recovery (and droppable).
            droppable: a full queue may drop it (default: ``volatile``).
            coalesce: replaces a still-queued packet with the same key (latest wins).
        """
        droppable = volatile if droppable is None else droppable
        to_rooms = frozenset((to,) if isinstance(to, str) else to) if to is not None else None
        except_rooms = frozenset((exclude,) if isinstance(exclude, str) else exclude)
        targets = self.rooms.targets(to_rooms, except_rooms)
        data = [event, *args]
        store = self.server.recovery
        logged_offset = None
        if store is not None and not volatile:
            logged_offset = store.next_offset()
            data.append(logged_offset)
        item = Outgoing.message(
            encode(SioPacket(SioType.EVENT, self.name, data)),
            droppable=droppable,
            coalesce=coalesce,
        )
        if logged_offset is not None and store is not None:
            store.log(
                LoggedPacket(
                    logged_offset, self.name, to_rooms, except_rooms, item, trio.current_time()
                )
            )
        sockets = self.sockets
        queued = 0
        for sid in targets:
            outcome = sockets[sid].conn.send(item)
            if outcome is SendOutcome.QUEUED or outcome is SendOutcome.QUEUED_DROPPED_OLDER:
                queued += 1
        return queued


class SocketIOServer:
    """Socket.IO server; see the module docstring.  Implements the Engine.IO handler protocol."""

    def __init__(
        self, options: ServerOptions | None = None, *, rng: random.Random | None = None
    ) -> None:
        self.options = options or ServerOptions()
        self._rng = rng or random.SystemRandom()
        self.engine = EngineServer(
            self,
            self.options.engine,
            cors=CorsPolicy(self.options.cors_origins),
            max_sessions=self.options.max_sessions,
            inbox_size=self.options.inbox_size,
            rng=self._rng,
        )
        self.recovery = RecoveryStore(self.options.recovery) if self.options.recovery else None
        self.namespaces: dict[str, Namespace] = {"/": Namespace(self, "/")}
        self.counters: dict[str, int] = {
            "connects": 0,
            "refused": 0,
            "recovered": 0,
            "protocol_errors": 0,
            "unknown_events": 0,
            "handler_errors": 0,
        }

    # -- registration (default namespace shortcuts) -------------------------

    def of(self, name: str) -> Namespace:
        if not name.startswith("/"):
            raise ValueError("namespace names start with '/'")
        return self.namespaces.setdefault(name, Namespace(self, name))

    def on(self, event: str) -> Callable[[F], F]:
        return self.namespaces["/"].on(event)

    def use(self, middleware: Middleware) -> Middleware:
        return self.namespaces["/"].use(middleware)

    def on_connect(self, handler: ConnectHandler) -> ConnectHandler:
        return self.namespaces["/"].on_connect(handler)

    def on_disconnect(self, handler: DisconnectHandler) -> DisconnectHandler:
        return self.namespaces["/"].on_disconnect(handler)

    def emit(
        self,
        event: str,
        *args: Any,
        to: str | Iterable[str] | None = None,
        exclude: str | Iterable[str] = (),
        namespace: str = "/",
        volatile: bool = False,
        droppable: bool | None = None,
        coalesce: str | None = None,
    ) -> int:
        """Broadcast in ``namespace``; see :meth:`Namespace.emit`."""
        return self.namespaces[namespace].emit(
            event,
            *args,
            to=to,
            exclude=exclude,
            volatile=volatile,
            droppable=droppable,
            coalesce=coalesce,
        )

    # -- lifecycle ----------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled (start with ``await nursery.start(server.run)``)."""
        await self.engine.run(task_status=task_status)

    def statistics(self) -> dict[str, Any]:
        sessions = list(self.engine.sessions.values())
        return {
            "engine_sessions": len(sessions),
            "sockets": {name: len(ns.sockets) for name, ns in self.namespaces.items()},
            "rooms": {name: ns.rooms.room_sizes() for name, ns in self.namespaces.items()},
            "dropped_messages": sum(c.session.dropped for c in sessions),
            "coalesced_messages": sum(c.session.coalesced for c in sessions),
            "closed_by_reason": dict(self.engine.closed_by_reason),
            "recovery": self.recovery.statistics() if self.recovery else None,
            **self.counters,
        }

    # -- Engine.IO handler --------------------------------------------------

    async def run_connection(self, conn: EngineConnection) -> None:
        sockets: dict[str, Socket] = {}
        conn_state = _ConnectionState(conn, sockets)
        self._conn_states[conn.sid] = conn_state
        send_packets, receive_packets = trio.open_memory_channel[SioPacket | _Departed](
            self.options.inbox_size
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._connect_deadline, conn_state)
            nursery.start_soon(self._handle_packets, conn_state, receive_packets)
            decoder = Decoder()
            async with send_packets:
                async for data in conn.inbox:
                    try:
                        packet = decoder.feed(data)
                    except RemoteProtocolError as exc:
                        self.counters["protocol_errors"] += 1
                        log.warning("closing session %s: %s", conn.sid, exc)
                        conn.abort(CloseReason.PARSE_ERROR)
                        return
                    if packet is None:
                        continue
                    if packet.type is SioType.ACK:
                        socket = sockets.get(packet.namespace)
                        if socket is not None and packet.id is not None:
                            socket._resolve_ack(packet.id, packet.data)
                        continue
                    if packet.type is SioType.DISCONNECT:
                        # Acted on at arrival, like socket.io: a handler awaiting a
                        # call on this socket must fail now, and the socket must not
                        # be saved for recovery when the connection closes next.
                        # Its disconnect handlers still run in order, on the queue.
                        socket = sockets.get(packet.namespace)
                        if socket is None:
                            continue
                        self._detach(socket, "client namespace disconnect", recoverable=False)
                        departed = _Departed(socket, "client namespace disconnect")
                        conn_state.departed.append(departed)
                        await send_packets.send(departed)
                        continue
                    await send_packets.send(packet)

    @property
    def _conn_states(self) -> dict[str, _ConnectionState]:
        states: dict[str, _ConnectionState] = self.__dict__.setdefault("_states", {})
        return states

    async def connection_closed(self, conn: EngineConnection, closed: Closed) -> None:
        state = self._conn_states.pop(conn.sid, None)
        if state is None:
            return
        # Sockets the client left whose handlers had not run yet (the handler
        # queue was busy when the connection closed) get them now.
        for departed in state.departed:
            await self._run_disconnect_handlers(departed.socket, departed.reason)
        state.departed.clear()
        for socket in list(state.sockets.values()):
            await self._remove(
                socket, closed.reason.value, recoverable=closed.reason.value in _RECOVERABLE
            )

    async def _connect_deadline(self, state: _ConnectionState) -> None:
        await trio.sleep(self.options.connect_timeout)
        if not state.ever_connected:
            log.info("closing session %s: no namespace joined in time", state.conn.sid)
            state.conn.close()

    async def _handle_packets(
        self, state: _ConnectionState, packets: trio.MemoryReceiveChannel[SioPacket | _Departed]
    ) -> None:
        async with packets:
            async for packet in packets:
                if isinstance(packet, _Departed):
                    if packet in state.departed:
                        state.departed.remove(packet)
                        await self._run_disconnect_handlers(packet.socket, packet.reason)
                    continue
                match packet.type:
                    case SioType.CONNECT:
                        await self._connect(state, packet)
                    case SioType.EVENT:
                        socket = state.sockets.get(packet.namespace)
                        if socket is not None:
                            await self._dispatch(socket, packet)
                    case _:
                        self.counters["protocol_errors"] += 1
                        log.warning(
                            "closing session %s: client sent %s", state.conn.sid, packet.type.name
                        )
                        state.conn.abort(CloseReason.PARSE_ERROR)
                        return

    async def _connect(self, state: _ConnectionState, packet: SioPacket) -> None:
        conn = state.conn
        namespace = self.namespaces.get(packet.namespace)
        if namespace is None:
            self._refuse(conn, packet.namespace, "Invalid namespace", None)
            return
        if packet.namespace in state.sockets:
            return  # already connected: a duplicate CONNECT changes nothing
        auth: dict[str, Any] | None = packet.data
        restored: tuple[SavedSession, list[Outgoing]] | None = None
        if auth is not None:
            auth = dict(auth)
            pid, offset = auth.pop("pid", None), auth.pop("offset", None)
            if (
                self.recovery is not None
                and isinstance(pid, str)
                and isinstance(offset, str | None)
            ):
                restored = self.recovery.restore(pid, offset, namespace.name, trio.current_time())
        if restored is not None:
            saved, missed = restored
            if saved.sid in namespace.sockets:
                restored, missed = None, []
        if restored is not None:
            socket = Socket(
                namespace,
                conn,
                sid=saved.sid,
                pid=saved.pid,
                auth=auth,
                recovered=True,
                data=dict(saved.data),
            )
        else:
            missed = []
            socket = Socket(
                namespace,
                conn,
                sid=self.engine.new_id(),
                pid=self.engine.new_id() if self.recovery else None,
                auth=auth,
            )
        for middleware in namespace.middlewares:
            try:
                await middleware(socket, auth)
            except ConnectionRefused as refusal:
                self.counters["refused"] += 1
                self._refuse(conn, namespace.name, refusal.message, refusal.data)
                return
            except Exception:
                log.exception("auth middleware failed")
                self.counters["refused"] += 1
                self._refuse(conn, namespace.name, "Internal server error", None)
                return
        if conn.done:
            return
        namespace.sockets[socket.sid] = socket
        namespace.rooms.add(socket.sid)
        for room in socket._early_rooms:
            namespace.rooms.join(socket.sid, room)
        socket._early_rooms.clear()
        if restored is not None:
            for room in saved.rooms:
                namespace.rooms.join(socket.sid, room)
            self.counters["recovered"] += 1
        state.sockets[namespace.name] = socket
        if self.recovery is not None:
            socket.log_seq_at_connect = (
                saved.since_seq if restored is not None else self.recovery.next_seq
            )
        state.ever_connected = True
        socket.connected = True
        self.counters["connects"] += 1
        reply: dict[str, Any] = {"sid": socket.sid}
        if socket.pid is not None:
            reply["pid"] = socket.pid
        socket._send(Outgoing.message(encode(SioPacket(SioType.CONNECT, namespace.name, reply))))
        for item in missed:
            socket._send(item)
        for handler in namespace.connect_handlers:
            try:
                await handler(socket)
            except Exception:
                self.counters["handler_errors"] += 1
                log.exception("connect handler failed")

    def _refuse(self, conn: EngineConnection, namespace: str, message: str, data: Any) -> None:
        body: dict[str, Any] = {"message": message}
        if data is not None:
            body["data"] = data
        conn.send(Outgoing.message(encode(SioPacket(SioType.CONNECT_ERROR, namespace, body))))

    async def _dispatch(self, socket: Socket, packet: SioPacket) -> None:
        event, *args = packet.data
        handler = socket.namespace.handlers.get(event) if isinstance(event, str) else None
        if handler is None:
            self.counters["unknown_events"] += 1
            return
        try:
            result = await handler(socket, *args)
        except Exception:
            self.counters["handler_errors"] += 1
            log.exception("handler for event %r failed", event)
            return
        if packet.id is not None and socket.connected:
            if result is None:
                ack_args: list[Any] = []
            elif isinstance(result, tuple):
                ack_args = list(result)
            else:
                ack_args = [result]
            try:
                ack = encode(SioPacket(SioType.ACK, socket.namespace.name, ack_args, packet.id))
            except LocalProtocolError:
                self.counters["handler_errors"] += 1
                log.exception("handler for event %r returned an unsendable ack", event)
                return
            socket._send(Outgoing.message(ack))

    async def _remove(self, socket: Socket, reason: str, *, recoverable: bool) -> None:
        if socket.connected:
            self._detach(socket, reason, recoverable=recoverable)
            await self._run_disconnect_handlers(socket, reason)

    async def _run_disconnect_handlers(self, socket: Socket, reason: str) -> None:
        for handler in socket.namespace.disconnect_handlers:
            try:
                await handler(socket, reason)
            except Exception:
                self.counters["handler_errors"] += 1
                log.exception("disconnect handler failed")

    def _detach(self, socket: Socket, reason: str, *, recoverable: bool) -> None:
        """Take the socket out of its namespace and rooms; save it if it may come back."""
        socket.connected = False
        namespace = socket.namespace
        rooms = namespace.rooms.remove(socket.sid)
        namespace.sockets.pop(socket.sid, None)
        state = self._conn_states.get(socket.conn.sid)
        if state is not None:
            state.sockets.pop(namespace.name, None)
        socket._fail_acks(f"disconnected: {reason}")
        if recoverable and self.recovery is not None and socket.pid is not None:
            now = trio.current_time()
            self.recovery.save(
                SavedSession(
                    socket.pid,
                    socket.sid,
                    namespace.name,
                    rooms,
                    socket.data,
                    now + self.recovery.config.window,
                    socket.log_seq_at_connect,
                ),
                now,
            )


@dataclass(frozen=True, slots=True, eq=False)
class _Departed:
    """A socket the client disconnected: its handlers run in order with its events."""

    socket: Socket
    reason: str


@dataclass(eq=False)
class _ConnectionState:
    conn: EngineConnection
    sockets: dict[str, Socket]
    ever_connected: bool = False
    departed: list[_Departed] = field(default_factory=list)
