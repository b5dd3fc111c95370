"""The sans-IO Engine.IO client session and the OPEN packet parser."""

from __future__ import annotations

import pytest

from essen.errors import RemoteProtocolError
from essen.protocol.engine_client import ClientSession, Handshake, parse_open
from essen.protocol.engine_server import (
    Closed,
    CloseReason,
    EngineConfig,
    MessageReceived,
    Outgoing,
    ServerSession,
    Transport,
)
from essen.protocol.engineio import Packet, PacketType, decode_frame

OPEN = (
    '0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],'
    '"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'
)
T0 = 500.0


def client(interval: float = 25.0, timeout: float = 20.0) -> ClientSession:
    return ClientSession(Handshake("sid", ("websocket",), interval, timeout, 1_000_000), T0)


# -- parse_open -------------------------------------------------------------------


def test_parse_open_golden() -> None:
    assert parse_open(decode_frame(OPEN)) == Handshake(
        sid="lv_VI97HAXpY6yYWAAAC",
        upgrades=("websocket",),
        ping_interval=25.0,
        ping_timeout=20.0,
        max_payload=1_000_000,
    )


def test_parse_open_defaults() -> None:
    handshake = parse_open(
        Packet(PacketType.OPEN, '{"sid":"a","pingInterval":300,"pingTimeout":50}')
    )
    assert handshake == Handshake("a", (), 0.3, 0.05, 1_000_000)


def test_parse_open_of_our_server() -> None:
    config = EngineConfig(ping_interval=1.5, ping_timeout=0.25, max_payload=999)
    session = ServerSession("xyz", config, transport=Transport.POLLING, now=0.0)
    assert parse_open(decode_frame(session.open_packet)) == Handshake(
        "xyz", ("websocket",), 1.5, 0.25, 999
    )


@pytest.mark.parametrize(
    "packet",
    [
        Packet(PacketType.MESSAGE, OPEN[1:]),
        Packet(PacketType.OPEN, b"{}"),
        Packet(PacketType.OPEN, ""),
        Packet(PacketType.OPEN, "{"),
        Packet(PacketType.OPEN, "[]"),
        Packet(PacketType.OPEN, '"sid"'),
        Packet(PacketType.OPEN, "42"),
        Packet(PacketType.OPEN, '{"pingInterval":1,"pingTimeout":1}'),
        Packet(PacketType.OPEN, '{"sid":"","pingInterval":1,"pingTimeout":1}'),
        Packet(PacketType.OPEN, '{"sid":7,"pingInterval":1,"pingTimeout":1}'),
        Packet(PacketType.OPEN, '{"sid":"a","pingTimeout":1}'),
        Packet(PacketType.OPEN, '{"sid":"a","pingInterval":1}'),
        Packet(PacketType.OPEN, '{"sid":"a","pingInterval":"1","pingTimeout":1}'),
        Packet(PacketType.OPEN, '{"sid":"a","pingInterval":1,"pingTimeout":null}'),
        Packet(PacketType.OPEN, '{"sid":"a","pingInterval":1,"pingTimeout":1,"upgrades":5}'),
        Packet(PacketType.OPEN, '{"sid":"a","pingInterval":1,"pingTimeout":1,"maxPayload":"x"}'),
    ],
)
def test_parse_open_rejects(packet: Packet) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_open(packet)


# -- heartbeat -------------------------------------------------------------------


def test_ping_is_answered_with_pong() -> None:
    session = client()
    assert session.receive_payload("2", T0 + 1) == []
    assert session.has_outgoing
    assert session.drain_for_polling() == "3"
    assert not session.has_outgoing
    session.receive_frame("2", T0 + 2)
    assert session.drain_for_websocket() == ["3"]


def test_times_out_after_interval_plus_timeout_of_silence() -> None:
    session = client(interval=25, timeout=20)
    assert session.next_deadline() == T0 + 45
    assert session.handle_timeout(T0 + 44.9) == []
    assert session.handle_timeout(T0 + 45) == [Closed(CloseReason.PING_TIMEOUT)]
    assert session.closed == Closed(CloseReason.PING_TIMEOUT)
    assert session.next_deadline() == float("inf")
    assert session.handle_timeout(T0 + 100) == []


def test_ping_pushes_the_deadline() -> None:
    session = client(interval=25, timeout=20)
    session.receive_payload("2", T0 + 40)
    assert session.next_deadline() == T0 + 40 + 45
    assert session.handle_timeout(T0 + 45) == []
    assert session.closed is None


def test_messages_do_not_count_as_pings() -> None:
    session = client(interval=25, timeout=20)
    assert session.receive_payload("4a\x1ebAQ==", T0 + 40) == [
        MessageReceived("a"),
        MessageReceived(b"\x01"),
    ]
    assert session.next_deadline() == T0 + 45


# -- inbound -------------------------------------------------------------------------


def test_server_close() -> None:
    session = client()
    events = session.receive_payload("4a\x1e1\x1e4b", T0)
    assert events == [MessageReceived("a"), Closed(CloseReason.TRANSPORT_CLOSE, "server closed")]
    assert session.closed is not None
    assert session.receive_payload("4c", T0) == []


def test_noop_and_pong_are_ignored() -> None:
    session = client()
    assert session.receive_payload("6\x1e3\x1e3probe", T0) == []
    assert not session.has_outgoing


@pytest.mark.parametrize("payload", ["", "9", "4a\x1e", "b!!", "0{}", "5"])
def test_bad_payload_closes_with_parse_error(payload: str) -> None:
    session = client()
    events = session.receive_payload(payload, T0)
    assert len(events) == 1
    assert isinstance(events[0], Closed)
    assert events[0].reason is CloseReason.PARSE_ERROR


@pytest.mark.parametrize("frame", ["", "x", "0{}"])
def test_bad_frame_closes_with_parse_error(frame: str) -> None:
    events = client().receive_frame(frame, T0)
    assert len(events) == 1
    assert isinstance(events[0], Closed)
    assert events[0].reason is CloseReason.PARSE_ERROR


# -- outbound ------------------------------------------------------------------------


def test_send_message_and_close() -> None:
    session = client()
    session.send_message(('2["e"]', b"\x00"))
    session.close()
    session.close()
    assert session.closed == Closed(CloseReason.CLIENT_CLOSE)
    assert session.drain_for_polling() == '42["e"]\x1ebAA==\x1e1'
    assert session.drain_for_polling() == ""


# -- the two sides together -------------------------------------------------------------


def test_client_and_server_heartbeat_together() -> None:
    """A server session and a client session exchanging polling payloads stay alive
    across many ping rounds, and the server times the client out when it stops."""
    config = EngineConfig(ping_interval=25, ping_timeout=20)
    server = ServerSession("s", config, transport=Transport.POLLING, now=0.0)
    session = ClientSession(parse_open(decode_frame(server.open_packet)), 0.0)
    now = 0.0
    for _ in range(10):
        now = server.next_deadline()
        server.handle_timeout(now)
        assert session.receive_payload(server.drain_for_polling(), now + 1) == []
        assert server.receive_payload(session.drain_for_polling().encode(), now + 2) == []
        assert not server.closed
        assert session.next_deadline() > server.next_deadline()
    server.send(Outgoing.message(('2["hi"]',)))
    assert session.receive_payload(server.drain_for_polling(), now + 3) == [
        MessageReceived('2["hi"]')
    ]
    # The client goes silent: one more ping, then the server gives up.
    now = server.next_deadline()
    server.handle_timeout(now)
    server.drain_for_polling()
    assert server.handle_timeout(server.next_deadline()) == [Closed(CloseReason.PING_TIMEOUT)]
    # ...and the client, receiving nothing more, gives up too.
    assert session.handle_timeout(session.next_deadline()) == [Closed(CloseReason.PING_TIMEOUT)]
