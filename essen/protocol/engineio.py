"""Engine.IO v4 packets: the wire codec for WebSocket frames and polling payloads.

An Engine.IO packet is a one-digit type followed by data.  Over WebSocket a
text packet travels as a text frame (``"4hello"``) and a binary message as a
bare binary frame (the type ``message`` is implied).  Over HTTP long-polling
several packets are joined by the record separator ``\\x1e`` and binary
messages are carried as ``"b" + base64``.

We do not reuse ``engineio.packet``: its decoder JSON-parses message data
(``"4{}"`` comes back as a dict, ``"4[1]"`` as a list), which erases the
difference between a string message and an object, and its errors are loose
(``IndexError``, ``binascii.Error``).  Here every malformed input raises
:class:`~essen.errors.RemoteProtocolError` and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import enum
from dataclasses import dataclass

from essen.errors import RemoteProtocolError

__all__ = (
    "RECORD_SEPARATOR",
    "Packet",
    "PacketType",
    "decode_frame",
    "decode_payload",
    "encode_frame",
    "encode_payload",
    "frame_to_polling",
)

RECORD_SEPARATOR = "\x1e"


class PacketType(enum.IntEnum):
    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


@dataclass(frozen=True, slots=True)
class Packet:
    """One Engine.IO packet.  ``data`` is bytes only for binary MESSAGE packets."""

    type: PacketType
    data: str | bytes = ""


# A frame is what one WebSocket message carries: str for text, bytes for binary.
Frame = str | bytes

_TYPE_BY_DIGIT = {str(int(t)): t for t in PacketType}


def encode_frame(packet: Packet) -> Frame:
    """Encode a packet as one WebSocket frame."""
    if isinstance(packet.data, bytes):
        if packet.type is not PacketType.MESSAGE:
            raise ValueError("only MESSAGE packets carry binary data")
        return packet.data
    return f"{int(packet.type)}{packet.data}"


def decode_frame(frame: Frame) -> Packet:
    """Decode one WebSocket frame.

    Raises:
        RemoteProtocolError: empty frame or unknown packet type.
    """
    if isinstance(frame, bytes | bytearray | memoryview):
        return Packet(PacketType.MESSAGE, bytes(frame))
    if not frame:
        raise RemoteProtocolError("empty Engine.IO packet")
    packet_type = _TYPE_BY_DIGIT.get(frame[0])
    if packet_type is None:
        raise RemoteProtocolError(f"unknown Engine.IO packet type {frame[0]!r}")
    return Packet(packet_type, frame[1:])


def frame_to_polling(frame: Frame) -> str:
    """Re-encode a WebSocket frame for a polling payload (binary → ``b`` + base64)."""
    if isinstance(frame, str):
        return frame
    return "b" + base64.b64encode(frame).decode("ascii")


def encode_payload(frames: list[Frame] | tuple[Frame, ...]) -> str:
    """Join already-encoded frames into one polling payload."""
    return RECORD_SEPARATOR.join(frame_to_polling(frame) for frame in frames)


def decode_payload(payload: str, *, max_packets: int) -> list[Packet]:
    """Split a polling payload into packets.

    Args:
        payload: the request body, decoded as UTF-8.
        max_packets: more packets than this in one payload is an abuse.

    Raises:
        RemoteProtocolError: empty payload, too many packets, bad base64,
            or a malformed packet.
    """
    if not payload:
        raise RemoteProtocolError("empty polling payload")
    parts = payload.split(RECORD_SEPARATOR, max_packets)
    if len(parts) > max_packets:
        raise RemoteProtocolError(f"more than {max_packets} packets in one payload")
    packets = []
    for part in parts:
        if part[:1] == "b":
            try:
                data = base64.b64decode(part[1:], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise RemoteProtocolError("invalid base64 in binary packet") from exc
            packets.append(Packet(PacketType.MESSAGE, data))
        else:
            packets.append(decode_frame(part))
    return packets
