"""LatencyRecorder: bucketing over the wire bounds, snapshots, merges, percentiles."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from essen.events import LATENCY_BOUNDS_MS, Histogram
from essen.metrics.histogram import (
    BUCKET_COUNT,
    LatencyRecorder,
    bucket_index,
    merge_histograms,
)

latencies = st.lists(
    st.floats(min_value=0, max_value=60_000, allow_nan=False, allow_infinity=False),
    max_size=200,
)


def test_bounds_are_inclusive_upper_bounds() -> None:
    assert bucket_index(0.0) == 0
    assert bucket_index(5.0) == 0
    assert bucket_index(5.0001) == 1
    assert bucket_index(10.0) == 1
    assert bucket_index(20_000.0) == len(LATENCY_BOUNDS_MS) - 1
    assert bucket_index(20_000.1) == len(LATENCY_BOUNDS_MS)  # the overflow bucket
    assert len(Histogram().counts) == BUCKET_COUNT


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf, -math.inf])
def test_rejects_impossible_latencies(bad: float) -> None:
    recorder = LatencyRecorder()
    with pytest.raises(ValueError, match="latency"):
        recorder.record(bad)
    assert recorder.count == 0
    assert recorder.sum_ms == 0


def test_snapshot_is_a_wire_histogram_and_independent() -> None:
    recorder = LatencyRecorder()
    for latency in (1, 7, 7, 30, 99_999):
        recorder.record(latency)
    histogram = recorder.snapshot()
    assert histogram.counts[0] == 1
    assert histogram.counts[1] == 2
    assert histogram.counts[3] == 1
    assert histogram.counts[-1] == 1
    assert histogram.sum_ms == 1 + 7 + 7 + 30 + 99_999
    recorder.record(1)
    assert histogram.count == 5  # the snapshot did not move
    assert Histogram.model_validate_json(histogram.model_dump_json()) == histogram


def test_reset_keeps_storage() -> None:
    recorder = LatencyRecorder()
    counts = recorder.counts
    recorder.record(12)
    recorder.reset()
    assert recorder.counts is counts
    assert recorder.snapshot() == Histogram()


@given(latencies, latencies)
def test_merge_helpers_agree_with_histogram_merge(left: list[float], right: list[float]) -> None:
    a, b = LatencyRecorder(), LatencyRecorder()
    for latency in left:
        a.record(latency)
    for latency in right:
        b.record(latency)
    expected = a.snapshot().merge(b.snapshot())
    merged = merge_histograms([a, b.snapshot()])
    assert merged.counts == expected.counts
    assert merged.sum_ms == pytest.approx(expected.sum_ms)
    both = LatencyRecorder()
    for latency in left + right:
        both.record(latency)
    assert both.snapshot().counts == expected.counts


def test_percentile_of_a_merged_window() -> None:
    # Two minutes: one fast (10 ms answers), one slow (400 ms answers).
    fast, slow = LatencyRecorder(), LatencyRecorder()
    for _ in range(90):
        fast.record(8)
    for _ in range(10):
        slow.record(390)
    window = merge_histograms([fast, slow])
    assert window.count == 100
    p50 = window.percentile(0.5)
    p95 = window.percentile(0.95)
    assert p50 is not None
    assert p95 is not None
    assert 5 < p50 <= 10  # inside the (5, 10] bucket
    assert 250 < p95 <= 400  # inside the (250, 400] bucket
    assert merge_histograms([]).percentile(0.5) is None


def test_add_counts_adds_in_place_and_checks_the_shape() -> None:
    recorder = LatencyRecorder()
    counts = recorder.counts
    recorder.add_counts([1] * BUCKET_COUNT, 7.5)
    recorder.add_counts(tuple(range(BUCKET_COUNT)), 0.5)
    assert recorder.counts is counts  # a ring slot's list is reused, never replaced
    assert recorder.counts == [1 + i for i in range(BUCKET_COUNT)]
    assert recorder.sum_ms == 8.0
    with pytest.raises(ValueError, match="bucket counts"):
        recorder.add_counts([1] * (BUCKET_COUNT - 1), 1.0)
