"""Client side of one Engine.IO v4 session, sans-IO.

The client learns the session's parameters from the OPEN packet, answers
every PING with a PONG, and declares the connection lost when no ping arrives
within ``pingInterval + pingTimeout`` (the server pings every interval, so
silence that long means it, or the path to it, is gone).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Final

from essen.errors import RemoteProtocolError

from .engine_server import Closed, CloseReason, Event, MessageReceived
from .engineio import Frame, Packet, PacketType, decode_frame, decode_payload, encode_payload

__all__ = ("ClientSession", "Handshake", "parse_open")


@dataclass(frozen=True, slots=True)
class Handshake:
    sid: str
    upgrades: tuple[str, ...]
    ping_interval: float
    ping_timeout: float
    max_payload: int


def parse_open(packet: Packet) -> Handshake:
    """Read the server's OPEN packet.

    Raises:
        RemoteProtocolError: not an OPEN packet, or its JSON is not the v4 shape.
    """
    if packet.type is not PacketType.OPEN or not isinstance(packet.data, str):
        raise RemoteProtocolError(f"expected OPEN, got {packet.type.name}")
    try:
        body = json.loads(packet.data)
        sid = body["sid"]
        upgrades = tuple(body.get("upgrades", ()))
        interval = body["pingInterval"] / 1000
        timeout = body["pingTimeout"] / 1000
        max_payload = int(body.get("maxPayload", 1_000_000))
    except (ValueError, KeyError, TypeError) as exc:
        raise RemoteProtocolError(f"malformed OPEN packet: {exc}") from exc
    if not isinstance(sid, str) or not sid:
        raise RemoteProtocolError("OPEN packet without a session id")
    return Handshake(sid, tuple(str(u) for u in upgrades), interval, timeout, max_payload)


_PONG: Final = "3"


class ClientSession:
    """One Engine.IO session as the client sees it."""

    def __init__(self, handshake: Handshake, now: float) -> None:
        self.handshake: Final = handshake
        self.closed: Closed | None = None
        self._outgoing: deque[Frame] = deque()
        self._deadline = now + handshake.ping_interval + handshake.ping_timeout

    @property
    def has_outgoing(self) -> bool:
        return bool(self._outgoing)

    def next_deadline(self) -> float:
        return float("inf") if self.closed else self._deadline

    def handle_timeout(self, now: float) -> list[Event]:
        if self.closed is None and now >= self._deadline:
            return [self._close(CloseReason.PING_TIMEOUT)]
        return []

    def receive_frame(self, frame: Frame, now: float) -> list[Event]:
        try:
            packet = decode_frame(frame)
        except RemoteProtocolError as exc:
            return [self._close(CloseReason.PARSE_ERROR, str(exc))]
        return self._receive((packet,), now)

    def receive_payload(self, body: str, now: float) -> list[Event]:
        try:
            packets = decode_payload(body, max_packets=1_000_000)
        except RemoteProtocolError as exc:
            return [self._close(CloseReason.PARSE_ERROR, str(exc))]
        return self._receive(packets, now)

    def _receive(self, packets: tuple[Packet, ...] | list[Packet], now: float) -> list[Event]:
        events: list[Event] = []
        for packet in packets:
            if self.closed is not None:
                break
            match packet.type:
                case PacketType.PING:
                    self._deadline = (
                        now + self.handshake.ping_interval + self.handshake.ping_timeout
                    )
                    self._outgoing.append(_PONG)
                case PacketType.MESSAGE:
                    events.append(MessageReceived(packet.data))
                case PacketType.CLOSE:
                    events.append(self._close(CloseReason.TRANSPORT_CLOSE, "server closed"))
                case PacketType.NOOP | PacketType.PONG:
                    pass
                case PacketType.OPEN | PacketType.UPGRADE:
                    events.append(
                        self._close(CloseReason.PARSE_ERROR, f"unexpected {packet.type.name}")
                    )
        return events

    def send_message(self, payloads: tuple[str | bytes, ...]) -> None:
        """Queue Socket.IO payloads as Engine.IO MESSAGE frames."""
        self._outgoing.extend(p if isinstance(p, bytes) else "4" + p for p in payloads)

    def close(self) -> None:
        """Close from this side: a CLOSE packet is the last thing sent."""
        if self.closed is None:
            self._outgoing.append("1")
            self.closed = Closed(CloseReason.CLIENT_CLOSE)

    def drain_for_polling(self) -> str:
        frames = list(self._outgoing)
        self._outgoing.clear()
        return encode_payload(frames) if frames else ""

    def drain_for_websocket(self) -> list[Frame]:
        frames = list(self._outgoing)
        self._outgoing.clear()
        return frames

    def _close(self, reason: CloseReason, detail: str = "") -> Closed:
        if self.closed is None:
            self.closed = Closed(reason, detail)
        return self.closed
