"""A mutable latency recorder over the wire contract's fixed buckets.

The wire carries latency as :class:`essen.events.Histogram` (counts per
fixed bucket of :data:`essen.events.LATENCY_BOUNDS_MS`) because buckets with
shared bounds merge exactly across minutes, windows and bot instances, and
percentiles computed from merged buckets stay honest.  That model is a frozen
pydantic object, too heavy to rebuild on every message; the collector
therefore keeps one :class:`LatencyRecorder` per time bucket (a plain list of
integers, one ``bisect`` per observation) and builds a ``Histogram`` only when
a snapshot is taken.  Merging and percentiles stay with ``Histogram`` so there
is one definition of each.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from operator import add
from typing import TYPE_CHECKING, Final

from essen.events import LATENCY_BOUNDS_MS, Histogram

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ("BUCKET_COUNT", "LatencyRecorder", "bucket_index", "merge_histograms")

#: Buckets per histogram: one per upper bound, plus everything above the last.
BUCKET_COUNT: Final = len(LATENCY_BOUNDS_MS) + 1

_BOUNDS: Final = tuple(float(bound) for bound in LATENCY_BOUNDS_MS)


def bucket_index(latency_ms: float) -> int:
    """The bucket a latency falls in: the first whose upper bound is ``>= latency_ms``.

    Bounds are inclusive upper bounds (a 5 ms latency lands in the ``<= 5``
    bucket), matching how :meth:`Histogram.percentile` interpolates.

    Raises:
        ValueError: ``latency_ms`` is negative, NaN or infinite.  A latency
            like that is a bug at the caller; letting it into ``sum_ms`` would
            poison every merge downstream (and NaN does not survive JSON).
    """
    if not (0.0 <= latency_ms < math.inf):
        raise ValueError(f"latency must be finite and >= 0, got {latency_ms!r}")
    return bisect_left(_BOUNDS, latency_ms)


class LatencyRecorder:
    """Counts of observed latencies per fixed bucket, updated in place.

    Not thread-safe and not meant to be shared: one owner (the metrics actor)
    records into it and takes :meth:`snapshot` copies to publish.
    """

    __slots__ = ("counts", "sum_ms")

    def __init__(self) -> None:
        self.counts: list[int] = [0] * BUCKET_COUNT
        self.sum_ms: float = 0.0

    @property
    def count(self) -> int:
        """How many latencies were recorded."""
        return sum(self.counts)

    def record(self, latency_ms: float) -> None:
        """Count one latency.

        Raises:
            ValueError: ``latency_ms`` is negative, NaN or infinite.
        """
        self.counts[bucket_index(latency_ms)] += 1
        self.sum_ms += latency_ms

    def record_at(self, index: int, latency_ms: float) -> None:
        """Count one latency whose bucket the caller already computed.

        The collector records each latency into several recorders (second,
        minute, hour); it bisects once with :func:`bucket_index` and uses this.
        """
        self.counts[index] += 1
        self.sum_ms += latency_ms

    def add(self, other: LatencyRecorder | Histogram) -> None:
        """Add another recorder's or histogram's counts to this one."""
        self.add_counts(other.counts, other.sum_ms)

    def add_counts(self, counts: Sequence[int], sum_ms: float) -> None:
        """Add counts per bucket (``BUCKET_COUNT`` of them) and their latencies' sum.

        In place and in C (``map``): windows merge dozens of recorders per
        snapshot, and bulk observations add counts to three slots at a time.

        Raises:
            ValueError: not one count per bucket.
        """
        if len(counts) != BUCKET_COUNT:
            raise ValueError(f"expected {BUCKET_COUNT} bucket counts, got {len(counts)}")
        self.counts[:] = map(add, self.counts, counts)
        self.sum_ms += sum_ms

    def reset(self) -> None:
        """Forget everything, keeping the list (a reused ring slot allocates nothing)."""
        counts = self.counts
        for i in range(BUCKET_COUNT):
            counts[i] = 0
        self.sum_ms = 0.0

    def snapshot(self) -> Histogram:
        """An immutable wire copy of the current counts."""
        return Histogram(counts=tuple(self.counts), sum_ms=self.sum_ms)

    def __repr__(self) -> str:
        return f"LatencyRecorder(count={self.count}, sum_ms={self.sum_ms:.1f})"


def merge_histograms(histograms: Iterable[LatencyRecorder | Histogram]) -> Histogram:
    """Merge any number of recorders and histograms into one ``Histogram``.

    Equivalent to folding :meth:`Histogram.merge`, without building a pydantic
    object per step (a 60-minute window merges 60 of them per snapshot).
    """
    total = LatencyRecorder()
    for histogram in histograms:
        total.add(histogram)
    return total.snapshot()
