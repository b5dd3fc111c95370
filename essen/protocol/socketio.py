"""Socket.IO v5 packets: encoder and the attachment-reassembling decoder.

Wire format of one packet (the first Engine.IO MESSAGE of it)::

    <type>[<attachments>-][<namespace>,][<ack id>][<JSON data>]

``BINARY_EVENT``/``BINARY_ACK`` packets are followed by ``attachments``
binary Engine.IO messages; the JSON carries ``{"_placeholder": true, "num": i}``
where attachment ``i`` belongs.

The decoder validates what the official ``socket.io-parser`` validates
(payload shape per type, reserved event names, namespace syntax) and bounds
what it will buffer, so a peer cannot make it hold unbounded state.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from essen.errors import LocalProtocolError, RemoteProtocolError

if TYPE_CHECKING:
    from .engineio import Frame

__all__ = (
    "RESERVED_EVENTS",
    "Decoder",
    "SioPacket",
    "SioType",
    "encode",
    "has_binary",
)

RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)
#: At most this many binary attachments in one packet (socket.io-parser 4.2's
#: ``maxAttachments``: its peers refuse more), and this many bytes waiting for
#: their packet: a peer cannot make the decoder hold more.
MAX_ATTACHMENTS = 10
MAX_PENDING_BYTES = 16 * 1024 * 1024
_MAX_ACK_ID_DIGITS = 15


class SioType(enum.IntEnum):
    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


@dataclass(frozen=True, slots=True)
class SioPacket:
    """One decoded Socket.IO packet, with binary attachments already put back."""

    type: SioType
    namespace: str = "/"
    data: Any = None
    id: int | None = None


def has_binary(value: object) -> bool:
    """True when ``value`` holds bytes anywhere (so it needs a BINARY_* packet)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return True
    if isinstance(value, list | tuple):
        return any(has_binary(item) for item in value)
    if isinstance(value, dict):
        return any(has_binary(item) for item in value.values())
    return False


def _deconstruct(value: object, attachments: list[bytes]) -> object:
    if isinstance(value, bytes | bytearray | memoryview):
        attachments.append(bytes(value))
        return {"_placeholder": True, "num": len(attachments) - 1}
    if isinstance(value, list | tuple):
        return [_deconstruct(item, attachments) for item in value]
    if isinstance(value, dict):
        return {key: _deconstruct(item, attachments) for key, item in value.items()}
    return value


def _reconstruct(value: object, attachments: list[bytes]) -> object:
    if isinstance(value, list):
        return [_reconstruct(item, attachments) for item in value]
    if isinstance(value, dict):
        if value.get("_placeholder") is True and "num" in value:
            num = value["num"]
            if not isinstance(num, int) or isinstance(num, bool) or not 0 <= num < len(attachments):
                raise RemoteProtocolError("binary placeholder points at no attachment")
            return attachments[num]
        return {key: _reconstruct(item, attachments) for key, item in value.items()}
    return value


def _dumps(value: object) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (valid in JSON and common from JavaScript) cannot be
        # sent as UTF-8; escape it as JSON.stringify does.
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text


def encode(packet: SioPacket) -> tuple[Frame, ...]:
    """Encode a packet as Engine.IO MESSAGE payloads: the header, then attachments.

    EVENT/ACK packets whose data holds bytes are sent as BINARY_EVENT/BINARY_ACK.

    Raises:
        LocalProtocolError: the data cannot be represented (NaN, non-JSON types).
    """
    packet_type = packet.type
    data = packet.data
    if packet_type in (SioType.EVENT, SioType.ACK) and data is not None:
        # Almost every event is plain JSON.  Encoding it straight away proves it
        # holds no bytes (the encoder refuses them) in one pass of C code,
        # where walking it with has_binary first cost more than the encoding
        # itself (a metrics:update is thousands of values).  Anything the
        # encoder refuses — bytes, NaN, a set, a nesting too deep — takes the
        # general path below, which decides and reports exactly as before.
        try:
            text = _dumps(data)
        except (TypeError, ValueError, RecursionError):
            pass
        else:
            return (_header(packet, packet_type, 0) + text,)
    attachments: list[bytes] = []
    try:
        binary = packet_type in (SioType.EVENT, SioType.ACK) and has_binary(data)
    except RecursionError as exc:
        raise LocalProtocolError("payload nested too deeply") from exc
    if binary:
        packet_type = SioType.BINARY_EVENT if packet_type is SioType.EVENT else SioType.BINARY_ACK
    if packet_type in (SioType.BINARY_EVENT, SioType.BINARY_ACK):
        try:
            data = _deconstruct(data, attachments)
        except RecursionError as exc:
            raise LocalProtocolError("payload nested too deeply") from exc
        if len(attachments) > MAX_ATTACHMENTS:
            raise LocalProtocolError(
                f"{len(attachments)} binary attachments; peers accept at most {MAX_ATTACHMENTS}"
            )
    header = _header(packet, packet_type, len(attachments))
    if data is None:
        return (header, *attachments)
    try:
        text = _dumps(data)
    except (TypeError, ValueError, RecursionError) as exc:
        raise LocalProtocolError(f"payload is not JSON-serialisable: {exc!r}") from exc
    return (header + text, *attachments)


def _header(packet: SioPacket, packet_type: SioType, attachments: int) -> str:
    """``<type>[<attachments>-][<namespace>,][<ack id>]``: everything before the JSON."""
    parts = [str(int(packet_type))]
    if attachments or packet_type in (SioType.BINARY_EVENT, SioType.BINARY_ACK):
        parts.append(f"{attachments}-")
    if packet.namespace != "/":
        parts.append(packet.namespace + ",")
    if packet.id is not None:
        parts.append(str(packet.id))
    return "".join(parts)


def _reject_constant(name: str) -> object:
    raise RemoteProtocolError(f"invalid JSON constant {name}")


def _parse_header(text: str) -> tuple[SioType, int, str, int | None, Any]:
    """Split one text packet into (type, attachments, namespace, ack id, data)."""
    if not text or text[0] not in "0123456":
        raise RemoteProtocolError(f"unknown Socket.IO packet type {text[:1]!r}")
    packet_type = SioType(int(text[0]))
    pos = 1
    attachments = 0
    if packet_type in (SioType.BINARY_EVENT, SioType.BINARY_ACK):
        dash = text.find("-", pos)
        count = text[pos:dash] if dash != -1 else ""
        if not count.isascii() or not count.isdigit():
            raise RemoteProtocolError("binary packet without an attachment count")
        attachments = int(count)
        if attachments > MAX_ATTACHMENTS:
            raise RemoteProtocolError(f"more than {MAX_ATTACHMENTS} attachments")
        pos = dash + 1
    namespace = "/"
    if text.startswith("/", pos):
        comma = text.find(",", pos)
        end = comma if comma != -1 else len(text)
        namespace = text[pos:end]
        query = namespace.find("?")
        if query != -1:
            namespace = namespace[:query]
        pos = end + 1 if comma != -1 else end
    ack_id: int | None = None
    start = pos
    while pos < len(text) and text[pos].isascii() and text[pos].isdigit():
        pos += 1
    if pos > start:
        if pos - start > _MAX_ACK_ID_DIGITS:
            raise RemoteProtocolError("ack id too long")
        ack_id = int(text[start:pos])
    data: Any = None
    if pos < len(text):
        try:
            data = json.loads(text[pos:], parse_constant=_reject_constant)
        except ValueError as exc:
            raise RemoteProtocolError(f"invalid JSON in Socket.IO packet: {exc}") from exc
        except RecursionError as exc:
            raise RemoteProtocolError("JSON nested too deeply") from exc
    return packet_type, attachments, namespace, ack_id, data


def _validate(packet_type: SioType, data: Any, ack_id: int | None) -> None:
    """The payload rules of the reference ``socket.io-parser`` (``isPayloadValid``)."""
    match packet_type:
        case SioType.CONNECT:
            ok = data is None or isinstance(data, dict)
        case SioType.DISCONNECT:
            ok = data is None
        case SioType.CONNECT_ERROR:
            ok = isinstance(data, str | dict)
        case SioType.EVENT | SioType.BINARY_EVENT:
            ok = (
                isinstance(data, list)
                and len(data) > 0
                and (
                    (isinstance(data[0], str) and data[0] not in RESERVED_EVENTS)
                    or (isinstance(data[0], int | float) and not isinstance(data[0], bool))
                )
            )
        case SioType.ACK | SioType.BINARY_ACK:
            ok = isinstance(data, list) and ack_id is not None
    if not ok:
        raise RemoteProtocolError(f"invalid payload for {packet_type.name}")


# Binary packets are an encoding detail: decoded packets are plain EVENT/ACK.
_PLAIN = {SioType.BINARY_EVENT: SioType.EVENT, SioType.BINARY_ACK: SioType.ACK}


@dataclass(slots=True)
class _Pending:
    packet_type: SioType
    namespace: str
    ack_id: int | None
    data: Any
    expected: int
    attachments: list[bytes] = field(default_factory=list)
    size: int = 0


class Decoder:
    """Turns Engine.IO message payloads into :class:`SioPacket` objects.

    Feed it every MESSAGE payload in order; it returns a packet when one is
    complete, ``None`` while a binary packet still waits for attachments.
    After it raises, the session must be closed: its state is undefined.
    """

    def __init__(self) -> None:
        self._pending: _Pending | None = None

    @property
    def awaiting_attachments(self) -> bool:
        return self._pending is not None

    def feed(self, payload: str | bytes) -> SioPacket | None:
        """Decode one payload.

        Raises:
            RemoteProtocolError: malformed packet, unexpected binary data,
                text arriving while attachments were expected, or more
                attachment bytes waiting than :data:`MAX_PENDING_BYTES`.
        """
        try:
            return self._feed(payload)
        except RecursionError as exc:
            raise RemoteProtocolError("payload nested too deeply") from exc

    def _feed(self, payload: str | bytes) -> SioPacket | None:
        pending = self._pending
        if isinstance(payload, bytes):
            if pending is None:
                raise RemoteProtocolError("binary data without a binary packet")
            pending.attachments.append(payload)
            pending.size += len(payload)
            if pending.size > MAX_PENDING_BYTES:
                raise RemoteProtocolError("binary attachments too large")
            if len(pending.attachments) < pending.expected:
                return None
            self._pending = None
            data = _reconstruct(pending.data, pending.attachments)
            return SioPacket(_PLAIN[pending.packet_type], pending.namespace, data, pending.ack_id)
        if pending is not None:
            raise RemoteProtocolError("text packet while binary attachments were expected")
        packet_type, attachments, namespace, ack_id, data = _parse_header(payload)
        _validate(packet_type, data, ack_id)
        if packet_type in (SioType.BINARY_EVENT, SioType.BINARY_ACK) and attachments > 0:
            self._pending = _Pending(packet_type, namespace, ack_id, data, attachments)
            return None
        if packet_type in (SioType.BINARY_EVENT, SioType.BINARY_ACK):
            data = _reconstruct(data, [])
        return SioPacket(_PLAIN.get(packet_type, packet_type), namespace, data, ack_id)
