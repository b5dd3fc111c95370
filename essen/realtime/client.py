"""Socket.IO v5 client on Trio, with reconnection driven by structured cancellation.

    async with trio.open_nursery() as nursery:
        client = SocketIOClient("https://admin.example", ClientOptions(
            path="/api/socket.io/", auth={"service": "bot", "secret": s, "instance": "bot-1"}))

        @client.on("metrics:request")
        async def on_request() -> None: ...

        await nursery.start(client.run)      # returns at once; connects in the background
        await client.wait_connected()
        client.emit("metrics:update", snapshot)          # buffered while disconnected
        reply = await client.call("ping")                # wrap in trio.fail_after
        await client.aclose()

One connection lives in one cancel scope (``open_engine``'s nursery): losing it
cancels exactly its tasks, and :meth:`SocketIOClient.run` sleeps the backoff
delay and enters a new one.  While disconnected, ``emit`` appends to a bounded
buffer that is flushed in order on reconnect.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio

from essen.errors import (
    ConnectionRefused,
    DisconnectedError,
    EssenError,
    RemoteProtocolError,
    TransportError,
)
from essen.protocol.socketio import Decoder, SioPacket, SioType, encode

from ._client_engine import EngineClient, open_engine
from ._groups import collapse
from .backoff import Backoff, BackoffPolicy
from .transports import NetworkTransports, real_network

__all__ = ("BufferOverflow", "ClientOptions", "ClientState", "ClientStatus", "SocketIOClient")

log = logging.getLogger("essen.realtime.client")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
Auth = dict[str, Any] | Callable[[], Awaitable[dict[str, Any]]] | None


class ClientState(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class BufferOverflow(enum.Enum):
    """What ``emit`` does when the disconnected buffer is full."""

    DROP_OLDEST = "drop-oldest"
    DROP_NEWEST = "drop-newest"


@dataclass(frozen=True, slots=True)
class ClientStatus:
    """What the client is doing, for logs and health.

    ``retry_in`` is set while RECONNECTING (seconds until the next attempt);
    ``reason`` says why the last connection ended or failed.
    """

    state: ClientState
    attempt: int = 0
    retry_in: float | None = None
    reason: str | None = None
    transport: str | None = None
    recovered: bool = False


@dataclass(frozen=True, slots=True)
class ClientOptions:
    path: str = "/socket.io/"
    #: ("polling", "websocket") starts on polling and upgrades; ("websocket",) is WebSocket-only.
    transports: tuple[str, ...] = ("polling", "websocket")
    namespace: str = "/"
    #: The CONNECT payload, or an async function returning it (called on every attempt).
    auth: Auth = None
    headers: dict[str, str] = field(default_factory=dict)
    reconnection: bool = True
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    #: Give up after this many failed attempts in a row (None: never).
    max_attempts: int | None = None
    #: Keep retrying when the server refuses the CONNECT (socket.io-client stops).
    retry_refused: bool = True
    #: Seconds to wait for the server's answer to CONNECT.
    connect_timeout: float = 20.0
    #: Events kept while disconnected, and what happens when that is full.
    buffer_limit: int = 1000
    buffer_overflow: BufferOverflow = BufferOverflow.DROP_OLDEST
    #: Incoming events waiting for their handler (back-pressure beyond).
    inbox_size: int = 256

    def __post_init__(self) -> None:
        if not self.transports or any(t not in ("polling", "websocket") for t in self.transports):
            raise ValueError(f"transports must be polling and/or websocket, not {self.transports}")


class _Call:
    __slots__ = ("args", "done", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.args: list[Any] = []
        self.error: str | None = None


class SocketIOClient:
    """A Socket.IO client for one namespace; see the module docstring."""

    def __init__(
        self,
        url: str,
        options: ClientOptions | None = None,
        *,
        network: NetworkTransports | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.options = options or ClientOptions()
        self._base_url = url.rstrip("/") + "/" + self.options.path.strip("/") + "/"
        self._network = network
        self._backoff = Backoff(self.options.backoff, rng or random.Random())
        self._handlers: dict[str, Callable[..., Awaitable[Any]]] = {}
        self._arity: dict[str, int | None] = {}
        self._status = ClientStatus(ClientState.IDLE)
        self._status_changed = trio.lowlevel.ParkingLot()
        self._status_listeners: list[Callable[[ClientStatus], None]] = []
        self._buffer: deque[tuple[str | bytes, ...]] = deque()
        self.buffer_dropped = 0
        self.sid: str | None = None
        self._pid: str | None = None
        self._last_offset: str | None = None
        self._engine: EngineClient | None = None
        self._calls: dict[int, _Call] = {}
        self._next_ack_id = 0
        self._run_scope: trio.CancelScope | None = None
        self._stopped = trio.Event()
        self._events_in, self._events_out = trio.open_memory_channel[
            tuple[SioPacket, EngineClient]
        ](self.options.inbox_size)
        self._closing = False

    # -- handlers and status ------------------------------------------------

    def on(self, event: str) -> Callable[[F], F]:
        """Register ``async def handler(*args)``; its return value answers an ack."""

        def register(handler: F) -> F:
            self._handlers[event] = handler
            self._arity[event] = _positional_arity(handler)
            return handler

        return register

    def on_status(self, listener: Callable[[ClientStatus], None]) -> None:
        """Call ``listener`` on every status change (used for the guide's log lines)."""
        self._status_listeners.append(listener)

    @property
    def status(self) -> ClientStatus:
        return self._status

    @property
    def closing(self) -> bool:
        """True once :meth:`aclose` was called."""
        return self._closing

    @property
    def connected(self) -> bool:
        return self._status.state is ClientState.CONNECTED

    def _set_status(self, status: ClientStatus) -> None:
        self._status = status
        self._status_changed.unpark_all()
        for listener in self._status_listeners:
            listener(status)

    async def wait_status(self, predicate: Callable[[ClientStatus], bool]) -> ClientStatus:
        while not predicate(self._status):
            await self._status_changed.park()
        return self._status

    async def wait_connected(self) -> None:
        """Until connected; raises DisconnectedError if the client closes first."""
        status = await self.wait_status(
            lambda s: s.state in (ClientState.CONNECTED, ClientState.CLOSED)
        )
        if status.state is ClientState.CLOSED:
            raise DisconnectedError(f"client closed: {status.reason}")

    # -- sending ------------------------------------------------------------

    def emit(self, event: str, *args: Any) -> None:
        """Send an event now, or buffer it while disconnected (bounded; see options)."""
        payloads = encode(SioPacket(SioType.EVENT, self.options.namespace, [event, *args]))
        if self._engine is not None and self.connected:
            self._engine.send(payloads)
            return
        if len(self._buffer) >= self.options.buffer_limit:
            self.buffer_dropped += 1
            if self.options.buffer_overflow is BufferOverflow.DROP_NEWEST:
                return
            self._buffer.popleft()
        self._buffer.append(payloads)

    async def call(self, event: str, *args: Any) -> list[Any]:
        """Emit with an ack and wait for it; returns the ack's arguments.

        Wrap in ``trio.fail_after`` to bound the wait.

        Raises:
            DisconnectedError: not connected, or the connection was lost first.
        """
        engine = self._engine
        if engine is None or not self.connected:
            raise DisconnectedError("not connected")
        ack_id = self._next_ack_id
        self._next_ack_id += 1
        call = _Call()
        self._calls[ack_id] = call
        try:
            engine.send(
                encode(SioPacket(SioType.EVENT, self.options.namespace, [event, *args], ack_id))
            )
            await call.done.wait()
        finally:
            self._calls.pop(ack_id, None)
        if call.error is not None:
            raise DisconnectedError(call.error)
        return call.args

    # -- lifecycle ----------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, and reconnect with backoff, until :meth:`aclose` or cancellation.

        Raises:
            ConnectionRefused: the server refused the CONNECT and
                ``retry_refused`` is off.
            DisconnectedError: ``max_attempts`` failed attempts in a row.
        """
        failure: EssenError | None = None
        self._stopped = trio.Event()
        try:
            with trio.CancelScope() as self._run_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._run_handlers)
                    task_status.started()
                    try:
                        if self._network is None:
                            async with real_network() as network:
                                await self._reconnect_loop(network)
                        else:
                            await self._reconnect_loop(self._network)
                    except (ConnectionRefused, DisconnectedError) as exc:
                        failure = exc  # raised below, not wrapped in the nursery's group
                    nursery.cancel_scope.cancel()
        finally:
            self._run_scope = None
            self._stopped.set()
            self._set_status(ClientStatus(ClientState.CLOSED, reason=self._status.reason))
        if failure is not None:
            raise failure

    async def aclose(self) -> None:
        """Disconnect, stop reconnecting, and return once :meth:`run` has finished.

        Buffered events are discarded.  No task of the client outlives this call.
        """
        self._closing = True
        engine = self._engine
        if engine is not None and self.connected:
            # The DISCONNECT and the Engine.IO CLOSE go out through the live
            # connection's writer before its tasks are cancelled.
            engine.send(encode(SioPacket(SioType.DISCONNECT, self.options.namespace)))
            await engine.close()
        if self._run_scope is not None:
            self._run_scope.cancel()
            await self._stopped.wait()
        else:
            await trio.lowlevel.checkpoint()

    async def _reconnect_loop(self, network: NetworkTransports) -> None:
        failures = 0
        while not self._closing_requested():
            first = failures == 0 and self.sid is None
            state = ClientState.CONNECTING if first else ClientState.RECONNECTING
            self._set_status(ClientStatus(state, attempt=failures + 1, reason=self._status.reason))
            try:
                await self._connect_collapsed(network)
                reason = "io client disconnect"
            except ConnectionRefused as refusal:
                reason = f"refused: {refusal.message}"
                if not self.options.retry_refused:
                    self._set_status(ClientStatus(ClientState.CLOSED, reason=reason))
                    raise
            except _ServerDisconnect:
                self._set_status(ClientStatus(ClientState.CLOSED, reason="io server disconnect"))
                return
            except (TransportError, RemoteProtocolError) as exc:
                reason = str(exc)
            if self._closing_requested():
                return
            if self._take_was_connected():
                # The connection that just ended had worked: start the backoff afresh.
                failures = 0
                self._backoff.reset()
            failures += 1
            if not self.options.reconnection:
                self._set_status(ClientStatus(ClientState.CLOSED, reason=reason))
                return
            if self.options.max_attempts is not None and failures > self.options.max_attempts:
                self._set_status(ClientStatus(ClientState.CLOSED, reason=reason))
                raise DisconnectedError(f"gave up after {failures - 1} attempts: {reason}")
            delay = self._backoff.next()
            self._set_status(
                ClientStatus(
                    ClientState.RECONNECTING, attempt=failures, retry_in=delay, reason=reason
                )
            )
            await trio.sleep(delay)

    _was_connected = False

    async def _connect_collapsed(self, network: NetworkTransports) -> None:
        """One connection; a group of failures of one connection becomes its main cause."""
        try:
            await self._connect_once(network)
        except BaseExceptionGroup as group:
            for kind in (ConnectionRefused, _ServerDisconnect):
                specific = collapse(group, kind, TransportError, RemoteProtocolError)
                if isinstance(specific, kind):
                    raise specific from None
            cause = collapse(group, TransportError, RemoteProtocolError)
            if cause is None:
                raise
            raise cause from None

    def _closing_requested(self) -> bool:
        # A method, not the attribute: aclose() flips it while we await.
        return self._closing

    def _take_was_connected(self) -> bool:
        was, self._was_connected = self._was_connected, False
        return was

    async def _connect_once(self, network: NetworkTransports) -> None:
        """One connection, from handshake to loss.  Returns only on a clean close."""
        decoder = Decoder()
        connected = trio.Event()
        outcome: list[BaseException] = []
        send_events = self._events_in
        namespace = self.options.namespace

        async def on_message(engine: EngineClient, data: str | bytes) -> None:
            packet = decoder.feed(data)
            if packet is None or packet.namespace != namespace:
                return
            match packet.type:
                case SioType.CONNECT:
                    body = packet.data if isinstance(packet.data, dict) else {}
                    self.sid = str(body.get("sid", ""))
                    pid = body.get("pid")
                    recovered = pid is not None and pid == self._pid
                    self._pid = pid if isinstance(pid, str) else None
                    if not recovered:
                        self._last_offset = None
                    self._recovered = recovered
                    connected.set()
                case SioType.CONNECT_ERROR:
                    body = packet.data
                    if isinstance(body, dict):
                        refusal = ConnectionRefused(str(body.get("message")), body.get("data"))
                    else:
                        refusal = ConnectionRefused(str(body))
                    outcome.append(refusal)
                    connected.set()
                case SioType.EVENT:
                    args = packet.data
                    if self._pid is not None and len(args) > 1 and isinstance(args[-1], str):
                        # A recoverable broadcast: its last argument is the offset to
                        # resume from (socket.io 4.6 connection state recovery).
                        self._last_offset = args[-1]
                    # The handler answers on the connection the event came on,
                    # even if it came before the CONNECT answer (python-socketio
                    # calls clients from its connect handler).
                    await send_events.send((packet, engine))
                case SioType.ACK:
                    call = self._calls.get(packet.id) if packet.id is not None else None
                    if call is not None:
                        call.args = packet.data
                        call.done.set()
                case SioType.DISCONNECT:
                    outcome.append(_ServerDisconnect())
                    if self._run_scope is not None:
                        engine_scope.cancel()
                case _:
                    raise RemoteProtocolError(f"unexpected {packet.type.name} from server")

        with trio.CancelScope() as engine_scope:
            try:
                async with open_engine(
                    network,
                    self._base_url,
                    transports=self.options.transports,
                    headers=dict(self.options.headers),
                    on_message=on_message,
                ) as engine:
                    auth = await self._auth()
                    if self._pid is not None:
                        # Like socket.io-client: no offset yet means none is sent.
                        resume = {"pid": self._pid}
                        if self._last_offset is not None:
                            resume["offset"] = self._last_offset
                        auth = {**(auth or {}), **resume}
                    engine.send(encode(SioPacket(SioType.CONNECT, namespace, auth)))
                    with trio.move_on_after(self.options.connect_timeout) as timeout:
                        await connected.wait()
                    if timeout.cancelled_caught:
                        raise TransportError("timed out waiting for the CONNECT answer")
                    if outcome:
                        raise outcome[0]
                    self._engine = engine
                    self._was_connected = True
                    # What was buffered while disconnected goes first, before
                    # anything a status listener sends on "connected".
                    while self._buffer:
                        engine.send(self._buffer.popleft())
                    self._set_status(
                        ClientStatus(
                            ClientState.CONNECTED,
                            transport=engine.transport,
                            recovered=self._recovered,
                        )
                    )
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._watch_transport, engine)
                        await trio.sleep_forever()
            finally:
                self._engine = None
                for call in self._calls.values():
                    call.error = "connection lost"
                    call.done.set()
        if outcome:
            raise outcome[0]

    _recovered = False

    async def _watch_transport(self, engine: EngineClient) -> None:
        """Report the upgrade to WebSocket in the status."""
        await engine.upgraded.wait()
        if self.connected and self._status.transport != "websocket":
            self._set_status(
                ClientStatus(
                    ClientState.CONNECTED, transport="websocket", recovered=self._status.recovered
                )
            )

    async def _auth(self) -> dict[str, Any] | None:
        auth = self.options.auth
        if callable(auth):
            return await auth()
        return dict(auth) if auth is not None else None

    async def _run_handlers(self) -> None:
        """Run event handlers in arrival order, for the client's whole life.

        It outlives each connection, so an event that arrived is handled even
        when the connection drops right after.
        """
        async for packet, engine in self._events_out:
            event, *args = packet.data
            handler = self._handlers.get(event)
            if handler is None:
                continue
            arity = self._arity.get(event)
            if arity is not None and len(args) > arity:
                args = args[:arity]
            try:
                result = await handler(*args)
            except Exception:
                log.exception("handler for %r failed", event)
                continue
            if packet.id is not None and engine.lost is None:
                ack = (
                    []
                    if result is None
                    else list(result)
                    if isinstance(result, tuple)
                    else [result]
                )
                with contextlib.suppress(TransportError):
                    engine.send(encode(SioPacket(SioType.ACK, packet.namespace, ack, packet.id)))


class _ServerDisconnect(Exception):
    """The server sent DISCONNECT: socket.io-client does not reconnect after that."""


def _positional_arity(handler: Callable[..., Any]) -> int | None:
    """How many positional arguments ``handler`` takes (None: any number)."""
    params = inspect.signature(handler).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return None
    return sum(
        1
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    )
