"""The bot end to end in-process under MockClock: webhook → answers → metrics → uplink."""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from pathlib import Path

import pytest
import trio
import trio.testing

from essen.messenger.send_policy import RetryPolicy
from essen.realtime.backoff import BackoffPolicy

from .bot_rig import bot_rig, signed, text_event, webhook_body

pytestmark = pytest.mark.harness


def event_id(mid: str) -> str:
    # The id the bot publishes: a hash of the message identity (never the raw mid).
    return hashlib.blake2b(f"mid:{mid}".encode(), digest_size=12).hexdigest()


async def test_thousand_messages_from_fifty_users_answered_once_in_order(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    rng = random.Random(5)
    users = [f"{2_000_000 + i}" for i in range(50)]
    sent: dict[str, list[str]] = defaultdict(list)
    retries = 0
    async with bot_rig(tmp_path, inbox_size=200, workers=4) as rig:
        with trio.fail_after(600):
            for n in range(1000):
                psid = rng.choice(users)
                mid = f"m_{n}"
                sent[psid].append(mid)
                body = webhook_body(text_event(psid, mid, f"hello {n}", 1_700_000_000_000 + n))
                retries += await rig.deliver(body) - 1
                if n % 10 == 0:  # Facebook redelivers now and then
                    retries += await rig.deliver(body) - 1
            await rig.fake.wait_for(
                lambda received: sum(1 for r in received if r.message is not None) >= 1000
            )
            await rig.admin.wait_until(
                lambda admin: sum(1 for e in admin.events if e["direction"] == "in") >= 1000
            )
            snapshot = await rig.handles.metrics.snapshot()
    answers = [r for r in rig.fake.received if r.message is not None]
    # Every message answered exactly once: no loss, no double answer for redeliveries.
    per_user = defaultdict(int)
    for request in answers:
        per_user[request.recipient_id] += 1
    assert dict(per_user) == {psid: len(mids) for psid, mids in sent.items()}
    # Per-user order: the bot handled each user's messages in the order sent.
    handled: dict[str, list[str]] = defaultdict(list)
    for event in rig.admin.events:
        if event["direction"] == "in":
            handled[event["user"]].append(event["id"])
    expected = sorted([event_id(m) for m in mids] for mids in sent.values())
    assert sorted(handled.values()) == expected
    # No PII left the bot: users are pseudonyms, never PSIDs.
    assert not any(e["user"] in users for e in rig.admin.events)
    # The small inbox filled up: the webhook said 503 and Facebook's retries got through.
    assert retries > 0
    assert snapshot.totals["inbox_rejected"] == retries
    # The metrics agree with what happened.
    assert snapshot.totals["received"] == 1000  # distinct events; redeliveries apart
    window = snapshot.windows["60m"]
    assert window.received == 1000
    assert window.answered == 1000
    assert window.unique_users == pytest.approx(50, abs=2)
    assert snapshot.totals["duplicates"] == 100


async def test_graph_api_failing_30_percent_retries_and_counts(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    retry = RetryPolicy(
        max_attempts=10, deadline=120.0, backoff=BackoffPolicy(initial=0.2, maximum=2.0, jitter=0.5)
    )
    async with bot_rig(tmp_path, retry=retry) as rig:
        rig.fake.fail_rate(0.3, status=500, code=2)
        with trio.fail_after(600):
            for n in range(200):
                psid = f"{3_000_000 + n % 20}"
                body = webhook_body(text_event(psid, f"m_{n}", "menu", 1_700_000_000_000 + n))
                await rig.deliver(body)
            await rig.admin.wait_until(
                lambda admin: sum(1 for e in admin.events if e["direction"] == "in") >= 200
            )
            snapshot = await rig.handles.metrics.snapshot()
    stats = rig.fake.statistics()
    sends = [r for r in rig.fake.received if r.message is not None]
    delivered = [r for r in sends if r.status == 200]
    assert len(delivered) == 200  # every answer got through in the end
    assert stats.injected > 0  # and it was not for lack of failures
    outcomes = {e["outcome"] for e in rig.admin.events if e["direction"] == "in"}
    assert outcomes == {"answered"}
    assert snapshot.windows["60m"].answered == 200
    # Each Send API call (mark_seen, typing_on, message) is counted once by outcome.
    send_calls = sum(v for k, v in snapshot.totals.items() if k.startswith("send_api"))
    assert send_calls >= 600


async def test_admin_down_ten_minutes_backoff_bounded_buffer_flush(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with bot_rig(tmp_path, admin_up=False) as rig:
        with trio.fail_after(1200):
            for n in range(30):
                body = webhook_body(text_event("4000001", f"m_{n}", "hours", 1_700_000_000_000 + n))
                assert (await rig.post(body)).status_code == 200
                await trio.sleep(20)  # simulated time passes while the admin API is down
            await trio.sleep(600 - 30 * 20)
            assert rig.admin.events == []
            await rig.start_admin()
            await rig.admin.wait_until(lambda admin: len(admin.events) >= 60)
            await rig.admin.wait_until(lambda admin: len(admin.snapshots) >= 1)
    inbound = [e for e in rig.admin.events if e["direction"] == "in"]
    # Flushed in order on return, nothing lost (30 in + 30 out fit in the buffer).
    assert [e["id"] for e in inbound] == [event_id(f"m_{n}") for n in range(30)]
    # Metrics while disconnected: only the latest snapshot was kept, not one per interval.
    assert len(rig.admin.snapshots) <= 2
    assert rig.handles.uplink_stats.snapshots_coalesced > 50


async def test_webhook_rejects_bad_input_with_clear_errors(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with bot_rig(tmp_path) as rig:
        body = webhook_body(text_event("5000001", "m_1", "hi", 1))
        assert (await rig.post(body, {"Content-Type": "application/json"})).status_code == 403
        assert (await rig.post(body, signed(body, "another-secret"))).status_code == 403
        garbage = b"{not json"
        assert (await rig.post(garbage)).status_code == 400
        not_page = b'{"object": "user", "entry": []}'
        assert (await rig.post(not_page)).status_code == 400
        too_big = b"x" * (1024 * 1024 + 1)
        assert (await rig.post(too_big)).status_code == 413
        ok = await rig.webhook.get(
            "/webhook",
            params={
                "hub.mode": "subscribe",
                "hub.verify_token": "verify-" + "v" * 32,
                "hub.challenge": "12345",
            },
        )
        assert ok.status_code == 200
        assert ok.text == "12345"
        bad = await rig.webhook.get(
            "/webhook",
            params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"},
        )
        assert bad.status_code == 403
        # Nothing bad reached the handler: no answer, not even a "seen" (only the
        # start-up token check talked to the Graph API).
        assert [r.endpoint.name for r in rig.fake.received] == ["ME"]
