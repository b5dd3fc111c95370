"""Server-to-client WebSocket frames, encoded once (RFC 6455 §5.2), sans-IO.

A broadcast is the same bytes on every socket: the server sends unmasked,
unfragmented frames without extensions, so one encoding serves every receiver.
"""

from __future__ import annotations

import struct

__all__ = ("OP_BINARY", "OP_TEXT", "encode_frame")

OP_TEXT = 0x1
OP_BINARY = 0x2
_FIN = 0x80


def encode_frame(payload: bytes, opcode: int) -> bytes:
    """One final, unmasked frame carrying ``payload``."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", _FIN | opcode, size)
    elif size < 65536:
        header = struct.pack("!BBH", _FIN | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", _FIN | opcode, 127, size)
    return header + payload
