"""A server-side Socket.IO socket: one client connected to one namespace."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from essen.errors import DisconnectedError, LocalProtocolError
from essen.protocol.engine_server import Outgoing, SendOutcome
from essen.protocol.socketio import SioPacket, SioType, encode

if TYPE_CHECKING:
    from ._engine import EngineConnection, RequestInfo
    from .server import Namespace

__all__ = ("Socket",)

log = logging.getLogger("essen.realtime")

MAX_PENDING_ACKS = 1024


class _AckWaiter:
    __slots__ = ("args", "done", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.args: list[Any] = []
        self.error: str | None = None


class Socket:
    """One client's connection to one namespace.

    ``emit`` never blocks: it queues on the client's bounded outgoing queue and
    the server's overflow policy decides what happens when that is full.
    """

    def __init__(
        self,
        namespace: Namespace,
        conn: EngineConnection,
        *,
        sid: str,
        pid: str | None,
        auth: dict[str, Any] | None,
        recovered: bool = False,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.namespace = namespace
        self.conn = conn
        self.sid = sid
        self.pid = pid
        self.auth = auth
        self.recovered = recovered
        #: Application state attached to this socket (kept across recovery).
        self.data: dict[str, Any] = data if data is not None else {}
        self.connected = False
        #: Rooms joined before the socket was registered (by auth middleware).
        self._early_rooms: set[str] = set()
        #: The recovery log's sequence number when this socket connected.
        self.log_seq_at_connect = 0
        self._next_ack_id = 0
        self._pending_acks: dict[int, _AckWaiter] = {}

    def __repr__(self) -> str:
        return f"<Socket {self.sid} {self.namespace.name}>"

    @property
    def handshake(self) -> RequestInfo:
        return self.conn.request

    @property
    def rooms(self) -> frozenset[str]:
        if not self.connected:
            return frozenset(self._early_rooms)
        return self.namespace.rooms.rooms_of(self.sid)

    def join(self, room: str) -> None:
        """Join ``room`` (also from auth middleware, before the socket is connected)."""
        if self.connected:
            self.namespace.rooms.join(self.sid, room)
        else:
            self._early_rooms.add(room)

    def leave(self, room: str) -> None:
        if not self.connected:
            self._early_rooms.discard(room)
        elif room != self.sid:
            self.namespace.rooms.leave(self.sid, room)

    def emit(self, event: str, *args: Any, volatile: bool = False) -> bool:
        """Send an event to this client; False if it was dropped or the client is gone.

        It goes through the namespace's broadcast to the socket's own room, as
        socket.io does: with recovery on it carries an offset and is replayed
        to the client if it drops before receiving it.
        """
        if not self.connected:
            return False
        return self.namespace.emit(event, *args, to=self.sid, volatile=volatile) > 0

    async def call(self, event: str, *args: Any) -> list[Any]:
        """Send an event and wait for the client's acknowledgement; returns its arguments.

        Wrap in ``trio.fail_after`` to bound the wait; a cancelled call forgets
        its ack id, so a late answer is ignored.

        Raises:
            DisconnectedError: the client went away before answering.
        """
        if not self.connected:
            raise DisconnectedError(f"socket {self.sid} is not connected")
        if len(self._pending_acks) >= MAX_PENDING_ACKS:
            raise LocalProtocolError(f"more than {MAX_PENDING_ACKS} calls awaiting acks")
        ack_id = self._next_ack_id
        self._next_ack_id += 1
        waiter = _AckWaiter()
        self._pending_acks[ack_id] = waiter
        try:
            packet = SioPacket(SioType.EVENT, self.namespace.name, [event, *args], ack_id)
            if not self._send(Outgoing.message(encode(packet))):
                raise DisconnectedError(f"socket {self.sid} could not be written to")
            await waiter.done.wait()
        finally:
            self._pending_acks.pop(ack_id, None)
        if waiter.error is not None:
            raise DisconnectedError(waiter.error)
        return waiter.args

    async def disconnect(self, *, close_connection: bool = False) -> None:
        """Disconnect this client from the namespace (it will not reconnect by itself)."""
        if not self.connected:
            return
        self._send(Outgoing.message(encode(SioPacket(SioType.DISCONNECT, self.namespace.name))))
        await self.namespace.server._remove(self, "server namespace disconnect", recoverable=False)
        if close_connection:
            self.conn.close()

    # -- used by the server -------------------------------------------------

    def _send(self, item: Outgoing) -> bool:
        outcome = self.conn.send(item)
        return outcome in (SendOutcome.QUEUED, SendOutcome.QUEUED_DROPPED_OLDER)

    def _resolve_ack(self, ack_id: int, args: list[Any]) -> None:
        waiter = self._pending_acks.pop(ack_id, None)
        if waiter is None:
            log.debug("ack %s for %s matches no call (late or unknown)", ack_id, self.sid)
            return
        waiter.args = args
        waiter.done.set()

    def _fail_acks(self, reason: str) -> None:
        for waiter in self._pending_acks.values():
            waiter.error = reason
            waiter.done.set()
        self._pending_acks.clear()
