"""Engine.IO client connection on Trio: handshake, polling, WebSocket, upgrade.

:func:`open_engine` is an async context manager: inside it the connection is
open, its tasks run in its own nursery, and received messages go to
``on_message``.  Leaving the context (or losing the connection, which cancels
the body via ``lost``) closes everything the connection started.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Final
from urllib.parse import urlencode

import trio

from essen.errors import RemoteProtocolError, TransportError
from essen.protocol.engine_client import ClientSession, Handshake, parse_open
from essen.protocol.engine_server import Closed, CloseReason, MessageReceived
from essen.protocol.engineio import PacketType, decode_frame, decode_payload

from ._groups import collapse

if TYPE_CHECKING:
    from .transports import NetworkTransports, WebSocketChannel

__all__ = ("EngineClient", "open_engine")

log = logging.getLogger("essen.realtime.client")

OnMessage = Callable[["EngineClient", str | bytes], Awaitable[None]]
_PROBE_TIMEOUT: Final = 10.0
GOODBYE_SECONDS: Final = 0.2


class EngineClient:
    """An open Engine.IO connection; see :func:`open_engine`."""

    def __init__(
        self,
        network: NetworkTransports,
        base_url: str,
        headers: dict[str, str],
        on_message: OnMessage,
    ) -> None:
        self._network = network
        self._base_url = base_url
        self._headers = headers
        self._on_message = on_message
        self.session: ClientSession | None = None
        self.transport = "polling"
        self.lost: Closed | None = None
        self._wake = trio.lowlevel.ParkingLot()
        self._drained = trio.lowlevel.ParkingLot()
        self._lost_event = trio.Event()
        self._polling_paused = False
        self._polling_idle = trio.Event()
        self._posting_idle = trio.Event()
        #: Set once the session moved to WebSocket (never, on a polling-only session).
        self.upgraded = trio.Event()
        self._timer_scope: trio.CancelScope | None = None

    def _url(self, transport: str, sid: str | None = None) -> str:
        query = {"EIO": "4", "transport": transport}
        if sid is not None:
            query["sid"] = sid
        return f"{self._base_url}?{urlencode(query)}"

    # -- sending ------------------------------------------------------------

    def send(self, payloads: tuple[str | bytes, ...]) -> None:
        """Queue Socket.IO payloads; the writer sends them in order."""
        if self.session is None or self.lost is not None:
            raise TransportError("engine.io connection is not open")
        self.session.send_message(payloads)
        self._wake.unpark_all()

    def _mark_lost(self, closed: Closed) -> None:
        if self.lost is None:
            self.lost = closed
            self._lost_event.set()
            self._wake.unpark_all()

    async def _deliver(self, events: list[MessageReceived | Closed]) -> None:
        for event in events:
            if isinstance(event, Closed):
                self._mark_lost(event)
                return
            await self._on_message(self, event.data)
        if self.session is not None and self.session.has_outgoing:
            self._wake.unpark_all()
        if self._timer_scope is not None and self.session is not None:
            self._timer_scope.deadline = self.session.next_deadline()

    async def _timer(self) -> None:
        session = self.session
        assert session is not None
        while self.lost is None:
            with trio.CancelScope(deadline=session.next_deadline()) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None
            await self._deliver(list(session.handle_timeout(trio.current_time())))

    # -- polling ------------------------------------------------------------

    async def _handshake_polling(self) -> Handshake:
        status, body = await self._network.http.request(
            "GET", self._url("polling"), content=None, headers=self._headers
        )
        if status != 200:
            excerpt = body[:120].decode("utf-8", "replace").replace("\n", " ")
            raise TransportError(f"handshake refused: HTTP {status} {excerpt}")
        try:
            packets = decode_payload(body.decode("utf-8"), max_packets=16)
            return parse_open(packets[0])
        except (RemoteProtocolError, UnicodeDecodeError) as exc:
            raise TransportError(f"bad handshake: {exc}") from exc

    async def _poll_loop(self) -> None:
        session = self.session
        assert session is not None
        url = self._url("polling", session.handshake.sid)
        try:
            while self.lost is None and not self._polling_paused:
                status, body = await self._network.http.request(
                    "GET", url, content=None, headers=self._headers
                )
                if status != 200:
                    raise TransportError(f"poll failed: HTTP {status}")
                await self._deliver(
                    session.receive_payload(body.decode("utf-8"), trio.current_time())
                )
        finally:
            self._polling_idle.set()

    async def _post_loop(self) -> None:
        session = self.session
        assert session is not None
        url = self._url("polling", session.handshake.sid)
        try:
            await self._post_frames(session, url)
        finally:
            self._posting_idle.set()

    async def _post_frames(self, session: ClientSession, url: str) -> None:
        # Stops when an upgrade pauses polling: a POST that reached the server
        # after the upgrade would be refused (the session is on WebSocket then).
        while not self._polling_paused and self.lost is None:
            payload = session.drain_for_polling()
            if not payload:
                self._drained.unpark_all()
                await self._wake.park()
                continue
            status, _ = await self._network.http.request(
                "POST",
                url,
                content=payload.encode("utf-8"),
                headers={**self._headers, "content-type": "text/plain;charset=UTF-8"},
            )
            if status != 200:
                raise TransportError(f"post failed: HTTP {status}")

    # -- websocket ----------------------------------------------------------

    async def _ws_reader(self, ws: WebSocketChannel) -> None:
        session = self.session
        assert session is not None
        while self.lost is None:
            frame = await ws.receive()
            await self._deliver(session.receive_frame(frame, trio.current_time()))

    async def _ws_writer(self, ws: WebSocketChannel) -> None:
        session = self.session
        assert session is not None
        while True:
            frames = session.drain_for_websocket()
            if frames:
                for frame in frames:
                    await ws.send(frame)
                # More may have been queued while we were sending (and its wake-up
                # found nobody parked): look again before parking.
                continue
            self._drained.unpark_all()
            if self.lost is not None:
                return
            await self._wake.park()

    async def _run_websocket(self, ws: WebSocketChannel) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._ws_reader, ws)
            nursery.start_soon(self._ws_writer, ws)

    async def _upgrade(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Probe a WebSocket; if it answers, move the session onto it."""
        session = self.session
        assert session is not None
        try:
            async with self._network.websocket.connect(
                self._url("websocket", session.handshake.sid), self._headers
            ) as ws:
                with trio.fail_after(_PROBE_TIMEOUT):
                    await ws.send("2probe")
                    answer = decode_frame(await ws.receive())
                if answer.type is not PacketType.PONG or answer.data != "probe":
                    raise TransportError("upgrade probe was not answered")
                # Pause polling: let the in-flight GET return (the server answers it
                # with a noop), then switch.  The POST writer stops on its own.
                self._polling_paused = True
                self._wake.unpark_all()
                with trio.fail_after(_PROBE_TIMEOUT):
                    await self._polling_idle.wait()
                    await self._posting_idle.wait()
                self.transport = "websocket"
                self._wake.unpark_all()
                await ws.send("5")
                self.upgraded.set()
                log.debug("upgraded %s to websocket", session.handshake.sid)
                task_status.started()
                await self._run_websocket(ws)
        except (TransportError, trio.TooSlowError) as exc:
            if self.transport == "websocket":
                raise TransportError(f"websocket lost: {exc}") from exc
            log.debug("upgrade failed, staying on polling: %s", exc)
            if self._polling_paused:
                raise TransportError("upgrade failed after polling was paused") from exc

    # -- lifecycle ----------------------------------------------------------

    async def _run(self, transports: tuple[str, ...], task_status: trio.TaskStatus[None]) -> None:
        if transports[0] == "websocket":
            async with self._network.websocket.connect(self._url("websocket"), self._headers) as ws:
                try:
                    handshake = parse_open(decode_frame(await ws.receive()))
                except RemoteProtocolError as exc:
                    raise TransportError(f"bad handshake: {exc}") from exc
                self.session = ClientSession(handshake, trio.current_time())
                self.transport = "websocket"
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._timer)
                    task_status.started()
                    await self._run_websocket(ws)
            return
        handshake = await self._handshake_polling()
        self.session = ClientSession(handshake, trio.current_time())
        self.transport = "polling"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._timer)
            nursery.start_soon(self._poll_loop)
            nursery.start_soon(self._post_loop)
            task_status.started()
            if "websocket" in transports and "websocket" in handshake.upgrades:
                nursery.start_soon(self._upgrade)

    async def close(self) -> None:
        """Say goodbye to the server (best effort, briefly) before the context closes.

        What is queued (a Socket.IO DISCONNECT, say) goes first, then the
        Engine.IO CLOSE, all through the transport's own writer so nothing
        overlaps; the wait is bounded, the server notices a dropped
        transport anyway.
        """
        session = self.session
        if session is None or self.lost is not None:
            return
        with trio.move_on_after(GOODBYE_SECONDS):
            # As engine.io-client does: what is queued is sent first, and the
            # CLOSE only once that has drained (a server may act on a CLOSE
            # before the messages that shared its payload).
            await self._flush(session)
            session.close()
            await self._flush(session)

    async def _flush(self, session: ClientSession) -> None:
        while session.has_outgoing and self.lost is None:
            self._wake.unpark_all()
            await self._drained.park()


@contextlib.asynccontextmanager
async def open_engine(
    network: NetworkTransports,
    base_url: str,
    *,
    transports: tuple[str, ...],
    headers: dict[str, str],
    on_message: OnMessage,
) -> AsyncIterator[EngineClient]:
    """Open an Engine.IO connection for the duration of the context.

    The body is cancelled when the connection is lost, and :class:`TransportError`
    is raised from the ``async with`` saying why.

    Raises:
        TransportError: the handshake failed, or the connection was lost.
    """
    engine = EngineClient(network, base_url, headers, on_message)
    failure: BaseException | None = None
    async with trio.open_nursery() as nursery:

        async def run(task_status: trio.TaskStatus[None]) -> None:
            nonlocal failure
            try:
                try:
                    await engine._run(transports, task_status)
                except BaseExceptionGroup as group:
                    # Any of the connection's tasks may fail first: one cause is enough.
                    cause = collapse(group, TransportError, RemoteProtocolError)
                    if cause is None:
                        raise
                    raise cause from None
            except (TransportError, RemoteProtocolError) as exc:
                if engine.session is None:
                    raise  # the handshake failed: nursery.start() raises it
                failure = exc
                engine._mark_lost(Closed(CloseReason.TRANSPORT_ERROR, str(exc)))
            finally:
                engine._mark_lost(Closed(CloseReason.TRANSPORT_CLOSE, "transport ended"))

        await nursery.start(run)

        async def watch() -> None:
            await engine._lost_event.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        lost: Closed | None = None
        try:
            yield engine
        finally:
            lost = engine.lost
            # No goodbye when cancelled (a server DISCONNECT, a shutdown): the
            # writer is being cancelled too, and waiting for it would only delay.
            if lost is None and trio.current_effective_deadline() != -math.inf:
                # Shielded but bounded: a goodbye is worth a second, not a hang.
                with trio.CancelScope(shield=True):
                    await engine.close()
            nursery.cancel_scope.cancel()
    if lost is not None:
        raise TransportError(
            f"connection lost: {lost.reason.value} {lost.detail}".strip()
        ) from failure
