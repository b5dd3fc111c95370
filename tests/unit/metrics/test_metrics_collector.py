"""MetricsCollector: windows, series, totals, rollups and rates against a ground truth.

Time is passed explicitly (``now``), as the metrics actor passes Trio time;
the tests that need a clock run under MockClock and read ``trio.current_time()``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Literal

import pytest
import trio
import trio.testing

from essen.clock import TrioWallClock
from essen.events import Histogram, MessageOutcome, MetricsSnapshot
from essen.metrics.collector import (
    HOURS_KEPT,
    MAX_SEND_API_CODES,
    Duplicate,
    Handoff,
    InboxRejected,
    MessageHandled,
    MetricsCollector,
    SendApiCall,
    WebhookReceived,
)
from essen.metrics.histogram import LatencyRecorder

EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z, on a minute and an hour boundary


class FixedWall:
    """A wall clock that says the same time whenever asked (it is asked once)."""

    def __init__(self, at: float = EPOCH) -> None:
        self.at = at

    def now(self) -> float:
        return self.at


def user(i: int) -> str:
    return f"u_{i:010d}"


@dataclass(frozen=True)
class Sent:
    """Ground truth of one message the test fed the collector."""

    at: float
    user: str
    outcome: MessageOutcome
    latency_ms: float


def feed(collector: MetricsCollector, sent: Sent) -> None:
    collector.record(WebhookReceived({"text": 1}), sent.at)
    collector.record(
        MessageHandled("text", sent.outcome, sent.user, latency_ms=sent.latency_ms), sent.at
    )


def expected(messages: list[Sent]) -> tuple[int, int, int, int, Histogram]:
    recorder = LatencyRecorder()
    for message in messages:
        recorder.record(message.latency_ms)
    return (
        len(messages),
        sum(m.outcome == "answered" for m in messages),
        sum(m.outcome == "failed" for m in messages),
        len({m.user for m in messages}),
        recorder.snapshot(),
    )


def test_thousand_messages_from_fifty_users() -> None:
    collector = MetricsCollector("bot-1", FixedWall(), start=100.0)
    # One message every 0.7 s for ~11.7 minutes; each user writes 20 in a row,
    # so short windows see few users and long ones all 50; every 10th fails.
    messages = [
        Sent(
            at=100.0 + 0.7 * i,
            user=user((i // 20) % 50),
            outcome="failed" if i % 10 == 9 else "answered",
            latency_ms=float(3 + (i * 37) % 900),
        )
        for i in range(1000)
    ]
    for message in messages:
        feed(collector, message)
    collector.record(Duplicate(), 800.0)
    collector.record(InboxRejected(), 800.0)
    collector.record(Handoff(), 800.0)
    now = 800.0
    snapshot = collector.snapshot(now)

    wall_now = EPOCH + (now - 100.0)
    second, minute = math.floor(wall_now), math.floor(wall_now) // 60

    def wall_of(m: Sent) -> float:
        return EPOCH + (m.at - 100.0)

    last_60s = [m for m in messages if second - 60 < math.floor(wall_of(m)) <= second]
    last_5m = [m for m in messages if minute - 5 < math.floor(wall_of(m)) // 60 <= minute]
    keys: tuple[Literal["1m", "5m", "60m"], ...] = ("1m", "5m", "60m")
    for key, truth in zip(keys, (last_60s, last_5m, messages), strict=True):
        window = snapshot.windows[key]
        received, answered, failed, users, latency = expected(truth)
        assert (window.received, window.answered, window.failed) == (received, answered, failed)
        assert window.unique_users == users, key
        assert window.latency.counts == latency.counts
        assert window.latency.sum_ms == pytest.approx(latency.sum_ms)
    assert snapshot.windows["1m"].unique_users < 10 < snapshot.windows["5m"].unique_users
    assert snapshot.windows["60m"].unique_users == 50

    totals = snapshot.totals
    assert totals["received"] == totals["kind:text"] == totals["webhooks"] == 1000
    assert totals["handled"] == 1000
    assert totals["outcome:answered"] == 900
    assert totals["outcome:failed"] == 100
    assert totals["duplicates"] == totals["inbox_rejected"] == totals["handoffs"] == 1
    assert snapshot.uptime_s == 700.0
    assert snapshot.at == EPOCH + 700.0
    assert snapshot.started_at == EPOCH

    # The per-minute series: 60 consecutive minutes ending now, sums matching.
    series = snapshot.per_minute
    assert len(series) == 60
    assert [b.minute for b in series] == [(minute - 59 + i) * 60 for i in range(60)]
    assert sum(b.received for b in series) == snapshot.windows["60m"].received == 1000
    for bucket in series:
        in_minute = [m for m in messages if math.floor(wall_of(m)) // 60 * 60 == bucket.minute]
        assert bucket.received == len(in_minute)
        assert bucket.failed == sum(m.outcome == "failed" for m in in_minute)


def test_snapshot_validates_and_round_trips_json() -> None:
    collector = MetricsCollector("bot-1.eu:a", FixedWall(), start=0.0)
    for i in range(300):
        feed(collector, Sent(i * 0.5, user(i % 7), "answered", 40.0 + i))
        collector.record(SendApiCall("200", 80.0 + i), i * 0.5)
    snapshot = collector.snapshot(200.0)
    payload = snapshot.model_dump_json()
    assert MetricsSnapshot.model_validate_json(payload) == snapshot
    assert MetricsSnapshot.model_validate(json.loads(payload)) == snapshot
    assert snapshot.send_api.count == 300
    assert snapshot.totals["send_api:200"] == 300
    assert set(snapshot.windows) == {"1m", "5m", "60m"}
    assert snapshot.windows["5m"].seconds == 300


def test_empty_collector_snapshot_is_valid() -> None:
    collector = MetricsCollector("bot", FixedWall(), start=5.0)
    snapshot = collector.snapshot(5.0)
    assert MetricsSnapshot.model_validate_json(snapshot.model_dump_json()) == snapshot
    assert all(w.received == 0 and w.unique_users == 0 for w in snapshot.windows.values())
    assert len(snapshot.per_minute) == 60
    assert collector.rates(5.0).per_second == 0.0
    assert [r.hour_epoch for r in collector.hourly(5.0)] == [int(EPOCH)]


def test_percentiles_of_merged_windows() -> None:
    collector = MetricsCollector("bot", FixedWall(), start=0.0)
    # Four calm minutes of 20 ms answers, then a slow current minute.
    for i in range(240):
        feed(collector, Sent(float(i), user(i % 5), "answered", 20.0))
    for i in range(30):
        feed(collector, Sent(240.0 + i, user(i % 5), "answered", 900.0))
    snapshot = collector.snapshot(269.5)  # the 1m window is seconds 210..269
    one, five = snapshot.windows["1m"].latency, snapshot.windows["5m"].latency
    # The last 60 s hold 30 slow and 30 fast answers; the 5 minutes mostly fast.
    assert one.count == 60
    assert five.count == 270
    p90_one, p50_five, p95_five = one.percentile(0.9), five.percentile(0.5), five.percentile(0.95)
    assert p90_one is not None
    assert p50_five is not None
    assert p95_five is not None
    assert 600 < p90_one <= 1000
    assert 10 < p50_five <= 25
    assert 25 < p95_five <= 1000
    # Merging the windows of two instances is exact, percentiles follow.
    merged = one.merge(five)
    assert merged.count == 330


async def test_time_jump_of_three_hours_clears_windows(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(4 * 3600):  # Trio time: the test itself jumps 3 hours
        wall = TrioWallClock()
        start = trio.current_time()
        collector = MetricsCollector("bot", wall, start=start)
        for i in range(120):
            feed(collector, Sent(trio.current_time(), user(i % 9), "answered", 30.0))
            await trio.sleep(0.5)
        before = collector.snapshot(trio.current_time())
        assert before.windows["60m"].received == 120
        assert before.windows["1m"].unique_users == 9

        # All at once, as a suspended VM or a MockClock jump would: no
        # observation, no snapshot in between to clean up on the way.
        autojump_clock.jump(3 * 3600)
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        after = collector.snapshot(now)
        for window in after.windows.values():
            assert (window.received, window.answered, window.unique_users) == (0, 0, 0)
            assert window.latency.count == 0
        assert all(b.received == 0 for b in after.per_minute)
        assert after.totals == before.totals  # totals are since start, not windowed
        assert after.uptime_s == pytest.approx(3 * 3600 + 60)
        assert after.at == pytest.approx(wall.now())
        assert collector.rates(now).per_minute == 0.0
        history = collector.hourly(now)
        assert [r.received for r in history] == [120, 0, 0, 0]
        assert history[0].unique_users_estimate == 9

        # New traffic after the jump is counted on its own, in reused slots.
        for i in range(10):
            feed(collector, Sent(trio.current_time(), user(100 + i), "failed", 2000.0))
            await trio.sleep(1)
        fresh = collector.snapshot(trio.current_time())
        for window in fresh.windows.values():
            assert (window.received, window.failed, window.unique_users) == (10, 10, 10)
        assert fresh.totals["received"] == 130


def test_hourly_rollups_keep_the_last_24_hours() -> None:
    collector = MetricsCollector("bot", FixedWall(), start=0.0)
    # Hour h gets h + 1 messages (spread over the hour) from h % 4 + 1 users.
    for hour in range(30):
        for i in range(hour + 1):
            sender = user(i % (hour % 4 + 1))
            feed(collector, Sent(hour * 3600.0 + i * 60.0, sender, "answered", 9.0))
    now = 30 * 3600.0 - 1
    history = collector.hourly(now)
    assert len(history) == HOURS_KEPT
    assert [r.hour_epoch for r in history] == [int(EPOCH) + h * 3600 for h in range(6, 30)]
    assert [r.received for r in history] == [h + 1 for h in range(6, 30)]
    assert [r.answered for r in history] == [h + 1 for h in range(6, 30)]
    assert [r.unique_users_estimate for r in history] == [
        min(h + 1, h % 4 + 1) for h in range(6, 30)
    ]
    assert all(r.latency.count == r.received for r in history)
    # Within the first day, only hours since start are reported.
    assert len(collector.hourly(0.0)) == 1


def test_rates() -> None:
    collector = MetricsCollector("bot", FixedWall(), start=0.0)
    collector.record(WebhookReceived({"text": 1}), 0.1)
    assert collector.rates(0.1).per_second == 1.0  # one message is not 10/s
    for second in range(1, 30):
        collector.record(WebhookReceived({"text": 20, "read": 30}), second + 0.5)
    rates = collector.rates(29.9)
    # The last 10 s: 9 full seconds and this one so far; all at 50 messages/s.
    assert rates.per_second == pytest.approx(500 / 9.9)
    # 29.9 s of the last minute were running: 1 + 29 * 50 messages.
    assert rates.per_minute == pytest.approx((1 + 29 * 50) / 29.9 * 60)
    later = collector.rates(100.0)
    assert later.per_second == 0.0
    assert later.per_minute == 0.0


def test_send_api_codes_are_capped() -> None:
    collector = MetricsCollector("bot", FixedWall(), start=0.0)
    for code in range(200):
        collector.record(SendApiCall(str(code), 50.0), 1.0)
    collector.record(SendApiCall("bad code with spaces/é", 50.0), 1.0)
    collector.record(SendApiCall("x" * 49, 50.0), 1.0)
    collector.record(SendApiCall("0", 50.0), 1.0)  # a known code keeps its key
    snapshot = collector.snapshot(2.0)
    codes = {k: v for k, v in snapshot.totals.items() if k.startswith("send_api:")}
    assert len(codes) == MAX_SEND_API_CODES + 1
    assert codes["send_api:0"] == 2
    assert codes["send_api:other"] == 200 - MAX_SEND_API_CODES + 2
    assert snapshot.totals["send_api"] == 203
    assert snapshot.send_api.count == 203
    assert len(snapshot.totals) <= 256


def test_late_observations_never_erase_newer_slots() -> None:
    collector = MetricsCollector("bot", FixedWall(), start=0.0)
    feed(collector, Sent(70.0, user(1), "answered", 10.0))  # second slot 70 % 60 == 10
    feed(collector, Sent(10.0, user(2), "answered", 10.0))  # 60 s older: too old for seconds
    snapshot = collector.snapshot(70.5)
    assert snapshot.windows["1m"].received == 1
    assert snapshot.windows["1m"].unique_users == 1
    assert snapshot.windows["5m"].received == 2  # the minute ring still holds minute 0
    assert snapshot.totals["received"] == 2
    assert collector.statistics().late_observations == 2  # webhook and handled


def test_observations_are_validated() -> None:
    with pytest.raises(ValueError, match="kind"):
        MessageHandled("voice", "answered", user(1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outcome"):
        MessageHandled("text", "lost", user(1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="latency"):
        MessageHandled("text", "answered", user(1), latency_ms=-1.0)
    with pytest.raises(ValueError, match="latency"):
        SendApiCall("200", math.nan)
    with pytest.raises(ValueError, match="kind"):
        WebhookReceived({"voice": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=">= 0"):
        WebhookReceived({"text": -1})
    with pytest.raises(ValueError, match="instance"):
        MetricsCollector("bot 1", FixedWall(), start=0.0)
    assert user(7) not in repr(MessageHandled("text", "answered", user(7)))


def test_collector_keeps_no_user_id() -> None:
    import gc

    collector = MetricsCollector("bot", FixedWall(), start=0.0)
    users = {user(i) for i in range(40)}
    for i, name in enumerate(sorted(users)):
        feed(collector, Sent(float(i), name, "answered", 5.0))
    seen: set[int] = set()
    stack: list[object] = [collector]
    strings: set[str] = set()
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            strings.add(obj)
        elif isinstance(obj, bytes | bytearray):
            assert not any(name.encode() in obj for name in users)
        stack.extend(gc.get_referents(obj))
    assert not strings & users
