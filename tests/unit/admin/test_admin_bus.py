"""The cluster bus's wire format: what one admin instance tells the others."""

import json

import pytest

from essen.admin.bus import MAX_MESSAGE_BYTES, BusError, Remote, Revocation, decode, encode
from essen.events import HealthChanged, Histogram, MessageBatch, MessageProcessed, MetricsSnapshot

SNAPSHOT = MetricsSnapshot(
    instance="bot-1",
    at=10.0,
    started_at=1.0,
    uptime_s=9.0,
    totals={"received": 3},
    windows={},
    send_api=Histogram(),
    per_minute=(),
)
BATCH = MessageBatch(
    instance="bot-1",
    events=(
        MessageProcessed(
            instance="bot-1",
            id="e1",
            user="u_abcdef",
            kind="text",
            direction="in",
            preview="héllo",
            outcome="answered",
            at=2.0,
        ),
    ),
)
HEALTH = HealthChanged(
    instance="bot-1",
    component="graph_api",
    status="degraded",
    previous="healthy",
    since=3.0,
    reason="429s",
)


@pytest.mark.parametrize("item", [SNAPSHOT, BATCH, HEALTH, Revocation("jti-1", 1_900_000_000)])
def test_every_kind_round_trips_with_its_origin(item: object) -> None:
    assert decode(encode("admin-a", item)) == Remote("admin-a", item)  # type: ignore[arg-type]


def test_text_stays_utf8_not_escaped() -> None:
    assert "héllo".encode() in encode("admin-a", BATCH)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"v": 2, "origin": "a", "kind": "metrics", "payload": {}}', "unsupported version 2"),
        (b'{"v": 1, "kind": "metrics", "payload": {}}', "missing origin"),
        (b'{"v": 1, "origin": "a", "kind": "emit", "payload": {}}', "unknown kind 'emit'"),
        (
            b'{"v": 1, "origin": "a", "kind": "revoked", "payload": {"jti": 1}}',
            "invalid revocation",
        ),
        (
            b'{"v": 1, "origin": "a", "kind": "metrics", "payload": {"instance": "x"}}',
            "invalid metrics payload",
        ),
    ],
)
def test_unusable_messages_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(BusError, match=reason):
        decode(data)


def test_a_payload_error_does_not_echo_the_payload() -> None:
    """Message text must not reach the logs through a validation error."""
    message = json.loads(encode("admin-a", BATCH))
    message["payload"]["events"][0]["kind"] = "secret text of a user"
    with pytest.raises(BusError) as refused:
        decode(json.dumps(message).encode())
    assert "secret" not in str(refused.value)


def test_an_oversized_message_is_refused_before_parsing() -> None:
    with pytest.raises(BusError, match="over"):
        decode(b" " * (MAX_MESSAGE_BYTES + 1))
