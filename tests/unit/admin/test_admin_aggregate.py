"""Aggregator: merging the latest snapshots of bot instances into the dashboard's numbers.

Snapshots are built by hand so every bucket is known; one test drives a real
MetricsCollector to check the trend rate against the collector's own windows.
Trio time (``now``) and wall time are plain numbers: nothing here runs Trio.
"""

from __future__ import annotations

import json
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from essen.admin.aggregate import AggregatedMetrics, Aggregator
from essen.events import LATENCY_BOUNDS_MS, Histogram, MetricsSnapshot, MinuteBucket, WindowStats
from essen.metrics.collector import MessageHandled, MetricsCollector, WebhookReceived

EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z: on a minute and an hour boundary
NBUCKETS = len(LATENCY_BOUNDS_MS) + 1
WindowName = Literal["1m", "5m", "60m"]


def hist(**by_index: int) -> Histogram:
    """A histogram with ``counts[i] = by_index[f"b{i}"]``; sum_ms is arbitrary but known."""
    counts = [0] * NBUCKETS
    for key, count in by_index.items():
        counts[int(key[1:])] = count
    return Histogram(counts=tuple(counts), sum_ms=float(sum(counts)) * 10.0)


def win(
    seconds: int,
    received: int = 0,
    answered: int = 0,
    failed: int = 0,
    unique: int = 0,
    latency: Histogram | None = None,
) -> WindowStats:
    return WindowStats(
        seconds=seconds,
        received=received,
        answered=answered,
        failed=failed,
        unique_users=unique,
        latency=latency or Histogram(),
    )


def snap(
    instance: str,
    *,
    at: float = EPOCH + 30.0,
    started_at: float = EPOCH - 3600.0,
    one: WindowStats | None = None,
    five: WindowStats | None = None,
    sixty: WindowStats | None = None,
    totals: dict[str, int] | None = None,
    send_api: Histogram | None = None,
    per_minute: tuple[MinuteBucket, ...] = (),
) -> MetricsSnapshot:
    return MetricsSnapshot(
        instance=instance,
        at=at,
        started_at=started_at,
        uptime_s=at - started_at,
        totals=totals or {},
        windows={
            "1m": one or win(60),
            "5m": five or win(300),
            "60m": sixty or win(3600),
        },
        send_api=send_api or Histogram(),
        per_minute=per_minute,
    )


def aggregator(**kwargs: int) -> Aggregator:
    return Aggregator(stale_after=15.0, down_after=60.0, **kwargs)


# -- merging -------------------------------------------------------------------


def test_three_instances_merge_into_exact_percentiles() -> None:
    agg = aggregator()
    # a: 10 answers <= 5 ms; b: 10 in (25, 50]; c: 20 in (75, 100].
    agg.ingest(snap("a", one=win(60, 12, 10, 0, 4, hist(b0=10))), now=100.0)
    agg.ingest(snap("b", one=win(60, 11, 10, 1, 3, hist(b3=10))), now=100.0)
    agg.ingest(snap("c", one=win(60, 25, 20, 2, 9, hist(b5=20))), now=100.0)
    merged = agg.merged(101.0)

    latency = merged.windows["1m"].latency
    assert latency.histogram.counts == hist(b0=10, b3=10, b5=20).counts
    assert latency.count == 40
    assert latency.mean_ms == pytest.approx(10.0)
    # Ranks in the merged 40: p50 -> 20th, the top of (25, 50];
    # p95 -> 38th, 18/20 into (75, 100]; p99 -> 39.6th, 19.6/20 into it.
    assert latency.p50_ms == pytest.approx(50.0)
    assert latency.p95_ms == pytest.approx(97.5)
    assert latency.p99_ms == pytest.approx(99.5)
    assert (merged.latency_p50_ms, merged.latency_p95_ms, merged.latency_p99_ms) == (
        latency.p50_ms,
        latency.p95_ms,
        latency.p99_ms,
    )
    # Averaging per-instance p50s would have said something else entirely.
    per_instance = [hist(b0=10), hist(b3=10), hist(b5=20)]
    averaged = sum(h.percentile(0.5) or 0.0 for h in per_instance) / 3
    assert averaged != pytest.approx(latency.p50_ms)

    assert merged.messages_per_minute == 48
    assert (merged.answered, merged.failed) == (40, 3)
    assert merged.error_rate == pytest.approx(3 / 43)
    assert merged.active_users == 16
    assert merged.active_users_upper_bound is True
    assert merged.instances_connected == 3
    assert [row.instance for row in merged.instances] == ["a", "b", "c"]


def test_empty_aggregator_and_empty_windows() -> None:
    merged = aggregator().merged(0.0)
    assert merged.instances_connected == 0
    assert merged.messages_per_minute == 0
    assert merged.messages_per_minute_previous is None
    assert merged.error_rate is None
    assert merged.latency_p50_ms is merged.latency_p95_ms is merged.latency_p99_ms is None
    assert merged.uptime_s is None
    assert set(merged.windows) == {"1m", "5m", "60m"}
    assert merged.windows["60m"].seconds == 3600
    assert merged.windows["5m"].latency.mean_ms is None


def test_unique_users_are_exact_only_when_one_instance_saw_users() -> None:
    agg = aggregator()
    agg.ingest(snap("a", one=win(60, 5, 5, 0, 4)), now=0.0)
    # A second instance that saw nobody this minute adds nothing to double count.
    agg.ingest(snap("b", one=win(60, 0, 0, 0, 0)), now=0.0)
    merged = agg.merged(1.0)
    assert merged.active_users == 4
    assert merged.active_users_upper_bound is False
    agg.ingest(snap("b", at=EPOCH + 40.0, one=win(60, 1, 1, 0, 1)), now=1.0)
    assert agg.merged(1.0).active_users == 5
    assert agg.merged(1.0).active_users_upper_bound is True


def test_send_api_totals_uptime_and_json() -> None:
    agg = aggregator()
    agg.ingest(
        snap(
            "a",
            started_at=EPOCH - 500,
            totals={"received": 7, "send_api:200": 3},
            send_api=hist(b6=3),
        ),
        now=0.0,
    )
    agg.ingest(
        snap(
            "b",
            started_at=EPOCH - 9000,
            totals={"received": 5, "duplicates": 1},
            send_api=hist(b6=1, b7=4),
        ),
        now=0.0,
    )
    merged = agg.merged(1.0)
    assert merged.totals == {"received": 12, "send_api:200": 3, "duplicates": 1}
    assert merged.send_api.histogram.counts == hist(b6=4, b7=4).counts
    assert merged.send_api.p50_ms == pytest.approx(150.0)
    assert merged.uptime_s == 9030.0
    payload = merged.model_dump_json()
    assert json.loads(payload)["windows"]["1m"]["latency"]["p95_ms"] is None
    assert AggregatedMetrics.model_validate_json(payload) == merged


# -- stale and down ------------------------------------------------------------


def test_stale_and_down_transitions_at_explicit_times() -> None:
    agg = aggregator()
    agg.ingest(snap("a", one=win(60, 10, 9, 1, 3), totals={"received": 100}), now=100.0)
    agg.ingest(snap("b", one=win(60, 4, 4, 0, 2), totals={"received": 40}), now=110.0)

    def statuses(now: float) -> dict[str, str]:
        return {row.instance: row.status for row in agg.merged(now).instances}

    assert statuses(115.0) == {"a": "healthy", "b": "healthy"}
    # "Older than stale_after": exactly 15 s is still healthy.
    assert agg.status("a", 115.0) == "healthy"
    assert statuses(115.5) == {"a": "stale", "b": "healthy"}
    merged = agg.merged(115.5)
    # The stale instance's minute is no longer "now": left out of current numbers...
    assert merged.messages_per_minute == 4
    assert merged.active_users == 2
    assert (merged.instances_connected, merged.instances_stale, merged.instances_down) == (1, 1, 0)
    # ...but its cumulative totals did happen, and it stays in the breakdown.
    assert merged.totals == {"received": 140}
    row = merged.instances[0]
    assert (row.instance, row.received, row.age_s, row.last_seen) == ("a", 10, 15.5, EPOCH + 30.0)

    assert statuses(160.0) == {"a": "stale", "b": "stale"}
    assert statuses(160.5) == {"a": "down", "b": "stale"}
    assert statuses(170.5) == {"a": "down", "b": "down"}
    merged = agg.merged(170.5)
    assert (merged.instances_connected, merged.instances_stale, merged.instances_down) == (0, 0, 2)
    assert merged.messages_per_minute == 0
    assert merged.uptime_s is None

    # A snapshot brings it back at once.
    agg.ingest(snap("a", at=EPOCH + 101.0, one=win(60, 1, 1, 0, 1)), now=171.0)
    assert statuses(171.0) == {"a": "healthy", "b": "down"}
    assert agg.status("nobody", 171.0) is None


def test_thresholds_are_validated() -> None:
    with pytest.raises(ValueError, match="stale_after"):
        Aggregator(stale_after=10.0, down_after=10.0)
    with pytest.raises(ValueError, match="stale_after"):
        Aggregator(stale_after=0.0, down_after=10.0)
    with pytest.raises(ValueError, match="max_instances"):
        Aggregator(stale_after=1.0, down_after=2.0, max_instances=0)


# -- the trend rate ------------------------------------------------------------


def test_previous_rate_divides_by_the_span_covered() -> None:
    agg = aggregator()
    # 30 s into the minute: the 5-minute window starts 240 s before this
    # minute, the last minute started at second -29, so 211 s lie between.
    agg.ingest(snap("a", one=win(60, 50), five=win(300, 250)), now=0.0)
    # A young instance: its 5-minute window starts when it did, 71 s before the last minute.
    agg.ingest(
        snap("b", started_at=EPOCH - 100.0, one=win(60, 10), five=win(300, 81)),
        now=0.0,
    )
    # Started 90 s ago: 31 s of "before" is too little to compare; left out.
    agg.ingest(
        snap("c", started_at=EPOCH - 60.0, one=win(60, 10), five=win(300, 12)),
        now=0.0,
    )
    merged = agg.merged(1.0)
    assert merged.messages_per_minute == 70
    assert merged.messages_per_minute_previous == pytest.approx(200 * 60 / 211 + 71 * 60 / 71)


def test_previous_rate_of_a_steady_collector_equals_its_rate() -> None:
    class Wall:
        def now(self) -> float:
            return float(EPOCH)

    collector = MetricsCollector("bot", Wall(), start=0.0)
    checked = 0
    for second in range(600):  # one message a second for ten minutes
        collector.record(WebhookReceived({"text": 1}), float(second))
        collector.record(MessageHandled("text", "answered", "u_0001", 20.0), float(second))
        if second % 37 == 36 and second > 300:  # at every offset into the minute, over time
            agg = aggregator()
            agg.ingest(collector.snapshot(second + 0.5), now=0.0)
            merged = agg.merged(0.0)
            assert merged.messages_per_minute == 60
            assert merged.messages_per_minute_previous == pytest.approx(60.0)
            checked += 1
    assert checked == 8


# -- eviction, restarts, order -------------------------------------------------


def test_least_recently_seen_instance_is_evicted_beyond_the_bound() -> None:
    agg = aggregator(max_instances=3)
    for now, name in enumerate("abc"):
        agg.ingest(snap(name), now=float(now))
    agg.ingest(snap("a", at=EPOCH + 40.0), now=3.0)  # a is seen again: b is now the oldest
    agg.ingest(snap("d"), now=4.0)
    assert agg.instances() == ("c", "a", "d")
    assert agg.statistics().evicted_instances == 1
    assert [row.instance for row in agg.merged(4.0).instances] == ["a", "c", "d"]


def test_instance_bound_holds_under_a_flood_of_names() -> None:
    agg = aggregator()
    for i in range(1000):
        agg.ingest(snap(f"bot-{i}"), now=float(i))
    stats = agg.statistics()
    assert stats.instances == 256
    assert stats.evicted_instances == 744
    assert agg.instances()[0] == "bot-744"
    assert len(agg.merged(1000.0).instances) == 256


def test_out_of_order_snapshot_does_not_replace_the_latest() -> None:
    agg = aggregator()
    agg.ingest(snap("a", at=EPOCH + 50.0, one=win(60, 9)), now=10.0)
    assert agg.ingest(snap("a", at=EPOCH + 40.0, one=win(60, 5)), now=11.0)
    merged = agg.merged(11.0)
    assert merged.messages_per_minute == 9
    assert merged.instances[0].last_seen == EPOCH + 50.0
    assert merged.instances[0].age_s == 0.0


def test_restart_replaces_the_snapshot_and_late_old_snapshots_are_ignored() -> None:
    agg = aggregator()
    old, new = EPOCH - 3600.0, EPOCH + 20.0
    agg.ingest(snap("a", started_at=old, totals={"received": 500}), now=0.0)
    agg.ingest(snap("a", at=EPOCH + 30.0, started_at=new, totals={"received": 3}), now=5.0)
    assert agg.merged(5.0).totals == {"received": 3}
    assert agg.merged(5.0).instances[0].started_at == new
    # A snapshot of the replaced process, delayed in flight, changes nothing.
    assert not agg.ingest(snap("a", at=EPOCH + 31.0, started_at=old), now=6.0)
    assert agg.merged(6.0).instances[0].started_at == new
    assert agg.statistics().ignored_snapshots == 1


# -- property: merged counts are the sums of instance counts ---------------------

_WINDOW_SECONDS: tuple[tuple[WindowName, int], ...] = (("1m", 60), ("5m", 300), ("60m", 3600))
_counts = st.integers(min_value=0, max_value=10_000)
_hist = st.builds(
    lambda counts: Histogram(counts=tuple(counts), sum_ms=float(sum(counts))),
    st.lists(st.integers(0, 500), min_size=NBUCKETS, max_size=NBUCKETS),
)
_window_values = st.tuples(_counts, _counts, _counts, _counts, _hist)
_minutes = st.dictionaries(st.integers(0, 59), st.tuples(_counts, _counts, _counts), max_size=60)


@st.composite
def _snapshots(draw: st.DrawFn) -> list[MetricsSnapshot]:
    names = draw(st.lists(st.sampled_from([f"bot-{i}" for i in range(8)]), unique=True))
    snapshots = []
    for name in names:
        windows: dict[WindowName, WindowStats] = {
            key: win(seconds, *draw(_window_values)) for key, seconds in _WINDOW_SECONDS
        }
        per_minute = tuple(
            MinuteBucket(minute=EPOCH + m * 60, received=r, answered=a, failed=f)
            for m, (r, a, f) in sorted(draw(_minutes).items())
        )
        snapshots.append(
            MetricsSnapshot(
                instance=name,
                at=EPOCH + 3599.0,
                started_at=EPOCH - draw(st.integers(0, 10_000)),
                uptime_s=draw(st.floats(0, 1e6)),
                totals=draw(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), _counts)),
                windows=windows,
                send_api=draw(_hist),
                per_minute=per_minute,
            )
        )
    return snapshots


@settings(max_examples=100, deadline=None)
@given(_snapshots())
def test_merged_counts_are_the_sums_of_instance_counts(snapshots: list[MetricsSnapshot]) -> None:
    agg = aggregator()
    for snapshot in snapshots:
        assert agg.ingest(snapshot, now=50.0)
    merged = agg.merged(55.0)
    assert merged.instances_connected == len(snapshots)
    keys: tuple[WindowName, ...] = ("1m", "5m", "60m")
    for key in keys:
        window = merged.windows[key]
        stats = [s.windows[key] for s in snapshots]
        assert window.received == sum(w.received for w in stats)
        assert window.answered == sum(w.answered for w in stats)
        assert window.failed == sum(w.failed for w in stats)
        assert window.unique_users == sum(w.unique_users for w in stats)
        expected = Histogram()
        for w in stats:
            expected = expected.merge(w.latency)
        assert window.latency.histogram.counts == expected.counts
        assert window.latency.histogram.sum_ms == pytest.approx(expected.sum_ms)
        assert window.latency.p95_ms == expected.percentile(0.95)
    assert merged.send_api.count == sum(s.send_api.count for s in snapshots)
    expected_totals: dict[str, int] = {}
    for s in snapshots:
        for k, v in s.totals.items():
            expected_totals[k] = expected_totals.get(k, 0) + v
    assert merged.totals == expected_totals

    series = agg.series(EPOCH + 3599.0)
    assert len(series) == 60
    for bucket in series:
        same = [b for s in snapshots for b in s.per_minute if b.minute == bucket.minute]
        assert bucket.received == sum(b.received for b in same)
        assert bucket.answered == sum(b.answered for b in same)
        assert bucket.failed == sum(b.failed for b in same)
    rollups = agg.hourly_rollups(EPOCH + 3599.0)
    for s in snapshots:
        rows = [r for r in rollups if r.instance == s.instance]
        assert sum(r.received for r in rows) == sum(b.received for b in s.per_minute)
