"""The sans-IO Engine.IO server session: handshake, heartbeat, upgrade, polling,
closing, overflow policy and malformed input.  Time is a plain float."""

from __future__ import annotations

import json

import pytest

from essen.errors import LocalProtocolError, RemoteProtocolError
from essen.protocol.engine_server import (
    Closed,
    CloseReason,
    EngineConfig,
    MessageReceived,
    Outgoing,
    Overflow,
    SendOutcome,
    ServerSession,
    SessionState,
    Transport,
)
from essen.protocol.socketio import SioPacket, SioType, encode
from essen.protocol.wsframe import OP_BINARY, OP_TEXT
from essen.protocol.wsframe import encode_frame as encode_ws_frame

CONFIG = EngineConfig(ping_interval=25.0, ping_timeout=20.0, upgrade_timeout=10.0)
T0 = 1000.0


def polling(config: EngineConfig = CONFIG, now: float = T0) -> ServerSession:
    return ServerSession("sid-1", config, transport=Transport.POLLING, now=now)


def websocket(config: EngineConfig = CONFIG, now: float = T0) -> ServerSession:
    return ServerSession("sid-1", config, transport=Transport.WEBSOCKET, now=now)


def msg(text: str, *, droppable: bool = False) -> Outgoing:
    return Outgoing.message((text,), droppable=droppable)


def split(payload: str) -> list[str]:
    return payload.split("\x1e") if payload else []


# -- handshake ------------------------------------------------------------------


def test_handshake_fields_polling() -> None:
    config = EngineConfig(ping_interval=0.3, ping_timeout=1.25, max_payload=12345)
    session = polling(config)
    assert session.open_packet[0] == "0"
    assert json.loads(session.open_packet[1:]) == {
        "sid": "sid-1",
        "upgrades": ["websocket"],
        "pingInterval": 300,
        "pingTimeout": 1250,
        "maxPayload": 12345,
    }


def test_handshake_golden_defaults() -> None:
    assert EngineConfig().handshake("lv_VI97HAXpY6yYWAAAC", Transport.POLLING) == (
        '0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],'
        '"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'
    )


def test_handshake_websocket_offers_no_upgrade() -> None:
    assert json.loads(websocket().open_packet[1:])["upgrades"] == []


def test_handshake_polling_only_offers_no_upgrade() -> None:
    session = polling(EngineConfig(transports=(Transport.POLLING,)))
    assert json.loads(session.open_packet[1:])["upgrades"] == []


def test_disabled_transport_cannot_open() -> None:
    with pytest.raises(LocalProtocolError):
        websocket(EngineConfig(transports=(Transport.POLLING,)))


def test_new_session_state() -> None:
    session = polling()
    assert session.state is SessionState.OPEN
    assert session.transport is Transport.POLLING
    assert not session.closed
    assert not session.has_outgoing
    assert session.drain_for_polling() == ""
    assert session.drain_for_websocket() == []
    assert session.statistics() == {"queued_packets": 0, "queued_bytes": 0, "dropped": 0}


# -- heartbeat --------------------------------------------------------------------


def test_ping_is_queued_at_ping_interval() -> None:
    session = polling()
    assert session.next_deadline() == T0 + 25
    assert session.handle_timeout(T0 + 24.9) == []
    assert not session.has_outgoing
    assert session.handle_timeout(T0 + 25) == []
    assert session.drain_for_polling() == "2"
    # Now waiting for the pong, for ping_timeout.
    assert session.next_deadline() == T0 + 25 + 20


def test_ping_timeout_closes() -> None:
    session = polling()
    session.handle_timeout(T0 + 25)
    assert session.handle_timeout(T0 + 44.9) == []
    assert not session.closed
    assert session.handle_timeout(T0 + 45) == [Closed(CloseReason.PING_TIMEOUT)]
    assert session.closed
    assert session.close_reason is CloseReason.PING_TIMEOUT
    assert session.next_deadline() == float("inf")
    assert session.handle_timeout(T0 + 1000) == []


def test_pong_resets_the_heartbeat() -> None:
    session = polling()
    session.handle_timeout(T0 + 25)
    session.drain_for_polling()
    assert session.receive_payload(b"3", T0 + 30) == []
    assert session.next_deadline() == T0 + 30 + 25
    # No timeout at the old pong deadline.
    assert session.handle_timeout(T0 + 45) == []
    assert not session.closed
    # The next ping comes one interval after the pong.
    session.handle_timeout(T0 + 55)
    assert session.drain_for_polling() == "2"
    session.receive_frame("3", T0 + 56)
    assert session.next_deadline() == T0 + 56 + 25


def test_unsolicited_pong_is_ignored() -> None:
    session = polling()
    assert session.receive_payload(b"3", T0 + 5) == []
    assert session.next_deadline() == T0 + 25
    assert not session.has_outgoing


def test_heartbeat_over_websocket() -> None:
    session = websocket()
    session.handle_timeout(T0 + 25)
    assert session.drain_for_websocket() == ["2"]
    assert session.receive_frame("3", T0 + 26) == []
    assert session.handle_timeout(T0 + 45) == []
    session.handle_timeout(T0 + 51)
    assert session.drain_for_websocket() == ["2"]
    assert session.handle_timeout(T0 + 71) == [Closed(CloseReason.PING_TIMEOUT)]


def test_server_bound_ping_closes_the_session() -> None:
    """In v4 only the server pings (the probe travels on the upgrading WebSocket);
    engine.io closes a session that pings it ("invalid heartbeat direction").
    Answering instead would let a client queue one PONG per ping without bound."""
    session = polling()
    events = session.receive_payload(b"4before\x1e2\x1e4after", T0)
    assert events[0] == MessageReceived("before")
    assert len(events) == 2
    assert isinstance(events[1], Closed)
    assert events[1].reason is CloseReason.PARSE_ERROR
    assert session.closed
    assert not session.has_outgoing


def test_server_bound_ping_over_websocket() -> None:
    session = websocket()
    events = session.receive_frame("2", T0)
    assert len(events) == 1
    assert isinstance(events[0], Closed)
    assert events[0].reason is CloseReason.PARSE_ERROR


# -- inbound ------------------------------------------------------------------------


def test_messages_in_order() -> None:
    session = polling()
    events = session.receive_payload("4hello\x1e4€\x1ebAQIDBA==".encode(), T0)
    assert events == [
        MessageReceived("hello"),
        MessageReceived("€"),
        MessageReceived(b"\x01\x02\x03\x04"),
    ]


def test_websocket_frames() -> None:
    session = websocket()
    assert session.receive_frame("4hi", T0) == [MessageReceived("hi")]
    assert session.receive_frame(b"\x00\x01", T0) == [MessageReceived(b"\x00\x01")]


def test_client_close() -> None:
    session = polling()
    events = session.receive_payload(b"4a\x1e1\x1e4b", T0)
    # engine.io reports a client's CLOSE packet as "transport close" (recoverable).
    assert events == [MessageReceived("a"), Closed(CloseReason.TRANSPORT_CLOSE, "client close")]
    assert session.closed
    assert session.receive_payload(b"4c", T0) == []
    assert session.send(msg("x")) is SendOutcome.CLOSED


def test_client_close_over_websocket() -> None:
    session = websocket()
    assert session.receive_frame("1", T0) == [Closed(CloseReason.TRANSPORT_CLOSE, "client close")]
    assert session.receive_frame("4late", T0) == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xff\xfe",  # not UTF-8
        b"4ok\x1e\xc3",
        b"9",
        b"x",
        b"4a\x1e",
        b"b***",
        b"bAQIDBA=",
        b"0",  # OPEN from a client
        b"0{}",
        b"5",  # UPGRADE outside an upgrade
        b"6",  # NOOP from a client
        b"4a\x1e6",
    ],
)
def test_malformed_payload_closes_with_parse_error(body: bytes) -> None:
    session = polling()
    session.send(msg("pending"))
    events = session.receive_payload(body, T0)
    assert isinstance(events[-1], Closed)
    assert events[-1].reason is CloseReason.PARSE_ERROR
    assert session.closed
    assert session.close_reason is CloseReason.PARSE_ERROR
    assert not session.has_outgoing


@pytest.mark.parametrize("frame", ["", "9", "x", "0", "5", "6"])
def test_malformed_frame_closes_with_parse_error(frame: str) -> None:
    session = websocket()
    events = session.receive_frame(frame, T0)
    assert len(events) == 1
    assert isinstance(events[0], Closed)
    assert events[0].reason is CloseReason.PARSE_ERROR
    assert session.closed


def test_too_many_packets_in_payload() -> None:
    session = polling(EngineConfig(max_packets_per_payload=3))
    assert len(session.receive_payload(b"4a\x1e4b\x1e4c", T0)) == 3
    assert session.receive_payload(b"4a\x1e4b\x1e4c\x1e4d", T0) == [
        Closed(CloseReason.PARSE_ERROR, "more than 3 packets in one payload")
    ]


def test_payload_too_large() -> None:
    session = polling(EngineConfig(max_payload=10))
    assert session.receive_payload(b"4" + b"a" * 9, T0) == [MessageReceived("a" * 9)]
    events = session.receive_payload(b"4" + b"a" * 10, T0)
    assert events == [Closed(CloseReason.PAYLOAD_TOO_LARGE, "11 bytes")]
    assert session.closed


def test_frame_too_large() -> None:
    session = websocket(EngineConfig(max_payload=4))
    assert session.receive_frame(b"abcd", T0) == [MessageReceived(b"abcd")]
    assert session.receive_frame(b"abcde", T0) == [Closed(CloseReason.PAYLOAD_TOO_LARGE, "5 bytes")]


def test_transport_closed() -> None:
    session = websocket()
    assert session.transport_closed() == Closed(CloseReason.TRANSPORT_CLOSE)
    session = websocket()
    assert session.transport_closed(error=True) == Closed(CloseReason.TRANSPORT_ERROR)
    assert session.transport_closed() == Closed(CloseReason.TRANSPORT_ERROR)  # idempotent


# -- polling requests ------------------------------------------------------------


def test_poll_overlap_closes() -> None:
    session = polling()
    assert session.start_poll()
    assert not session.start_poll()
    assert session.closed
    assert session.close_reason is CloseReason.POLL_OVERLAP


def test_sequential_polls_are_fine() -> None:
    session = polling()
    for _ in range(3):
        assert session.start_poll()
        session.end_poll()
    assert not session.closed


def test_drain_for_polling_joins_frames() -> None:
    session = polling()
    session.send(Outgoing.message(('51-["e",{"_placeholder":true,"num":0}]', b"\x01\x02")))
    session.send(msg('2["x"]'))
    assert session.has_outgoing
    assert session.drain_for_polling() == (
        '451-["e",{"_placeholder":true,"num":0}]\x1ebAQI=\x1e42["x"]'
    )
    assert not session.has_outgoing
    assert session.statistics()["queued_packets"] == 0


def test_outgoing_message() -> None:
    item = Outgoing.message(("2[1]", b"\x00\x01"), droppable=True)
    assert item.frames == ("42[1]", b"\x00\x01")
    assert item.droppable
    assert item.size == 5 + 2


# -- upgrade --------------------------------------------------------------------------


def test_upgrade_flow() -> None:
    session = polling()
    session.begin_upgrade(T0 + 1)
    assert session.state is SessionState.UPGRADING
    assert session.next_deadline() == T0 + 1 + 10
    assert session.receive_upgrade_frame("2probe") == "3probe"
    # A NOOP releases the pending poll so the client can pause polling.
    assert session.drain_for_polling() == "6"
    # Messages sent during the upgrade are kept for the new transport.
    session.send(msg('2["during"]'))
    assert session.receive_upgrade_frame("5") is None
    assert session.state is SessionState.OPEN
    assert session.transport is Transport.WEBSOCKET
    assert session.next_deadline() == T0 + 25
    assert session.drain_for_websocket() == ['42["during"]']
    # Polling still works during the upgrade, and ends after it.
    with pytest.raises(RemoteProtocolError):
        session.begin_upgrade(T0 + 2)


def test_polling_continues_during_upgrade() -> None:
    session = polling()
    session.begin_upgrade(T0)
    assert session.receive_payload(b"4still", T0) == [MessageReceived("still")]
    session.send(msg("x"))
    assert session.drain_for_polling() == "4x"


@pytest.mark.parametrize("first", ["5", "2", "2prob", "3probe", "4probe", "", "9", b"probe"])
def test_wrong_probe_aborts_upgrade(first: str | bytes) -> None:
    session = polling()
    session.begin_upgrade(T0)
    with pytest.raises(RemoteProtocolError):
        session.receive_upgrade_frame(first)
    session.abort_upgrade()
    assert session.state is SessionState.OPEN
    assert session.transport is Transport.POLLING
    assert session.next_deadline() == T0 + 25
    assert not session.closed
    session.send(msg("after"))
    assert session.drain_for_polling() == "4after"


@pytest.mark.parametrize("second", ["2probe", "4hello", "6", "1", b"x"])
def test_wrong_upgrade_packet_aborts_upgrade(second: str | bytes) -> None:
    session = polling()
    session.begin_upgrade(T0)
    session.receive_upgrade_frame("2probe")
    with pytest.raises(RemoteProtocolError):
        session.receive_upgrade_frame(second)
    session.abort_upgrade()
    assert session.state is SessionState.OPEN
    assert session.transport is Transport.POLLING


def test_upgrade_timeout_returns_to_polling() -> None:
    session = polling()
    session.begin_upgrade(T0 + 1)
    session.receive_upgrade_frame("2probe")
    assert session.handle_timeout(T0 + 10.9) == []
    assert session.state is SessionState.UPGRADING
    assert session.handle_timeout(T0 + 11) == []
    assert session.state is SessionState.OPEN
    assert session.transport is Transport.POLLING
    with pytest.raises(RemoteProtocolError):
        session.receive_upgrade_frame("5")
    # And it can try again.
    session.begin_upgrade(T0 + 12)
    assert session.state is SessionState.UPGRADING


def test_cannot_upgrade_a_websocket_session() -> None:
    with pytest.raises(RemoteProtocolError):
        websocket().begin_upgrade(T0)


def test_cannot_upgrade_twice_at_once() -> None:
    session = polling()
    session.begin_upgrade(T0)
    with pytest.raises(RemoteProtocolError):
        session.begin_upgrade(T0)


def test_cannot_upgrade_when_websocket_disabled() -> None:
    session = polling(EngineConfig(transports=(Transport.POLLING,)))
    with pytest.raises(RemoteProtocolError):
        session.begin_upgrade(T0)


def test_upgrade_frame_without_upgrade() -> None:
    with pytest.raises(RemoteProtocolError):
        polling().receive_upgrade_frame("2probe")


def test_cannot_upgrade_closed_session() -> None:
    session = polling()
    session.transport_closed()
    with pytest.raises(RemoteProtocolError):
        session.begin_upgrade(T0)


# -- closing ---------------------------------------------------------------------------


def test_graceful_close_over_polling() -> None:
    session = polling()
    session.send(msg('2["bye"]'))
    assert session.close(T0 + 1) is None
    assert session.state is SessionState.CLOSING
    assert session.send(msg("late")) is SendOutcome.CLOSED
    assert session.close(T0 + 2) is None  # idempotent
    assert session.drain_for_polling() == '42["bye"]\x1e1'
    assert session.closed
    assert session.close_reason is CloseReason.SERVER_CLOSE


def test_graceful_close_with_reason() -> None:
    session = polling()
    session.close(T0, reason=CloseReason.SLOW_CONSUMER)
    assert session.drain_for_polling() == "1"
    assert session.close_reason is CloseReason.SLOW_CONSUMER


def test_graceful_close_over_polling_without_poll() -> None:
    session = polling()
    session.receive_payload(b"3", T0)  # (no effect: no ping outstanding)
    session.close(T0 + 1)
    # No GET comes to take the CLOSE packet: closed after one ping interval.
    assert session.handle_timeout(T0 + 1 + 25) == [Closed(CloseReason.SERVER_CLOSE)]
    assert session.closed


def test_close_packet_is_the_last_packet_over_polling() -> None:
    """Once CLOSE is queued nothing may follow it: engine.io sends nothing once
    ``closing`` (``sendPacket`` checks readyState), and a client stops reading at
    CLOSE.  A heartbeat falling due before the poll must not add a PING."""
    session = polling()
    session.close(T0 + 20)
    session.handle_timeout(T0 + 25)  # the ping would be due now
    assert not session.closed
    assert split(session.drain_for_polling())[-1] == "1"


def test_graceful_close_over_websocket() -> None:
    session = websocket()
    session.send(msg("last"))
    session.close(T0)
    assert session.state is SessionState.CLOSING
    assert session.drain_for_websocket() == ["4last"]
    assert not session.closed
    assert session.transport_closed() == Closed(CloseReason.SERVER_CLOSE)


def test_graceful_close_over_websocket_times_out() -> None:
    session = websocket()
    session.close(T0)
    assert session.handle_timeout(T0 + 20) == [Closed(CloseReason.SERVER_CLOSE)]


def test_close_during_upgrade_stays_on_polling() -> None:
    session = polling()
    session.begin_upgrade(T0)
    session.close(T0)
    assert session.state is SessionState.CLOSING
    assert session.drain_for_polling() == "1"
    assert session.closed


# -- overflow policy ---------------------------------------------------------------------


def test_drop_oldest_drops_oldest_droppable() -> None:
    session = polling(EngineConfig(max_queued_packets=3, overflow=Overflow.DROP_OLDEST))
    assert session.send(msg("u1")) is SendOutcome.QUEUED
    assert session.send(msg("d1", droppable=True)) is SendOutcome.QUEUED
    assert session.send(msg("d2", droppable=True)) is SendOutcome.QUEUED
    assert session.send(msg("u2")) is SendOutcome.QUEUED_DROPPED_OLDER
    assert session.dropped == 1
    assert session.statistics() == {"queued_packets": 3, "queued_bytes": 9, "dropped": 1}
    assert session.drain_for_polling() == "4u1\x1e4d2\x1e4u2"


def test_drop_oldest_by_bytes() -> None:
    session = polling(EngineConfig(max_queued_bytes=10, overflow=Overflow.DROP_OLDEST))
    session.send(msg("aaaa", droppable=True))  # 5 bytes with the type digit
    session.send(msg("bbbb", droppable=True))
    assert session.send(msg("cccc")) is SendOutcome.QUEUED_DROPPED_OLDER
    assert session.dropped == 1
    assert session.drain_for_polling() == "4bbbb\x1e4cccc"


def test_outgoing_wire_is_websocket_frames() -> None:
    item = Outgoing.message(('51-["e",{"_placeholder":true,"num":0}]', b"\x01"))
    assert item.wire == (
        encode_ws_frame(b'451-["e",{"_placeholder":true,"num":0}]', OP_TEXT)
        + encode_ws_frame(b"\x01", OP_BINARY)
    )


def test_outgoing_wire_of_a_lone_surrogate() -> None:
    """A peer's string may hold a lone surrogate (JSON ``"\\ud800"``); re-emitting it
    must give a sendable packet, not a UnicodeEncodeError in every receiver's writer."""
    item = Outgoing.message(encode(SioPacket(SioType.EVENT, "/", ["relay", "\ud800"])))
    assert item.wire.startswith(b"\x81")


def test_byte_bound_counts_utf8_bytes() -> None:
    """``max_queued_bytes`` bounds bytes: non-ASCII text weighs its UTF-8 size."""
    item = msg("€" * 10)  # 1 + 30 bytes once encoded
    assert item.size == len(item.frames[0].encode("utf-8"))  # type: ignore[union-attr]
    session = polling(EngineConfig(max_queued_bytes=40, overflow=Overflow.DISCONNECT))
    assert session.send(item) is SendOutcome.QUEUED
    assert session.send(item) is SendOutcome.CLOSED


def test_websocket_text_frame_size_is_bytes() -> None:
    session = websocket(EngineConfig(max_payload=10))
    events = session.receive_frame("4" + "€" * 4, T0)  # 13 bytes
    assert len(events) == 1
    assert isinstance(events[0], Closed)
    assert events[0].reason is CloseReason.PAYLOAD_TOO_LARGE


def test_drop_oldest_drops_the_new_droppable_when_all_queued_are_undroppable() -> None:
    session = polling(EngineConfig(max_queued_packets=2))
    session.send(msg("u1"))
    session.send(msg("u2"))
    assert session.send(msg("d", droppable=True)) is SendOutcome.DROPPED
    assert session.dropped == 1
    assert not session.closed
    assert session.drain_for_polling() == "4u1\x1e4u2"


def test_drop_oldest_drops_nothing_for_an_item_that_cannot_fit() -> None:
    """A droppable item larger than the whole bound is dropped by itself: evicting
    older messages cannot make room for it, so none may be sacrificed."""
    session = polling(EngineConfig(max_queued_bytes=10))
    session.send(msg("old", droppable=True))  # 4 bytes
    huge = msg("x" * 20, droppable=True)
    assert session.send(huge) is SendOutcome.DROPPED
    assert session.dropped == 1
    assert session.drain_for_polling() == "4old"


def test_drop_oldest_closes_when_nothing_droppable() -> None:
    session = polling(EngineConfig(max_queued_packets=2))
    session.send(msg("u1"))
    session.send(msg("u2"))
    assert session.send(msg("u3")) is SendOutcome.CLOSED
    assert session.closed
    assert session.close_reason is CloseReason.SLOW_CONSUMER
    assert not session.has_outgoing


def test_disconnect_policy_closes_at_once() -> None:
    session = polling(EngineConfig(max_queued_packets=2, overflow=Overflow.DISCONNECT))
    session.send(msg("d1", droppable=True))
    session.send(msg("d2", droppable=True))
    assert session.send(msg("d3", droppable=True)) is SendOutcome.CLOSED
    assert session.closed
    assert session.close_reason is CloseReason.SLOW_CONSUMER
    assert session.dropped == 0


def test_multi_frame_items_count_every_frame() -> None:
    session = polling(EngineConfig(max_queued_packets=3))
    binary = Outgoing.message(('51-["e",{"_placeholder":true,"num":0}]', b"x"))
    assert session.send(binary) is SendOutcome.QUEUED
    assert session.statistics()["queued_packets"] == 2
    assert session.send(binary) is SendOutcome.CLOSED


def test_control_packets_do_not_count_against_the_bound() -> None:
    session = polling(EngineConfig(max_queued_packets=1))
    session.handle_timeout(T0 + 25)  # queues a PING
    assert session.send(msg("m")) is SendOutcome.QUEUED
    assert session.statistics()["queued_packets"] == 1
    assert session.drain_for_polling() == "2\x1e4m"


def test_dropped_items_are_counted_once_each() -> None:
    session = polling(EngineConfig(max_queued_packets=1))
    for i in range(10):
        session.send(msg(f"d{i}", droppable=True))
    assert session.dropped == 9
    assert session.drain_for_polling() == "4d9"
