"""BulkMessages and the collector's cached snapshots.

A bulk observation must count exactly what the same messages counted one by
one would, and a snapshot must not depend on which snapshots came before it
(the collector caches the merge of settled slots between snapshots).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from essen.events import MessageKind, MessageOutcome
from essen.metrics.collector import (
    BulkMessages,
    MessageHandled,
    MetricsCollector,
    Observation,
    WebhookReceived,
)
from essen.metrics.unique import FrozenSketch, user_position

EPOCH = 1_767_225_600.0  # on an hour boundary


class FixedWall:
    def now(self) -> float:
        return EPOCH


def user(i: int) -> str:
    return f"u_{i:010d}"


def one_by_one(
    collector: MetricsCollector,
    at: float,
    kind: MessageKind,
    outcomes: list[MessageOutcome],
    latencies: list[float | None],
    users: list[str],
) -> None:
    for outcome, latency, name in zip(outcomes, latencies, users, strict=True):
        collector.record(WebhookReceived({kind: 1}), at)
        collector.record(MessageHandled(kind, outcome, name, latency), at)


def test_bulk_counts_what_the_same_messages_one_by_one_count() -> None:
    """Three hours of seconds: each second's messages once one by one and once as a
    bulk observation, with the same users and response times.  Every snapshot and
    rollup is equal, bit for bit (the latencies are exact binary fractions, so the
    sums do not depend on the order of additions)."""
    single = MetricsCollector("bot-1", FixedWall(), start=0.0)
    bulk = MetricsCollector("bot-1", FixedWall(), start=0.0)
    timings = (20.0, 45.5, 120.25, 300.0)
    for second in range(0, 3 * 3600, 7):
        count = 1 + second % 5
        names = [user((second + i) % 300) for i in range(count)]
        outcomes: list[MessageOutcome] = [
            "failed" if (second + i) % 9 == 0 else "answered" for i in range(count)
        ]
        latencies: list[float | None] = [
            timings[i % 4] if outcome == "answered" else None for i, outcome in enumerate(outcomes)
        ]
        at = second + 0.25
        one_by_one(single, at, "text", outcomes, latencies, names)
        per_latency: dict[float, int] = {}
        for latency in latencies:
            if latency is not None:
                per_latency[latency] = per_latency.get(latency, 0) + 1
        bulk.record(
            BulkMessages(
                "text",
                {
                    "answered": outcomes.count("answered"),
                    "failed": outcomes.count("failed"),
                },
                tuple(per_latency.items()),
                FrozenSketch.of(user_position(name) for name in names),
            ),
            at,
        )
        if second % 301 == 0:
            assert bulk.snapshot(at + 1) == single.snapshot(at + 1)
    end = 3 * 3600 + 0.5
    assert bulk.snapshot(end) == single.snapshot(end)
    assert bulk.hourly(end) == single.hourly(end)
    assert bulk.rates(end) == single.rates(end)
    totals = bulk.snapshot(end).totals
    assert totals["received"] == totals["handled"] == totals["webhooks"] == totals["kind:text"]
    assert totals["outcome:answered"] + totals["outcome:failed"] == totals["received"]


def test_a_bulk_of_fifty_thousand_is_one_observation() -> None:
    collector = MetricsCollector("bot-1", FixedWall(), start=0.0)
    users = FrozenSketch.of(user_position(user(i)) for i in range(1000))
    collector.record(
        BulkMessages(
            "postback",
            {"answered": 49_000, "handoff": 500, "ignored": 500},
            ((12.0, 40_000), (900.0, 9_500)),
            users,
        ),
        30.0,
    )
    snapshot = collector.snapshot(59.0)
    window = snapshot.windows["1m"]
    assert (window.received, window.answered, window.failed) == (50_000, 49_000, 0)
    assert window.latency.count == 49_500
    assert window.latency.sum_ms == 12.0 * 40_000 + 900.0 * 9_500
    assert abs(window.unique_users - 1000) <= 30
    assert snapshot.totals["kind:postback"] == 50_000
    assert snapshot.totals["outcome:handoff"] == 500
    assert snapshot.totals["outcome:ignored"] == 500
    assert snapshot.per_minute[-1].received == 50_000
    assert collector.hourly(59.0)[-1].received == 50_000


def test_bulk_without_users_leaves_unique_users_alone() -> None:
    collector = MetricsCollector("bot-1", FixedWall(), start=0.0)
    collector.record(MessageHandled("text", "answered", user(1), 5.0), 1.0)
    collector.record(BulkMessages("text", {"answered": 10}), 2.0)
    collector.record(BulkMessages("text", {}), 3.0)  # nothing: no change at all
    window = collector.snapshot(4.0).windows["1m"]
    assert window.unique_users == 1
    assert window.answered == 11
    assert window.latency.count == 1  # the bulk gave no response times


def test_bulk_observations_are_validated() -> None:
    with pytest.raises(ValueError, match="kind"):
        BulkMessages("voice", {"answered": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outcome"):
        BulkMessages("text", {"lost": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=">= 0"):
        BulkMessages("text", {"answered": -1})
    with pytest.raises(ValueError, match=">= 0"):
        BulkMessages("text", {"answered": 2}, ((5.0, -1),))
    with pytest.raises(ValueError, match="latency"):
        BulkMessages("text", {"answered": 2}, ((math.inf, 1),))
    with pytest.raises(ValueError, match="3 latencies for 2 replies"):
        BulkMessages("text", {"answered": 1, "handoff": 1, "failed": 5}, ((5.0, 3),))
    bulk = BulkMessages("text", {"answered": 3, "failed": 1}, ((5.0, 2),))
    assert (bulk.received, bulk.answered, bulk.failed) == (4, 3, 1)


# -- cached snapshots ------------------------------------------------------------

# One step of a scenario: (seconds to advance, what to do).  Time may also go
# back a little (late observations, snapshots of the past), which the
# collector's caches must notice.
_steps = st.lists(
    st.tuples(
        st.one_of(
            st.floats(min_value=-25.0, max_value=25.0, allow_nan=False),
            st.floats(min_value=0.0, max_value=4000.0, allow_nan=False),
        ),
        st.sampled_from(["message", "bulk", "snapshot"]),
        st.integers(min_value=0, max_value=40),
    ),
    min_size=1,
    max_size=80,
)


def _observation(what: str, n: int) -> Observation:
    if what == "message":
        return MessageHandled("text", "answered" if n % 3 else "failed", user(n), float(n))
    outcomes: dict[MessageOutcome, int] = {"answered": n, "failed": n % 3}
    return BulkMessages(
        "text",
        outcomes,
        ((float(n) + 0.5, n),),
        FrozenSketch.of(user_position(user(n * 7 + i)) for i in range(n)),
    )


@settings(max_examples=150, deadline=None)
@given(_steps)
def test_a_snapshot_does_not_depend_on_earlier_snapshots(
    steps: list[tuple[float, str, int]],
) -> None:
    """Each snapshot of a collector that took many equals the only snapshot of a
    collector fed the same observations (whose caches are all fresh)."""
    seen = MetricsCollector("bot-1", FixedWall(), start=0.0)
    history: list[tuple[Observation, float]] = []
    now = 0.0
    for advance, what, n in steps:
        now = max(0.0, now + advance)
        if what == "snapshot":
            fresh = MetricsCollector("bot-1", FixedWall(), start=0.0)
            for observation, at in history:
                fresh.record(observation, at)
            assert seen.snapshot(now) == fresh.snapshot(now)
            continue
        observation = _observation(what, n)
        seen.record(observation, now)
        seen.record(WebhookReceived({"text": 1}), now)
        history += [(observation, now), (WebhookReceived({"text": 1}), now)]


def test_a_late_observation_reaches_a_window_already_cached() -> None:
    collector = MetricsCollector("bot-1", FixedWall(), start=0.0)
    for second in range(200):
        collector.record(MessageHandled("text", "answered", user(second), 10.0), second + 0.5)
    before = collector.snapshot(200.0)  # caches minutes 0-2 and blocks of 10 s
    collector.record(MessageHandled("text", "answered", user(999), 10.0), 150.5)  # late
    after = collector.snapshot(200.0)
    for name in ("1m", "5m", "60m"):
        assert after.windows[name].answered == before.windows[name].answered + 1
        assert after.windows[name].unique_users == before.windows[name].unique_users + 1
    assert after.per_minute[-2].answered == before.per_minute[-2].answered + 1
