"""Server side of one Engine.IO v4 session, sans-IO.

Theory of operation
-------------------
A session is born by a handshake (a polling GET, or a WebSocket without
``sid``) and lives until it reaches ``CLOSED``.  The I/O layer owns the
transports and calls in here for everything that has a protocol meaning:

* inbound: :meth:`ServerSession.receive_frame` (WebSocket) and
  :meth:`ServerSession.receive_payload` (polling POST) return events;
* outbound: :meth:`ServerSession.send` appends an :class:`Outgoing` to a
  bounded queue; :meth:`drain_for_polling` / :meth:`drain_for_websocket`
  take what is ready;
* time: :meth:`next_deadline` says when the session wants to be woken and
  :meth:`handle_timeout` does what is due (ping, ping timeout, upgrade timeout);
* upgrade: a WebSocket that arrives with the ``sid`` of a polling session goes
  through :meth:`begin_upgrade`, :meth:`receive_upgrade_frame` and ends in
  ``websocket`` transport or back on polling.

State diagram::

    OPEN ──begin_upgrade──▶ UPGRADING ──"5"──▶ OPEN (websocket)
      │                        └─abort/timeout─▶ OPEN (polling)
      ├──close(graceful)──▶ CLOSING ──close packet delivered──▶ CLOSED
      └──error / timeout / client close──────────────────────▶ CLOSED

The outgoing queue is bounded by packet count and bytes.  When a send would
exceed a bound, :class:`Overflow` decides: ``DROP_OLDEST`` drops the oldest
*droppable* messages (counted in :attr:`dropped`), and closes the session when
nothing droppable is left; ``DISCONNECT`` closes the session at once.  Control
packets (ping, noop, close) are never counted against the bound: at most a
handful exist at any time.
"""

from __future__ import annotations

import enum
import json
from collections import deque
from dataclasses import dataclass
from functools import cached_property
from typing import Final

from essen.errors import LocalProtocolError, RemoteProtocolError

from .engineio import Frame, Packet, PacketType, decode_frame, decode_payload, encode_payload
from .wsframe import OP_BINARY, OP_TEXT
from .wsframe import encode_frame as encode_ws_frame

__all__ = (
    "CloseReason",
    "Closed",
    "EngineConfig",
    "MessageReceived",
    "Outgoing",
    "Overflow",
    "SendOutcome",
    "ServerSession",
    "SessionState",
    "Transport",
)


class Transport(enum.StrEnum):
    POLLING = "polling"
    WEBSOCKET = "websocket"


class SessionState(enum.Enum):
    OPEN = enum.auto()
    UPGRADING = enum.auto()
    CLOSING = enum.auto()
    CLOSED = enum.auto()


class Overflow(enum.StrEnum):
    """What to do when a session's outgoing queue is full."""

    DROP_OLDEST = "drop-oldest"
    DISCONNECT = "disconnect"


class CloseReason(enum.StrEnum):
    # The values are the reasons socket.io reports for the same events.
    TRANSPORT_CLOSE = "transport close"
    TRANSPORT_ERROR = "transport error"
    PING_TIMEOUT = "ping timeout"
    PARSE_ERROR = "parse error"
    PAYLOAD_TOO_LARGE = "payload too large"
    CLIENT_CLOSE = "client close"  # this client closed the session itself
    SERVER_CLOSE = "forced close"
    SLOW_CONSUMER = "slow consumer"
    POLL_OVERLAP = "poll overlap"


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Engine.IO server settings (seconds and bytes)."""

    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    upgrade_timeout: float = 10.0
    #: The largest polling POST body / WebSocket message accepted, in bytes.
    max_payload: int = 1_000_000
    #: At most this many packets in one polling POST.
    max_packets_per_payload: int = 1024
    #: Outgoing queue bounds per session, and the policy when they are hit.
    max_queued_packets: int = 1024
    max_queued_bytes: int = 4 * 1024 * 1024
    overflow: Overflow = Overflow.DROP_OLDEST
    transports: tuple[Transport, ...] = (Transport.POLLING, Transport.WEBSOCKET)

    def handshake(self, sid: str, transport: Transport) -> str:
        """The OPEN packet for a new session on ``transport``."""
        upgrades = (
            ["websocket"]
            if transport is Transport.POLLING and Transport.WEBSOCKET in self.transports
            else []
        )
        body = {
            "sid": sid,
            "upgrades": upgrades,
            "pingInterval": round(self.ping_interval * 1000),
            "pingTimeout": round(self.ping_timeout * 1000),
            "maxPayload": self.max_payload,
        }
        return f"{int(PacketType.OPEN)}{json.dumps(body, separators=(',', ':'))}"


@dataclass(frozen=True)
class Outgoing:
    """Frames to deliver together (a Socket.IO packet and its attachments).

    Built once and shared by every session a broadcast goes to, so the
    encoding cost of a broadcast does not grow with the number of receivers:
    even the WebSocket wire bytes are computed once (:attr:`wire`).
    """

    frames: tuple[Frame, ...]
    droppable: bool = False
    size: int = 0
    #: Items with the same key replace each other while still queued (latest
    #: wins): a slow client gets fewer ``metrics:update``s, never a backlog.
    coalesce: str | None = None

    @cached_property
    def wire(self) -> bytes:
        """The frames as server-to-client WebSocket frames, ready for the socket."""
        return b"".join(
            encode_ws_frame(frame.encode("utf-8"), OP_TEXT)
            if isinstance(frame, str)
            else encode_ws_frame(frame, OP_BINARY)
            for frame in self.frames
        )

    @classmethod
    def message(
        cls,
        payloads: tuple[str | bytes, ...],
        *,
        droppable: bool = False,
        coalesce: str | None = None,
    ) -> Outgoing:
        """Wrap Socket.IO payloads as Engine.IO MESSAGE frames."""
        frames = tuple(p if isinstance(p, bytes) else "4" + p for p in payloads)
        # Bytes, not characters: the queue bounds are in bytes (once per broadcast).
        size = sum(len(f) if isinstance(f, bytes) else len(f.encode("utf-8")) for f in frames)
        return cls(frames, droppable, size, coalesce)


_PING: Final = Outgoing(("2",))
_NOOP: Final = Outgoing(("6",))
_CLOSE: Final = Outgoing(("1",))


class SendOutcome(enum.Enum):
    QUEUED = enum.auto()
    #: Queued, but older droppable messages were dropped to make room.
    QUEUED_DROPPED_OLDER = enum.auto()
    #: This message was dropped (droppable, and the queue is full of undroppables).
    DROPPED = enum.auto()
    #: The session is closed (or just got closed by the overflow policy).
    CLOSED = enum.auto()


@dataclass(frozen=True, slots=True)
class MessageReceived:
    data: str | bytes


@dataclass(frozen=True, slots=True)
class Closed:
    reason: CloseReason
    detail: str = ""


Event = MessageReceived | Closed

_PROBE: Final = "probe"


class ServerSession:
    """One Engine.IO session as the server sees it.  See the module docstring."""

    def __init__(self, sid: str, config: EngineConfig, *, transport: Transport, now: float) -> None:
        if transport not in config.transports:
            raise LocalProtocolError(f"transport {transport} is not enabled")
        self.sid: Final = sid
        self.config: Final = config
        self.transport = transport
        self.state = SessionState.OPEN
        self.close_reason: CloseReason | None = None
        self.close_detail = ""
        #: Messages dropped by the overflow policy, for metrics.
        self.dropped = 0
        #: Messages replaced by a newer one with the same coalescing key.
        self.coalesced = 0
        self._queue: deque[Outgoing] = deque()
        self._queued_packets = 0
        self._queued_bytes = 0
        self._ping_deadline = now + config.ping_interval
        self._awaiting_pong = False
        self._upgrade_deadline: float | None = None
        self._probe_answered = False
        self._closing_deadline: float | None = None
        self._poll_active = False

    # -- inspection ---------------------------------------------------------

    @property
    def open_packet(self) -> str:
        return self.config.handshake(self.sid, self.transport)

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    @property
    def has_outgoing(self) -> bool:
        return bool(self._queue)

    @property
    def poll_ready(self) -> bool:
        """A waiting GET should be answered now.

        True when something is queued, when the session is ending, and during an
        upgrade once the probe is answered: the client must be able to finish
        its last poll (with a noop) to pause polling.
        """
        return (
            bool(self._queue)
            or self.state in (SessionState.CLOSING, SessionState.CLOSED)
            or (self.state is SessionState.UPGRADING and self._probe_answered)
        )

    @property
    def upgrade_deadline(self) -> float | None:
        return self._upgrade_deadline

    def statistics(self) -> dict[str, int]:
        return {
            "queued_packets": self._queued_packets,
            "queued_bytes": self._queued_bytes,
            "dropped": self.dropped,
        }

    # -- inbound ------------------------------------------------------------

    def receive_frame(self, frame: Frame, now: float) -> list[Event]:
        """One WebSocket frame of an established WebSocket session."""
        size = len(frame)
        if isinstance(frame, str) and size * 4 > self.config.max_payload:
            size = len(frame.encode("utf-8", "surrogatepass"))  # characters are not bytes
        if size > self.config.max_payload:
            return [self._close_now(CloseReason.PAYLOAD_TOO_LARGE, f"{size} bytes")]
        try:
            packet = decode_frame(frame)
        except RemoteProtocolError as exc:
            return [self._close_now(CloseReason.PARSE_ERROR, str(exc))]
        return self._receive_packets((packet,), now)

    def receive_payload(self, body: bytes, now: float) -> list[Event]:
        """The body of one polling POST."""
        if len(body) > self.config.max_payload:
            return [self._close_now(CloseReason.PAYLOAD_TOO_LARGE, f"{len(body)} bytes")]
        try:
            packets = decode_payload(
                body.decode("utf-8"), max_packets=self.config.max_packets_per_payload
            )
        except UnicodeDecodeError:
            return [self._close_now(CloseReason.PARSE_ERROR, "payload is not UTF-8")]
        except RemoteProtocolError as exc:
            return [self._close_now(CloseReason.PARSE_ERROR, str(exc))]
        return self._receive_packets(packets, now)

    def _receive_packets(
        self, packets: tuple[Packet, ...] | list[Packet], now: float
    ) -> list[Event]:
        events: list[Event] = []
        if self.state is SessionState.CLOSED:
            return events
        for packet in packets:
            match packet.type:
                case PacketType.MESSAGE:
                    events.append(MessageReceived(packet.data))
                case PacketType.PONG:
                    if self._awaiting_pong:
                        self._awaiting_pong = False
                        self._ping_deadline = now + self.config.ping_interval
                case PacketType.CLOSE:
                    # engine.io reports this as "transport close" (it is what
                    # engine.io-client sends whenever its transport closes, its
                    # own ping timeout included), and socket.io recovers it.
                    events.append(self._close_now(CloseReason.TRANSPORT_CLOSE, "client close"))
                    return events
                case PacketType.PING:
                    # In v4 only the server pings (the probe travels on the
                    # upgrading WebSocket, not here); engine.io closes the
                    # session with "invalid heartbeat direction", and so do we.
                    events.append(
                        self._close_now(CloseReason.PARSE_ERROR, "invalid heartbeat direction")
                    )
                    return events
                case PacketType.OPEN | PacketType.UPGRADE | PacketType.NOOP:
                    events.append(
                        self._close_now(
                            CloseReason.PARSE_ERROR, f"unexpected {packet.type.name} packet"
                        )
                    )
                    return events
        return events

    # -- outbound -----------------------------------------------------------

    def send(self, item: Outgoing) -> SendOutcome:
        """Queue ``item`` for delivery, applying the overflow policy."""
        if self.state in (SessionState.CLOSING, SessionState.CLOSED):
            return SendOutcome.CLOSED
        config = self.config
        if item.coalesce is not None:
            self._coalesce(item.coalesce)
        packets = self._queued_packets + len(item.frames)
        size = self._queued_bytes + item.size
        outcome = SendOutcome.QUEUED
        if packets > config.max_queued_packets or size > config.max_queued_bytes:
            if config.overflow is Overflow.DISCONNECT:
                self._close_now(CloseReason.SLOW_CONSUMER, "outgoing queue full")
                return SendOutcome.CLOSED
            if not self._make_room(len(item.frames), item.size):
                if item.droppable:
                    self.dropped += 1
                    return SendOutcome.DROPPED
                self._close_now(CloseReason.SLOW_CONSUMER, "outgoing queue full of undroppables")
                return SendOutcome.CLOSED
            outcome = SendOutcome.QUEUED_DROPPED_OLDER
        self._queue.append(item)
        self._queued_packets += len(item.frames)
        self._queued_bytes += item.size
        return outcome

    def _coalesce(self, key: str) -> None:
        """Drop a still-queued item with the same coalescing key (counted)."""
        for index, queued in enumerate(self._queue):
            if queued.coalesce == key:
                del self._queue[index]
                self._queued_packets -= len(queued.frames)
                self._queued_bytes -= queued.size
                self.coalesced += 1
                return

    def _make_room(self, packets: int, size: int) -> bool:
        config = self.config
        if packets > config.max_queued_packets or size > config.max_queued_bytes:
            return False  # bigger than the whole bound: evicting others would not help
        kept: deque[Outgoing] = deque()
        queue = self._queue
        while queue and (
            self._queued_packets + packets > config.max_queued_packets
            or self._queued_bytes + size > config.max_queued_bytes
        ):
            oldest = queue.popleft()
            if oldest.droppable:
                self.dropped += 1
                self._queued_packets -= len(oldest.frames)
                self._queued_bytes -= oldest.size
            else:
                kept.append(oldest)
        queue.extendleft(reversed(kept))
        return (
            self._queued_packets + packets <= config.max_queued_packets
            and self._queued_bytes + size <= config.max_queued_bytes
        )

    def _enqueue_control(self, item: Outgoing) -> None:
        self._queue.append(item)

    def _take_all(self) -> list[Frame]:
        frames = [frame for item in self._queue for frame in item.frames]
        self._queue.clear()
        self._queued_packets = 0
        self._queued_bytes = 0
        return frames

    def drain_for_polling(self) -> str:
        """Everything queued, as one polling payload.

        '' when nothing is queued, except during a probed upgrade, when an
        empty poll is answered with a noop.
        """
        if not self._queue:
            if self.state is SessionState.UPGRADING and self._probe_answered:
                return f"{int(PacketType.NOOP)}"
            return ""
        payload = encode_payload(self._take_all())
        if self.state is SessionState.CLOSING:
            self._finish_close()
        return payload

    def drain_for_websocket(self) -> list[Frame]:
        """Everything queued, as WebSocket frames in order."""
        return self._take_all() if self._queue else []

    def drain_items(self) -> list[Outgoing]:
        """Everything queued, as the items it was queued as (see :attr:`Outgoing.wire`)."""
        items = list(self._queue)
        self._queue.clear()
        self._queued_packets = 0
        self._queued_bytes = 0
        return items

    # -- polling requests ---------------------------------------------------

    def start_poll(self) -> bool:
        """A GET arrives; False if one is already waiting (the client misbehaves)."""
        if self._poll_active:
            self._close_now(CloseReason.POLL_OVERLAP, "concurrent polling requests")
            return False
        self._poll_active = True
        return True

    def end_poll(self) -> None:
        self._poll_active = False

    # -- time ---------------------------------------------------------------

    def next_deadline(self) -> float:
        """When :meth:`handle_timeout` should next be called (``inf`` once closed)."""
        if self.state is SessionState.CLOSED:
            return float("inf")
        deadline = self._ping_deadline
        if self._upgrade_deadline is not None:
            deadline = min(deadline, self._upgrade_deadline)
        if self._closing_deadline is not None:
            return self._closing_deadline
        return deadline

    def handle_timeout(self, now: float) -> list[Event]:
        """Do whatever is due at ``now``: ping, time a peer out, or abandon an upgrade."""
        if self.state is SessionState.CLOSED:
            return []
        if self._closing_deadline is not None and now >= self._closing_deadline:
            return [self._finish_close()]
        if self.state is SessionState.CLOSING:
            return []  # nothing may follow the CLOSE packet, not even a ping
        if self._upgrade_deadline is not None and now >= self._upgrade_deadline:
            self.abort_upgrade()
        if now >= self._ping_deadline:
            if self._awaiting_pong:
                return [self._close_now(CloseReason.PING_TIMEOUT)]
            self._enqueue_control(_PING)
            self._awaiting_pong = True
            self._ping_deadline = now + self.config.ping_timeout
        return []

    # -- upgrade ------------------------------------------------------------

    def begin_upgrade(self, now: float) -> None:
        """A WebSocket arrived for this polling session.

        Raises:
            RemoteProtocolError: the session cannot be upgraded now.
        """
        if self.state is not SessionState.OPEN or self.transport is not Transport.POLLING:
            raise RemoteProtocolError("session is not an upgradable polling session")
        if Transport.WEBSOCKET not in self.config.transports:
            raise RemoteProtocolError("websocket transport is disabled")
        self.state = SessionState.UPGRADING
        self._probe_answered = False
        self._upgrade_deadline = now + self.config.upgrade_timeout

    def receive_upgrade_frame(self, frame: Frame) -> Frame | None:
        """A frame on the upgrading WebSocket.

        Returns the probe answer to send on the WebSocket, or ``None`` once the
        upgrade packet completed the upgrade.

        Raises:
            RemoteProtocolError: anything but the probe then the upgrade; the
                caller aborts the upgrade (the session goes on polling).
        """
        if self.state is not SessionState.UPGRADING:
            raise RemoteProtocolError("no upgrade in progress")
        packet = decode_frame(frame)
        if not self._probe_answered:
            if packet.type is PacketType.PING and packet.data == _PROBE:
                self._probe_answered = True
                # Release a waiting poll so the client can pause polling.
                self._enqueue_control(_NOOP)
                return f"{int(PacketType.PONG)}{_PROBE}"
            raise RemoteProtocolError("expected the upgrade probe")
        if packet.type is PacketType.UPGRADE:
            self.state = SessionState.OPEN
            self.transport = Transport.WEBSOCKET
            self._upgrade_deadline = None
            return None
        raise RemoteProtocolError("expected the upgrade packet")

    def abort_upgrade(self) -> None:
        """Give up an upgrade; the session continues on polling."""
        if self.state is SessionState.UPGRADING:
            self.state = SessionState.OPEN
        self._upgrade_deadline = None

    # -- closing ------------------------------------------------------------

    def close(self, now: float, *, reason: CloseReason = CloseReason.SERVER_CLOSE) -> Closed | None:
        """Close from this side, delivering what is queued first.

        Over WebSocket the I/O layer drains the queue and then closes the
        socket (calling :meth:`transport_closed`).  Over polling a CLOSE
        packet is queued for the next GET; if no GET comes within one ping
        interval the session is closed anyway.
        """
        if self.state in (SessionState.CLOSING, SessionState.CLOSED):
            return None
        self.close_reason, self.close_detail = reason, ""
        self._upgrade_deadline = None
        if self.transport is Transport.POLLING:
            self.state = SessionState.CLOSING
            self._enqueue_control(_CLOSE)
            self._closing_deadline = now + self.config.ping_interval
            return None
        self.state = SessionState.CLOSING
        self._closing_deadline = now + self.config.ping_timeout
        return None

    def transport_closed(self, *, error: bool = False) -> Closed:
        """The session's transport went away (WebSocket closed, or failed)."""
        if self.state is SessionState.CLOSING:
            return self._finish_close()
        reason = CloseReason.TRANSPORT_ERROR if error else CloseReason.TRANSPORT_CLOSE
        return self._close_now(reason)

    def _finish_close(self) -> Closed:
        reason = self.close_reason or CloseReason.SERVER_CLOSE
        return self._close_now(reason, self.close_detail)

    def _close_now(self, reason: CloseReason, detail: str = "") -> Closed:
        if self.state is not SessionState.CLOSED:
            self.state = SessionState.CLOSED
            self.close_reason, self.close_detail = reason, detail
            self._queue.clear()
            self._queued_packets = self._queued_bytes = 0
            self._closing_deadline = self._upgrade_deadline = None
        assert self.close_reason is not None
        return Closed(self.close_reason, self.close_detail)
