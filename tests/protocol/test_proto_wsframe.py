"""Server-to-client WebSocket frames (``essen.protocol.wsframe``): RFC 6455 §5.7
examples, the three length encodings, and a differential check with wsproto's
client-side frame parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol, Opcode

from essen.protocol.wsframe import OP_BINARY, OP_TEXT, encode_frame


def parse(wire: bytes) -> list[tuple[Opcode, bytes | str, bool]]:
    protocol = FrameProtocol(client=True, extensions=[])
    protocol.receive_bytes(wire)
    return [(f.opcode, f.payload, f.message_finished) for f in protocol.received_frames()]


def test_rfc6455_unmasked_text_example() -> None:
    # RFC 6455 §5.7: "A single-frame unmasked text message".
    assert encode_frame(b"Hello", OP_TEXT) == bytes.fromhex("810548656c6c6f")


def test_rfc6455_256_byte_binary_example() -> None:
    # RFC 6455 §5.7: "256 bytes binary message in a single unmasked frame".
    payload = bytes(256)
    assert encode_frame(payload, OP_BINARY) == bytes.fromhex("827e0100") + payload


def test_rfc6455_64k_binary_example() -> None:
    # RFC 6455 §5.7: "64KiB binary message in a single unmasked frame".
    payload = bytes(65536)
    assert encode_frame(payload, OP_BINARY) == bytes.fromhex("827f0000000000010000") + payload


@pytest.mark.parametrize(
    ("size", "header_size"),
    [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10), (70000, 10)],
)
def test_length_encoding_boundaries(size: int, header_size: int) -> None:
    wire = encode_frame(b"x" * size, OP_BINARY)
    assert len(wire) == header_size + size
    assert parse(wire) == [(Opcode.BINARY, b"x" * size, True)]


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_wsproto_reads_our_frames(message: str | bytes) -> None:
    if isinstance(message, str):
        wire = encode_frame(message.encode("utf-8"), OP_TEXT)
        assert parse(wire) == [(Opcode.TEXT, message, True)]
    else:
        wire = encode_frame(message, OP_BINARY)
        assert parse(wire) == [(Opcode.BINARY, message, True)]


def test_frames_concatenate() -> None:
    wire = encode_frame(b"a", OP_TEXT) + encode_frame(b"\x00", OP_BINARY)
    assert parse(wire) == [(Opcode.TEXT, "a", True), (Opcode.BINARY, b"\x00", True)]
