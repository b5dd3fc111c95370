"""Aggregator history: the 60-minute activity series and the hourly rollups.

Real MetricsCollectors stand in for bot instances where the point is how
their minute stamps line up (clocks a few seconds apart, snapshots every
30 s); hand-built snapshots where the point is one exact bucket.
"""

from __future__ import annotations

import math
import random

from essen.admin.aggregate import Aggregator, RollupRow
from essen.events import Histogram, MessageOutcome, MetricsSnapshot, MinuteBucket, WindowStats
from essen.metrics.collector import MessageHandled, MetricsCollector, WebhookReceived

EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z: on a minute and an hour boundary
M = EPOCH // 60  # minute index of EPOCH


class FixedWall:
    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> float:
        return self.at


def aggregator(**kwargs: int) -> Aggregator:
    return Aggregator(stale_after=15.0, down_after=60.0, **kwargs)


def bucket(minute: int, received: int, answered: int = 0, failed: int = 0) -> MinuteBucket:
    """A bucket for minute index ``minute`` (minutes since the epoch)."""
    return MinuteBucket(minute=minute * 60, received=received, answered=answered, failed=failed)


def snap(
    instance: str,
    at: float,
    buckets: tuple[MinuteBucket, ...],
    started_at: float = EPOCH - 7200.0,
) -> MetricsSnapshot:
    empty = WindowStats(
        seconds=60, received=0, answered=0, failed=0, unique_users=0, latency=Histogram()
    )
    return MetricsSnapshot(
        instance=instance,
        at=at,
        started_at=started_at,
        uptime_s=max(0.0, at - started_at),
        totals={},
        windows={"1m": empty},
        send_api=Histogram(),
        per_minute=buckets,
    )


def received(series: list[MinuteBucket]) -> dict[int, int]:
    """Non-zero minutes of a series, by minute index."""
    return {b.minute // 60: b.received for b in series if b.received}


# -- the series ----------------------------------------------------------------


def test_series_is_sixty_minutes_ending_now_with_zeros() -> None:
    agg = aggregator()
    agg.ingest(snap("a", EPOCH + 10.0, (bucket(M - 2, 4, 4), bucket(M, 1, 1))), now=0.0)
    agg.ingest(snap("b", EPOCH + 12.0, (bucket(M - 2, 3, 2, 1), bucket(M - 70, 9))), now=0.0)
    series = agg.series(EPOCH + 59.9)
    assert len(series) == 60
    assert [b.minute for b in series] == [(M - 59 + i) * 60 for i in range(60)]
    assert series[-3] == MinuteBucket(minute=(M - 2) * 60, received=7, answered=6, failed=1)
    assert series[-1].received == 1
    assert received(series) == {M - 2: 7, M: 1}  # minute M-70 is outside the hour

    # Across the minute boundary the window moves by one: the newest minute is
    # an empty one, and what was there shifts left.
    later = agg.series(EPOCH + 60.0)
    assert later[-1] == MinuteBucket(minute=(M + 1) * 60, received=0, answered=0, failed=0)
    assert later[-2].received == 1
    assert later[:-1] == series[1:]
    assert received(agg.series(EPOCH + 58 * 60.0)) == {M: 1}  # M-2 slid out


def test_series_length_follows_history_minutes() -> None:
    agg = aggregator(history_minutes=15)
    agg.ingest(snap("a", EPOCH + 10.0, (bucket(M, 2),)), now=0.0)
    series = agg.series(EPOCH + 10.0)
    assert len(series) == 15
    assert series[-1].received == 2


def test_clocks_seconds_apart_put_each_message_in_exactly_one_minute() -> None:
    # Three instances whose clocks read the true time +0 s, +3 s and -4 s.
    offsets = {"a": 0.0, "b": 3.0, "c": -4.0}
    collectors = {
        name: MetricsCollector(name, FixedWall(EPOCH + off), start=0.0)
        for name, off in offsets.items()
    }
    truth: dict[int, int] = {}
    sent = 0
    # Messages around the boundary between minute M and M+1, true time 50..70 s.
    for name, collector in collectors.items():
        for i in range(21):
            t = 50.0 + i
            collector.record(WebhookReceived({"text": 1}), t)
            collector.record(MessageHandled("text", "answered", f"u_{i:06d}", 10.0), t)
            minute = math.floor(EPOCH + offsets[name] + t) // 60
            truth[minute] = truth.get(minute, 0) + 1
            sent += 1
    assert truth == {M: 10 + 7 + 14, M + 1: 11 + 14 + 7}

    # At true time 58.5 the admin (offset 0) is still in minute M; instance b
    # already stamps minute M+1.  That minute is not shown yet, but not lost.
    agg = aggregator()
    for collector in collectors.values():
        agg.ingest(collector.snapshot(58.5), now=58.5)
    early = received(agg.series(EPOCH + 58.5))
    assert set(early) == {M}
    assert agg.statistics().ignored_buckets == 0

    for collector in collectors.values():
        agg.ingest(collector.snapshot(75.0), now=75.0)
    series = agg.series(EPOCH + 75.0)
    assert received(series) == truth
    assert sum(b.received for b in series) == sent
    assert sum(b.answered for b in series) == sent
    # Re-ingesting the same snapshots (a re-sent update) changes nothing.
    for collector in collectors.values():
        agg.ingest(collector.snapshot(75.0), now=76.0)
    assert agg.series(EPOCH + 75.0) == series


def test_a_bucket_stamped_after_its_own_snapshot_is_refused() -> None:
    agg = aggregator()
    # The snapshot says it is minute M; a bucket for M+500 is a broken clock.
    agg.ingest(snap("a", EPOCH + 30.0, (bucket(M, 2), bucket(M + 500, 7))), now=0.0)
    assert received(agg.series(EPOCH + 30.0)) == {M: 2}
    assert agg.statistics().ignored_buckets == 1
    assert agg.statistics().minute_cells == 1


# -- hourly rollups ------------------------------------------------------------


def drive(
    hours: float, *, every: float = 30.0, seed: int = 7
) -> tuple[list[MetricsSnapshot], dict[tuple[str, int], int]]:
    """Two collectors (clocks 2 s apart) with random traffic, snapshots every ``every`` s.

    Returns the snapshots and the true received count per (instance, hour).
    """
    rng = random.Random(seed)
    offsets = {"a": 0.0, "b": 2.0}
    collectors = {
        name: MetricsCollector(name, FixedWall(EPOCH + 1800 + off), start=0.0)
        for name, off in offsets.items()
    }
    truth: dict[tuple[str, int], int] = {}
    snapshots: list[MetricsSnapshot] = []
    t = 0.0
    next_snapshot = every
    while t < hours * 3600:
        t += rng.expovariate(1 / 4.0)
        while next_snapshot <= t:
            snapshots.extend(c.snapshot(next_snapshot) for c in collectors.values())
            next_snapshot += every
        name = rng.choice("ab")
        collector = collectors[name]
        collector.record(WebhookReceived({"text": 1}), t)
        outcome: MessageOutcome = "failed" if rng.random() < 0.1 else "answered"
        collector.record(MessageHandled("text", outcome, "u_000001", 10.0), t)
        hour = math.floor(EPOCH + 1800 + offsets[name] + t) // 3600 * 3600
        truth[name, hour] = truth.get((name, hour), 0) + 1
    snapshots.extend(c.snapshot(next_snapshot) for c in collectors.values())
    return snapshots, truth


def test_hourly_rollups_match_the_traffic_and_are_idempotent() -> None:
    snapshots, truth = drive(hours=5)
    agg = aggregator()
    for i, snapshot in enumerate(snapshots):
        agg.ingest(snapshot, now=float(i))
    now_wall = snapshots[-1].at
    rows = agg.hourly_rollups(now_wall)
    assert {(r.instance, r.hour): r.received for r in rows if r.received} == truth
    assert [(r.hour, r.instance) for r in rows] == sorted((r.hour, r.instance) for r in rows)
    assert all(r.answered + r.failed == r.received for r in rows)
    assert agg.statistics().ignored_buckets == 0  # an in-order stream loses nothing
    # Asking again, and ingesting everything again in any order, gives the same rows:
    # an upsert by (instance, hour) can never double count.
    assert agg.hourly_rollups(now_wall) == rows
    shuffled = snapshots[-400:]
    random.Random(3).shuffle(shuffled)
    for snapshot in shuffled:
        agg.ingest(snapshot, now=float(len(snapshots)))
    assert agg.hourly_rollups(now_wall) == rows

    # The same traffic, ingested by a fresh aggregator, gives the same rows too.
    again = aggregator()
    for i, snapshot in enumerate(snapshots):
        again.ingest(snapshot, now=float(i))
    assert again.hourly_rollups(now_wall) == rows

    # ``since`` keeps the hours that can still change.
    recent = agg.hourly_rollups(now_wall, since=now_wall - 3600)
    assert recent == [r for r in rows if r.hour >= (math.floor(now_wall) - 3600) // 3600 * 3600]
    assert 2 <= len(recent) <= 4


def test_rollups_keep_only_history_hours() -> None:
    snapshots, truth = drive(hours=6, every=60.0)
    agg = aggregator(history_hours=3)
    for i, snapshot in enumerate(snapshots):
        agg.ingest(snapshot, now=float(i))
    now_wall = snapshots[-1].at
    rows = agg.hourly_rollups(now_wall)
    end = math.floor(now_wall) // 3600 * 3600
    assert {r.hour for r in rows} == {end - 7200, end - 3600, end}
    assert {(r.instance, r.hour): r.received for r in rows} == {
        key: count for key, count in truth.items() if key[1] >= end - 7200
    }
    assert agg.statistics().hour_cells <= 2 * 4


def test_a_restart_within_a_minute_adds_both_processes() -> None:
    agg = aggregator()
    first, second = EPOCH - 600.0, EPOCH + 20.0
    agg.ingest(snap("a", EPOCH + 15.0, (bucket(M - 1, 2), bucket(M, 5)), first), now=0.0)
    # The process dies after 20 s and comes back; its new collector knows
    # nothing of the old minute M and pads what came before it with zeros.
    agg.ingest(snap("a", EPOCH + 50.0, (bucket(M - 1, 0), bucket(M, 3)), second), now=40.0)
    assert received(agg.series(EPOCH + 50.0)) == {M - 1: 2, M: 8}
    # More of the new process, and a late snapshot of the old one: 8 -> 10, not 16.
    agg.ingest(snap("a", EPOCH + 58.0, (bucket(M, 5),), second), now=48.0)
    assert not agg.ingest(snap("a", EPOCH + 19.0, (bucket(M, 6),), first), now=49.0)
    assert received(agg.series(EPOCH + 59.0)) == {M - 1: 2, M: 10}
    rows = agg.hourly_rollups(EPOCH + 59.0)
    assert rows == [
        RollupRow("a", EPOCH - 3600, 2, 0, 0),
        RollupRow("a", EPOCH, 10, 0, 0),
    ]


def test_minutes_before_an_instance_started_make_no_rows() -> None:
    agg = aggregator()
    started = EPOCH + 600.0
    padding = tuple(bucket(M - 49 + i, 0) for i in range(60))  # M-49 .. M+10, all quiet
    agg.ingest(snap("a", EPOCH + 630.0, padding, started), now=0.0)
    assert [r.hour for r in agg.hourly_rollups(EPOCH + 700.0)] == [EPOCH]
    assert agg.statistics().minute_cells == 1  # only minute M+10, when it existed


def test_memory_is_flat_however_long_it_runs() -> None:
    agg = aggregator(history_hours=4)
    sizes = []
    for minute in range(24 * 60):  # a day, three instances, one snapshot a minute
        at = EPOCH + minute * 60.0 + 30.0
        for name in ("a", "b", "c"):
            buckets = tuple(bucket(M + minute - 59 + i, 1 + i % 3) for i in range(60))
            agg.ingest(snap(name, at, buckets), now=minute * 60.0)
        if minute % 60 == 59:
            stats = agg.statistics()
            sizes.append((stats.minute_cells, stats.hour_cells))
    # Held: at most 65 minutes and 5 hours per instance, and constant once full.
    assert max(cells for cells, _ in sizes) <= 3 * 65
    assert max(hours for _, hours in sizes) <= 3 * 5
    assert len(set(sizes[6:])) == 1
    rows = agg.hourly_rollups(at)
    assert len(rows) == 3 * 4
    # A minute first arrives as the newest bucket (3) and keeps its maximum.
    assert {r.received for r in rows} == {60 * 3}
