"""Socket.IO v5 codec: golden vectors from the protocol document, decoder rules,
robustness, and differential tests against python-socketio's ``Packet``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from socketio import packet as sio_packet

from essen.errors import LocalProtocolError, RemoteProtocolError
from essen.protocol.socketio import (
    MAX_ATTACHMENTS,
    RESERVED_EVENTS,
    Decoder,
    SioPacket,
    SioType,
    encode,
    has_binary,
)

BUF = b"\x01\x02\x03\x04"
#: socket.io-parser's ``Decoder`` default ``maxAttachments`` (4.2.x).
PARSER_MAX_ATTACHMENTS = 10


def decode_all(*payloads: str | bytes) -> SioPacket:
    """Feed payloads to a fresh decoder; only the last may complete a packet."""
    decoder = Decoder()
    *head, last = payloads
    for payload in head:
        assert decoder.feed(payload) is None
        assert decoder.awaiting_attachments
    packet = decoder.feed(last)
    assert packet is not None
    assert not decoder.awaiting_attachments
    return packet


def assert_same(a: Any, b: Any) -> None:
    """Equality that also checks types (True is not 1, bytes is not str)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, list):
        assert len(a) == len(b), (a, b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), (a, b)
        for key in a:
            assert_same(a[key], b[key])
    else:
        assert a == b, (a, b)


# -- golden vectors (https://socket.io/docs/v4/socket-io-protocol/) -----------

GOLDEN: list[tuple[SioPacket, tuple[str | bytes, ...]]] = [
    (SioPacket(SioType.CONNECT), ("0",)),
    (SioPacket(SioType.CONNECT, "/admin", {"token": "123"}), ('0/admin,{"token":"123"}',)),
    (
        SioPacket(SioType.CONNECT, "/", {"sid": "oSO0OpakMV_3jnilAAAA"}),
        ('0{"sid":"oSO0OpakMV_3jnilAAAA"}',),
    ),
    (
        SioPacket(SioType.CONNECT, "/admin", {"sid": "oSO0OpakMV_3jnilAAAA"}),
        ('0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}',),
    ),
    (SioPacket(SioType.DISCONNECT, "/admin"), ("1/admin,",)),
    (SioPacket(SioType.DISCONNECT), ("1",)),
    (SioPacket(SioType.EVENT, "/", ["hello", 1]), ('2["hello",1]',)),
    (SioPacket(SioType.EVENT, "/", ["foo"]), ('2["foo"]',)),
    (SioPacket(SioType.EVENT, "/admin", ["bar"]), ('2/admin,["bar"]',)),
    (
        SioPacket(SioType.EVENT, "/admin", ["project:delete", 123], 456),
        ('2/admin,456["project:delete",123]',),
    ),
    (SioPacket(SioType.ACK, "/admin", [], 456), ("3/admin,456[]",)),
    (SioPacket(SioType.ACK, "/admin", ["bar"], 13), ('3/admin,13["bar"]',)),
    (
        SioPacket(SioType.CONNECT_ERROR, "/", {"message": "Not authorized"}),
        ('4{"message":"Not authorized"}',),
    ),
    (
        SioPacket(SioType.CONNECT_ERROR, "/admin", {"message": "Not authorized"}),
        ('4/admin,{"message":"Not authorized"}',),
    ),
    (
        SioPacket(SioType.EVENT, "/", ["hello", BUF]),
        ('51-["hello",{"_placeholder":true,"num":0}]', BUF),
    ),
    (
        SioPacket(SioType.ACK, "/admin", [BUF], 456),
        ('61-/admin,456[{"_placeholder":true,"num":0}]', BUF),
    ),
    (
        SioPacket(SioType.EVENT, "/", ["two", b"a", {"x": [b"b"]}]),
        (
            '52-["two",{"_placeholder":true,"num":0},{"x":[{"_placeholder":true,"num":1}]}]',
            b"a",
            b"b",
        ),
    ),
]


@pytest.mark.parametrize(("packet", "wire"), GOLDEN)
def test_golden_encode(packet: SioPacket, wire: tuple[str | bytes, ...]) -> None:
    assert encode(packet) == wire


@pytest.mark.parametrize(("packet", "wire"), GOLDEN)
def test_golden_decode(packet: SioPacket, wire: tuple[str | bytes, ...]) -> None:
    decoded = decode_all(*wire)
    assert decoded == packet
    assert_same(decoded.data, packet.data)


def test_non_ascii_text() -> None:
    """socket.io-parser writes '2["€uro"]'; an escaped form is the same JSON."""
    packet = SioPacket(SioType.EVENT, "/", ["€uro"])
    assert encode(packet) in {('2["€uro"]',), ('2["\\u20acuro"]',)}
    assert decode_all('2["€uro"]') == packet
    assert decode_all('2["\\u20acuro"]') == packet


@pytest.mark.parametrize(
    ("wire", "packet"),
    [
        # The query part of a namespace is not part of its name.
        (("0/admin?token=1,{}",), SioPacket(SioType.CONNECT, "/admin", {})),
        (("0/admin?x=y",), SioPacket(SioType.CONNECT, "/admin")),
        # A namespace without the trailing comma.
        (("1/admin",), SioPacket(SioType.DISCONNECT, "/admin")),
        # Attachments are put back by number, not by order of appearance.
        (
            (
                '52-["e",{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]',
                b"zero",
                b"one",
            ),
            SioPacket(SioType.EVENT, "/", ["e", b"one", b"zero"]),
        ),
        # Numeric event names are allowed by socket.io-parser.
        (("2[42]",), SioPacket(SioType.EVENT, "/", [42])),
        (('4"plain string"',), SioPacket(SioType.CONNECT_ERROR, "/", "plain string")),
        (("2" + "9" * 15 + '["e"]',), SioPacket(SioType.EVENT, "/", ["e"], 10**15 - 1)),
        (
            ('2["e",{"_placeholder":false,"num":0}]',),
            SioPacket(SioType.EVENT, "/", ["e", {"_placeholder": False, "num": 0}]),
        ),
    ],
)
def test_decode_variants(wire: tuple[str | bytes, ...], packet: SioPacket) -> None:
    decoded = decode_all(*wire)
    assert decoded == packet
    assert_same(decoded.data, packet.data)


# -- decoder rules --------------------------------------------------------------

BAD_TEXT = [
    "",
    "7",
    "9[]",
    "a",
    ' 2["e"]',
    "2",  # EVENT needs a payload
    "2[]",  # ...that is a non-empty array
    '2{"a":1}',
    "2[{}]",  # event name must be a string or a number
    "2[true]",
    "2[null]",
    '2["e"',  # bad JSON
    '2["e"]x',
    "2[NaN]",
    "2[Infinity]",
    "2[-Infinity]",
    '2["e",NaN]',
    '0["not","an","object"]',
    '0"str"',
    '1{"no":"data"}',
    "1[]",
    "4",  # CONNECT_ERROR needs a payload
    "4[]",
    "4123",
    "3[]",  # ACK without an id
    '3{"a":1}',
    "31",  # ACK without data
    '5["e"]',  # no attachment count
    '5-["e"]',
    '5x-["e"]',
    '5١-["e"]',  # a non-ASCII digit as the count
    "2" + "1" * 16 + '["e"]',  # ack id too long
    "2" + "1" * 40 + '["e"]',
    "2" + "[" * 100_000 + "]" * 100_000,
    '2["e",' + "1" * 5000 + "]",  # beyond int()'s digit limit
]


@pytest.mark.parametrize("text", BAD_TEXT)
def test_decoder_rejects(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        Decoder().feed(text)


@pytest.mark.parametrize("event", sorted(RESERVED_EVENTS))
def test_reserved_event_names_rejected(event: str) -> None:
    with pytest.raises(RemoteProtocolError):
        Decoder().feed(json.dumps([event]).join(["2", ""]))
    with pytest.raises(RemoteProtocolError):
        Decoder().feed(f'51-["{event}",{{"_placeholder":true,"num":0}}]')
    # As a plain argument it is just a string.
    assert decode_all(f'2["e","{event}"]').data == ["e", event]


def test_binary_without_binary_packet() -> None:
    with pytest.raises(RemoteProtocolError):
        Decoder().feed(b"\x00")


def test_text_while_attachments_expected() -> None:
    decoder = Decoder()
    assert (
        decoder.feed('52-["e",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]') is None
    )
    assert decoder.feed(b"a") is None
    with pytest.raises(RemoteProtocolError):
        decoder.feed('2["e"]')


@pytest.mark.parametrize(
    "wire",
    [
        ('51-["e",{"_placeholder":true,"num":1}]', b"a"),
        ('51-["e",{"_placeholder":true,"num":-1}]', b"a"),
        ('51-["e",{"_placeholder":true,"num":"0"}]', b"a"),
        ('51-["e",{"_placeholder":true,"num":0.0}]', b"a"),
        ('51-["e",{"_placeholder":true,"num":true}]', b"a"),
        ('51-["e",{"_placeholder":true,"num":null}]', b"a"),
        ('50-["e",{"_placeholder":true,"num":0}]',),
        ('62-1[{"_placeholder":true,"num":2}]', b"a", b"b"),
    ],
)
def test_placeholder_pointing_nowhere(wire: tuple[str | bytes, ...]) -> None:
    decoder = Decoder()
    *head, last = wire
    for payload in head:
        assert decoder.feed(payload) is None
    with pytest.raises(RemoteProtocolError):
        decoder.feed(last)


def test_decoder_is_reusable_after_complete_packets() -> None:
    decoder = Decoder()
    assert decoder.feed('51-["a",{"_placeholder":true,"num":0}]') is None
    assert decoder.feed(b"x") == SioPacket(SioType.EVENT, "/", ["a", b"x"])
    assert decoder.feed('2["b"]') == SioPacket(SioType.EVENT, "/", ["b"])
    assert decoder.feed('61-/n,3[{"_placeholder":true,"num":0}]') is None
    assert decoder.feed(b"y") == SioPacket(SioType.ACK, "/n", [b"y"], 3)


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [300, 600])
@pytest.mark.parametrize(
    "wire",
    [
        lambda deep: ('50-["e",' + deep + "]",),
        lambda deep: ('51-["e",' + deep + ',{"_placeholder":true,"num":0}]', b"a"),
        lambda deep: ('2["e",' + deep + "]",),
    ],
    ids=["binary-no-attachment", "binary-one-attachment", "event"],
)
def test_deep_nesting_is_decoded_or_rejected(depth: int, wire: Any) -> None:
    """Whatever the nesting, the decoder returns a packet or raises RemoteProtocolError.

    Anything else escapes the server's error handling (it catches only
    RemoteProtocolError around ``Decoder.feed``).
    """
    decoder = Decoder()
    *head, last = wire(_deep(depth))
    try:
        for payload in head:
            decoder.feed(payload)
        decoder.feed(last)
    except RemoteProtocolError:
        pass


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=40), st.binary(max_size=8)), min_size=1, max_size=4))
def test_decoder_raises_only_remote_protocol_error(payloads: list[str | bytes]) -> None:
    decoder = Decoder()
    for payload in payloads:
        try:
            decoder.feed(payload)
        except RemoteProtocolError:
            return


@pytest.mark.parametrize("char", ["²", "³", "¹", "①", "٢", "۲", "߂", "२", "２"])
def test_non_ascii_digit_packet_type(char: str) -> None:
    """socket.io-parser reads the type with ``Number(str.charAt(0))``: only 0-6 are types."""
    with pytest.raises(RemoteProtocolError):
        Decoder().feed(char + '["e"]')


# -- encoder --------------------------------------------------------------------


def test_has_binary() -> None:
    assert has_binary(b"")
    assert has_binary(bytearray(b"x"))
    assert has_binary(memoryview(b"x"))
    assert has_binary([1, {"a": (2, b"x")}])
    assert not has_binary([1, {"a": "b"}, None, 2.5])
    assert not has_binary({"bytes": "no"})


def test_encode_binary_containers() -> None:
    frames = encode(SioPacket(SioType.EVENT, "/", ["e", (bytearray(b"a"), memoryview(b"b"))]))
    assert frames == (
        '52-["e",[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]]',
        b"a",
        b"b",
    )
    assert all(type(f) is bytes for f in frames[1:])


@pytest.mark.parametrize(
    "packet",
    [
        SioPacket(SioType.EVENT, "/", ["e", float("nan")]),
        SioPacket(SioType.EVENT, "/", ["e", float("inf")]),
        SioPacket(SioType.EVENT, "/", ["e", {1, 2}]),
        SioPacket(SioType.EVENT, "/", ["e", object()]),
        SioPacket(SioType.CONNECT, "/", {"b": b"bytes only in EVENT/ACK"}),
    ],
)
def test_encode_unrepresentable(packet: SioPacket) -> None:
    with pytest.raises(LocalProtocolError):
        encode(packet)


def test_encode_refuses_more_attachments_than_socket_io_parser_accepts() -> None:
    """socket.io-parser 4.2.x, in every socket.io-client 4.8 and socket.io server,
    throws "too many attachments" above ``maxAttachments: 10`` and the client closes
    the connection with "parse error": the encoder must not produce such a packet."""
    packet = SioPacket(SioType.EVENT, "/", ["e", *[b"x"] * (PARSER_MAX_ATTACHMENTS + 1)])
    with pytest.raises(LocalProtocolError):
        encode(packet)


def test_encode_ten_attachments_round_trips() -> None:
    packet = SioPacket(
        SioType.EVENT, "/", ["e", *[bytes([i]) for i in range(PARSER_MAX_ATTACHMENTS)]]
    )
    assert decode_all(*encode(packet)) == packet


def test_decoder_bounds_attachments() -> None:
    with pytest.raises(RemoteProtocolError):
        Decoder().feed(f'5{MAX_ATTACHMENTS + 1}-["e"]')


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "\udc00\ud800"])
def test_encode_lone_surrogates_are_wire_safe(text: str) -> None:
    """JSON allows ``"\\ud800"`` and JavaScript strings hold lone surrogates, so a
    peer's string can contain one; re-emitting it must give a packet that can be
    sent (UTF-8) and decodes to the same string, as JavaScript's well-formed
    ``JSON.stringify`` does by escaping it."""
    received = decode_all('2["e",' + json.dumps(text) + "]")
    assert received.data == ["e", text]
    [header] = encode(SioPacket(SioType.ACK, "/", [text], 1))
    assert isinstance(header, str)
    wire = header.encode("utf-8")  # what a polling response or a WebSocket text frame sends
    assert decode_all(wire.decode("utf-8")).data == [text]


def test_encode_ack_id_zero() -> None:
    assert encode(SioPacket(SioType.EVENT, "/", ["e"], 0)) == ('20["e"]',)
    assert decode_all('20["e"]').id == 0


# -- data strategies ------------------------------------------------------------

keys = st.text(max_size=8).filter(lambda k: k != "_placeholder")
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)


def json_values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)
        ),
        max_leaves=15,
    )


plain_data = json_values(json_leaves)
binary_data = json_values(st.one_of(json_leaves, st.binary(max_size=12)))
event_names = st.one_of(
    st.text(max_size=12).filter(lambda e: e not in RESERVED_EVENTS),
    st.integers(min_value=-1000, max_value=1000),
)
namespaces = st.one_of(st.just("/"), st.from_regex(r"/[A-Za-z0-9_:.-]{1,12}", fullmatch=True))
ack_ids = st.one_of(st.none(), st.integers(min_value=0, max_value=10**15 - 1))


def count_bytes(value: Any) -> int:
    if isinstance(value, bytes):
        return 1
    if isinstance(value, list):
        return sum(count_bytes(item) for item in value)
    if isinstance(value, dict):
        return sum(count_bytes(item) for item in value.values())
    return 0


@st.composite
def sio_packets(draw: st.DrawFn) -> SioPacket:
    """Valid packets, with at most 10 binary leaves: socket.io-parser's ``maxAttachments``."""
    packet = draw(_sio_packets())
    if count_bytes(packet.data) > PARSER_MAX_ATTACHMENTS:
        packet = SioPacket(packet.type, packet.namespace, packet.data[:1], packet.id)
    return packet


@st.composite
def _sio_packets(draw: st.DrawFn) -> SioPacket:
    kind = draw(st.sampled_from(["connect", "disconnect", "event", "ack", "connect_error"]))
    namespace = draw(namespaces)
    if kind == "connect":
        auth = draw(st.one_of(st.none(), st.dictionaries(keys, plain_data, max_size=4)))
        return SioPacket(SioType.CONNECT, namespace, auth)
    if kind == "disconnect":
        return SioPacket(SioType.DISCONNECT, namespace)
    if kind == "connect_error":
        body = draw(st.one_of(st.text(max_size=10), st.dictionaries(keys, plain_data, max_size=3)))
        return SioPacket(SioType.CONNECT_ERROR, namespace, body)
    args = draw(st.lists(binary_data, max_size=5))
    if kind == "event":
        return SioPacket(SioType.EVENT, namespace, [draw(event_names), *args], draw(ack_ids))
    return SioPacket(
        SioType.ACK, namespace, args, draw(st.integers(min_value=0, max_value=10**15 - 1))
    )


_THEIR_PLAIN = {sio_packet.BINARY_EVENT: sio_packet.EVENT, sio_packet.BINARY_ACK: sio_packet.ACK}


# -- round trip and differential --------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(sio_packets())
def test_round_trip(packet: SioPacket) -> None:
    decoded = decode_all(*encode(packet))
    assert decoded == packet
    assert_same(decoded.data, packet.data)


@settings(max_examples=300, deadline=None)
@given(sio_packets())
def test_our_encoding_decoded_by_python_socketio(packet: SioPacket) -> None:
    header, *attachments = encode(packet)
    assert isinstance(header, str)
    theirs = sio_packet.Packet(encoded_packet=header)
    assert theirs.attachment_count == len(attachments)
    for i, attachment in enumerate(attachments):
        assert theirs.add_attachment(attachment) is (i == len(attachments) - 1)
    assert _THEIR_PLAIN.get(theirs.packet_type, theirs.packet_type) == int(packet.type)
    assert (theirs.namespace or "/") == packet.namespace
    assert theirs.id == packet.id
    assert_same(theirs.data, packet.data)


@settings(max_examples=300, deadline=None)
@given(sio_packets())
def test_python_socketio_encoding_decoded_by_us(packet: SioPacket) -> None:
    encoded = sio_packet.Packet(
        packet_type=int(packet.type),
        data=packet.data,
        namespace=packet.namespace,
        id=packet.id,
    ).encode()
    wire = tuple(encoded) if isinstance(encoded, list) else (encoded,)
    decoded = decode_all(*wire)
    assert decoded == packet
    assert_same(decoded.data, packet.data)
