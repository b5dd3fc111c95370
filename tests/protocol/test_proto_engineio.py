"""Engine.IO v4 codec: golden vectors from the protocol document, errors, and a
differential test against python-engineio's payload codec."""

from __future__ import annotations

import json

import pytest
from engineio import packet as eio_packet
from engineio import payload as eio_payload
from hypothesis import given, settings
from hypothesis import strategies as st

from essen.errors import RemoteProtocolError
from essen.protocol.engineio import (
    RECORD_SEPARATOR,
    Packet,
    PacketType,
    decode_frame,
    decode_payload,
    encode_frame,
    encode_payload,
    frame_to_polling,
)

# -- golden vectors (https://socket.io/docs/v4/engine-io-protocol/) -----------

HANDSHAKE = (
    '0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],'
    '"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'
)

FRAME_VECTORS = [
    (Packet(PacketType.MESSAGE, "hello"), "4hello"),
    (Packet(PacketType.MESSAGE, "€"), "4€"),
    (Packet(PacketType.MESSAGE, b"\x01\x02\x03\x04"), b"\x01\x02\x03\x04"),
    (Packet(PacketType.PING), "2"),
    (Packet(PacketType.PONG), "3"),
    (Packet(PacketType.PING, "probe"), "2probe"),
    (Packet(PacketType.PONG, "probe"), "3probe"),
    (Packet(PacketType.UPGRADE), "5"),
    (Packet(PacketType.NOOP), "6"),
    (Packet(PacketType.CLOSE), "1"),
    (Packet(PacketType.OPEN, HANDSHAKE[1:]), HANDSHAKE),
    (Packet(PacketType.MESSAGE, ""), "4"),
]


@pytest.mark.parametrize(("packet", "frame"), FRAME_VECTORS)
def test_frame_golden_encode(packet: Packet, frame: str | bytes) -> None:
    assert encode_frame(packet) == frame


@pytest.mark.parametrize(("packet", "frame"), FRAME_VECTORS)
def test_frame_golden_decode(packet: Packet, frame: str | bytes) -> None:
    assert decode_frame(frame) == packet


def test_binary_frame_from_bytearray_and_memoryview() -> None:
    assert decode_frame(bytearray(b"\x01\x02")) == Packet(PacketType.MESSAGE, b"\x01\x02")
    assert decode_frame(memoryview(b"\x01\x02")) == Packet(PacketType.MESSAGE, b"\x01\x02")


def test_polling_binary_is_base64() -> None:
    assert frame_to_polling(b"\x01\x02\x03\x04") == "bAQIDBA=="
    assert frame_to_polling("4hello") == "4hello"


PAYLOAD = "4hello\x1e4€\x1ebAQIDBA=="
PAYLOAD_PACKETS = [
    Packet(PacketType.MESSAGE, "hello"),
    Packet(PacketType.MESSAGE, "€"),
    Packet(PacketType.MESSAGE, b"\x01\x02\x03\x04"),
]


def test_payload_golden_encode() -> None:
    assert RECORD_SEPARATOR == "\x1e"
    frames = [encode_frame(p) for p in PAYLOAD_PACKETS]
    assert encode_payload(frames) == PAYLOAD
    assert encode_payload(tuple(frames)) == PAYLOAD


def test_payload_golden_decode() -> None:
    assert decode_payload(PAYLOAD, max_packets=16) == PAYLOAD_PACKETS


def test_payload_single_packet() -> None:
    assert decode_payload("2", max_packets=1) == [Packet(PacketType.PING)]
    assert encode_payload(["2"]) == "2"
    assert encode_payload([]) == ""


def test_binary_packet_must_be_message() -> None:
    with pytest.raises(ValueError, match="MESSAGE"):
        encode_frame(Packet(PacketType.PING, b"\x00"))


# -- malformed input raises RemoteProtocolError and nothing else --------------


@pytest.mark.parametrize("frame", ["", "7", "9hello", "x", "b", "bAQID", " 4", "²", "٤hi"])
def test_bad_frames(frame: str) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_frame(frame)


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "4a\x1e",  # empty trailing packet
        "\x1e4a",
        "4a\x1e\x1e4b",
        "b!!!!",  # not base64
        "bAQIDBA=",  # bad padding
        "bAQID BA==",
        "4a\x1e9",
        "x",
    ],
)
def test_bad_payloads(payload: str) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_payload(payload, max_packets=16)


def test_too_many_packets() -> None:
    assert len(decode_payload("\x1e".join(["2"] * 4), max_packets=4)) == 4
    with pytest.raises(RemoteProtocolError, match="more than 4"):
        decode_payload("\x1e".join(["2"] * 5), max_packets=4)


def test_empty_base64_is_an_empty_binary_message() -> None:
    assert decode_payload("b", max_packets=1) == [Packet(PacketType.MESSAGE, b"")]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_decode_payload_only_raises_remote_protocol_error(text: str) -> None:
    try:
        packets = decode_payload(text, max_packets=8)
    except RemoteProtocolError:
        return
    assert 1 <= len(packets) <= 8
    assert all(isinstance(p.type, PacketType) for p in packets)


# -- differential: python-engineio ---------------------------------------------

# Text messages cannot hold the record separator in a polling payload.
message_text = st.text(
    alphabet=st.characters(exclude_characters="\x1e", exclude_categories=("Cs",)),
    max_size=30,
)
messages = st.lists(st.one_of(message_text, st.binary(max_size=30)), min_size=1, max_size=16)


def _their_data_matches(ours: str | bytes, theirs: object) -> bool:
    """python-engineio JSON-parses text data when it can; undo that for comparison."""
    if isinstance(ours, bytes) or isinstance(theirs, str):
        return ours == theirs
    return json.dumps(json.loads(ours), sort_keys=True) == json.dumps(theirs, sort_keys=True)


@settings(max_examples=200, deadline=None)
@given(messages)
def test_our_payload_decoded_by_python_engineio(items: list[str | bytes]) -> None:
    frames = [encode_frame(Packet(PacketType.MESSAGE, item)) for item in items]
    decoded = eio_payload.Payload(encoded_payload=encode_payload(frames)).packets
    assert len(decoded) == len(items)
    for item, theirs in zip(items, decoded, strict=True):
        assert theirs.packet_type == eio_packet.MESSAGE
        assert _their_data_matches(item, theirs.data)


@settings(max_examples=200, deadline=None)
@given(messages)
def test_python_engineio_payload_decoded_by_us(items: list[str | bytes]) -> None:
    encoded = eio_payload.Payload(
        packets=[eio_packet.Packet(eio_packet.MESSAGE, item) for item in items]
    ).encode()
    assert decode_payload(encoded, max_packets=16) == [
        Packet(PacketType.MESSAGE, item) for item in items
    ]


@pytest.mark.parametrize("kind", [eio_packet.PING, eio_packet.PONG, eio_packet.NOOP])
def test_control_packets_agree_with_python_engineio(kind: int) -> None:
    theirs = eio_payload.Payload(packets=[eio_packet.Packet(kind)]).encode()
    assert decode_payload(theirs, max_packets=1) == [Packet(PacketType(kind))]
    assert encode_frame(Packet(PacketType(kind))) == theirs
