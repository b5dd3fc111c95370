"""Merge the metrics of every bot instance into what the dashboard and the store show.

Theory of operation
-------------------
Each bot instance publishes a :class:`~essen.events.MetricsSnapshot` every few
seconds.  The ingest path hands each validated snapshot to
:meth:`Aggregator.ingest` with the Trio time it arrived; readers ask for
:meth:`Aggregator.merged` (the dashboard's cards and the REST metrics),
:meth:`Aggregator.series` (the activity chart) and
:meth:`Aggregator.hourly_rollups` (what the store upserts).  Nothing here reads
a clock or does I/O: Trio time (``now``) and wall time (``now_wall``) are
arguments, so tests drive days of traffic in a loop.

Two kinds of state, kept apart because they age differently:

* **The latest snapshot per instance**, with its arrival time.  "Current"
  numbers (windows, rates, percentiles, active users) merge the latest
  snapshots of *live* instances only: one whose last snapshot arrived more
  than ``stale_after`` seconds ago is *stale*, more than ``down_after`` *down*,
  and either is left out of current numbers (its last 1-minute window is not
  "now" any more) but stays in the per-instance breakdown.  Cumulative
  totals are summed over every known instance: what a dead instance counted
  did happen.
* **Per-minute history per instance**, from the snapshots' ``per_minute``
  buckets.  A snapshot carries the instance's last 60 minutes, so the same
  minute arrives many times while it grows.  Within one process of an
  instance (an *incarnation*, identified by ``started_at``) a minute's counts
  only grow, so history keeps the **maximum** seen per field: re-ingesting a
  snapshot, or one arriving out of order, changes nothing.  When an instance
  restarts under the same name, the old incarnation's minutes are settled and
  the new one's are **added** on top: a restart inside a minute neither loses
  nor double counts.  Late snapshots of a retired incarnation are ignored.
  Once a minute has left every window a snapshot can carry, it can no longer
  change and is folded into its hour, exactly once.  Hourly rollups are
  therefore a pure function of what was ingested, and recomputing an hour
  gives the same numbers: the store's upsert by ``(instance, hour)`` never
  double counts.

Minute stamps are each instance's wall clock floored to the minute; clocks
that disagree by a few seconds put a message in a neighbouring minute, never
in two.  A bucket stamped later than its own snapshot's minute is refused (a
clock cannot report the future), so a bogus stamp cannot push history out.

Everything is bounded: at most ``max_instances`` instances (the least
recently seen is evicted with its history), per instance at most
``max(history_minutes, 60) + 5`` minutes (twice that just after a restart:
the old process's and the new one's) and ``history_hours + 1`` hours, and a
handful of retired incarnation stamps.

How the fleet-wide numbers are merged:

* **Unique users across instances are summed**, an upper bound: a snapshot
  carries each window's HyperLogLog *estimate*, not its sketch, and estimates
  cannot be unioned.  A user whose messages reached two instances counts
  twice.  The output says when the sum is only a bound
  (``active_users_upper_bound``); with one instance seeing users it is that
  instance's estimate.
* **Latency percentiles come from merged buckets**: the histograms of all
  live instances are added bucket-wise (the bounds are shared by contract),
  which is exact, and the percentile is read from the merged histogram (to
  the resolution of its buckets), never averaged across instances.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from pydantic import BaseModel, ConfigDict

from essen.events import Histogram, MetricsSnapshot, MinuteBucket, WindowStats
from essen.metrics.histogram import merge_histograms

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = (
    "DEFAULT_MAX_INSTANCES",
    "AggregatedMetrics",
    "Aggregator",
    "AggregatorStatistics",
    "InstanceRow",
    "InstanceStatus",
    "LatencySummary",
    "MergedWindow",
    "RollupRow",
    "WindowName",
)

MINUTE: Final = 60
HOUR: Final = 3600

#: Bot instances tracked at once; the least recently seen is evicted beyond it.
DEFAULT_MAX_INSTANCES: Final = 256

WindowName = Literal["1m", "5m", "60m"]
InstanceStatus = Literal["healthy", "stale", "down"]

_WINDOWS: Final[tuple[tuple[WindowName, int], ...]] = (
    ("1m", MINUTE),
    ("5m", 5 * MINUTE),
    ("60m", HOUR),
)
# A snapshot carries at most this many minutes (the contract's max_length):
# a minute older than that behind an instance's newest can no longer change.
_SNAPSHOT_MINUTES: Final = 60
# Slack for clocks a few minutes apart between an instance and the admin.
_SKEW_MINUTES: Final = 5
_RETIRED_KEPT: Final = 8
# The previous-window rate needs at least this much covered time to mean anything.
_MIN_PREVIOUS_SPAN_S: Final = 60.0


# -- output models ---------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LatencySummary(_Model):
    """A merged histogram and the percentiles read from it (ms; None when empty)."""

    histogram: Histogram
    count: int
    mean_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None

    @classmethod
    def of(cls, histogram: Histogram) -> LatencySummary:
        count = histogram.count
        return cls(
            histogram=histogram,
            count=count,
            mean_ms=histogram.sum_ms / count if count else None,
            p50_ms=histogram.percentile(0.50),
            p95_ms=histogram.percentile(0.95),
            p99_ms=histogram.percentile(0.99),
        )


class MergedWindow(_Model):
    """One window (1, 5 or 60 minutes) summed over the live instances.

    ``error_rate`` is ``failed / (answered + failed)``: the share of reply
    attempts that failed (receipts and ignored events do not dilute it); None
    without attempts.  ``unique_users`` is the sum of per-instance estimates,
    an upper bound (see the module docstring).
    """

    seconds: int
    received: int
    answered: int
    failed: int
    error_rate: float | None
    unique_users: int
    latency: LatencySummary


class InstanceRow(_Model):
    """One bot instance in the dashboard's breakdown.

    ``last_seen`` is the wall time the instance stamped on its last snapshot
    (its own clock); ``age_s`` is how long ago that snapshot arrived, by the
    admin's clock, which is what ``status`` is judged by.  ``uptime_s`` and the
    1-minute counts are as of that snapshot.
    """

    instance: str
    status: InstanceStatus
    last_seen: float
    age_s: float
    started_at: float
    uptime_s: float
    received: int
    answered: int
    failed: int


class AggregatedMetrics(_Model):
    """``metrics:update`` as the dashboard gets it: the fleet at one moment.

    The card fields describe *now*, the 1-minute window of the live
    instances; ``windows`` has the same numbers for 1, 5 and 60 minutes.

    * ``messages_per_minute``: received in the last 60 s.
      ``messages_per_minute_previous``: the rate (per minute) over the part of
      the 5-minute window before that minute, for the trend arrow; None when
      no live instance has run long enough to have one.
    * ``active_users``: unique users in the last minute, summed over
      instances; ``active_users_upper_bound`` is True when more than one
      instance saw users, so the sum may count a user more than once.
    * ``uptime_s``: the longest uptime among live instances; None with none.
    * ``totals``: since-start counters summed over *every* known instance,
      stale and down included.
    """

    v: Literal[1] = 1
    messages_per_minute: int
    messages_per_minute_previous: float | None
    answered: int
    failed: int
    error_rate: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    active_users: int
    active_users_upper_bound: bool
    instances_connected: int
    instances_stale: int
    instances_down: int
    uptime_s: float | None
    totals: dict[str, int]
    windows: dict[WindowName, MergedWindow]
    send_api: LatencySummary
    instances: tuple[InstanceRow, ...]


@dataclass(frozen=True, slots=True)
class RollupRow:
    """One wall-clock hour of one instance's traffic, from its per-minute buckets.

    ``hour`` is epoch seconds at the start of the hour.  The row of the
    current hour grows; rows are keyed by ``(instance, hour)`` for upserts.
    Latency and unique users are not in the per-minute buckets, so not here.
    """

    instance: str
    hour: int
    received: int
    answered: int
    failed: int


@dataclass(frozen=True, slots=True)
class AggregatorStatistics:
    """What the aggregator holds and has refused, to check that memory stays flat.

    ``ignored_buckets`` counts non-empty minute buckets refused: stamped after
    their own snapshot, or older than the minutes still held.
    """

    instances: int
    minute_cells: int
    hour_cells: int
    evicted_instances: int
    ignored_snapshots: int
    ignored_buckets: int


# -- per-instance state ----------------------------------------------------------

_Counts = tuple[int, int, int]  # received, answered, failed
_ZERO: Final[_Counts] = (0, 0, 0)


def _add(a: _Counts, b: _Counts) -> _Counts:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


class _History:
    """Per-minute and per-hour counts of one instance, across its restarts.

    A minute's value is ``settled`` (retired incarnations, summed) plus
    ``current`` (this incarnation, field-wise maximum over its snapshots).
    Minutes below ``horizon`` live only in ``hours``.
    """

    __slots__ = ("current", "history_hours", "horizon", "hours", "newest", "retention", "settled")

    def __init__(self, retention: int, history_hours: int) -> None:
        self.retention = retention
        self.history_hours = history_hours
        self.current: dict[int, _Counts] = {}
        self.settled: dict[int, _Counts] = {}
        self.hours: dict[int, _Counts] = {}
        self.newest: int | None = None
        self.horizon: int | None = None

    def retire_incarnation(self) -> None:
        for minute, counts in self.current.items():
            self.settled[minute] = _add(self.settled.get(minute, _ZERO), counts)
        self.current.clear()

    def absorb(self, snapshot: MetricsSnapshot) -> int:
        """Take a snapshot's minutes; returns how many buckets were refused."""
        refused = 0
        latest_allowed = math.floor(snapshot.at) // MINUTE
        started = math.floor(snapshot.started_at) // MINUTE
        incoming: dict[int, _Counts] = {}
        for bucket in snapshot.per_minute:
            minute = bucket.minute // MINUTE
            counts = (bucket.received, bucket.answered, bucket.failed)
            if minute > latest_allowed or (self.horizon is not None and minute < self.horizon):
                refused += counts != _ZERO
                continue
            if minute < started and counts == _ZERO:
                continue  # the collector pads minutes before it existed with zeros
            incoming[minute] = _add(incoming.get(minute, _ZERO), counts)
        for minute, counts in incoming.items():
            seen = self.current.get(minute, _ZERO)
            self.current[minute] = (
                max(seen[0], counts[0]),
                max(seen[1], counts[1]),
                max(seen[2], counts[2]),
            )
            if self.newest is None or minute > self.newest:
                self.newest = minute
        self._seal()
        return refused

    def _seal(self) -> None:
        """Fold minutes no snapshot can change any more into their hours, once."""
        if self.newest is None:
            return
        horizon = self.newest - self.retention + 1
        if self.horizon is not None and horizon <= self.horizon:
            return
        self.horizon = horizon
        for cells in (self.current, self.settled):
            for minute in [m for m in cells if m < horizon]:
                hour = minute // (HOUR // MINUTE)
                self.hours[hour] = _add(self.hours.get(hour, _ZERO), cells.pop(minute))
        oldest_hour = self.newest // (HOUR // MINUTE) - self.history_hours + 1
        for hour in [h for h in self.hours if h < oldest_hour]:
            del self.hours[hour]

    def minutes(self) -> Iterator[tuple[int, _Counts]]:
        """Every minute held at minute resolution, with its value."""
        for minute, counts in self.current.items():
            yield minute, _add(counts, self.settled.get(minute, _ZERO))
        for minute, counts in self.settled.items():
            if minute not in self.current:
                yield minute, counts

    def by_hour(self) -> dict[int, _Counts]:
        totals = dict(self.hours)
        for minute, counts in self.minutes():
            hour = minute // (HOUR // MINUTE)
            totals[hour] = _add(totals.get(hour, _ZERO), counts)
        return totals


class _Instance:
    __slots__ = ("history", "last_seen", "retired", "snapshot")

    def __init__(self, snapshot: MetricsSnapshot, now: float, history: _History) -> None:
        self.snapshot = snapshot
        self.last_seen = now
        self.history = history
        self.retired: deque[float] = deque(maxlen=_RETIRED_KEPT)


def _window(snapshot: MetricsSnapshot, name: WindowName) -> WindowStats | None:
    return snapshot.windows.get(name)


def _previous_per_minute(snapshot: MetricsSnapshot) -> float | None:
    """Received per minute over the 5-minute window minus the last minute.

    The collector's 5-minute window is minute-aligned (the current minute so
    far and the 4 before it) and its 1-minute window slides by the second, so
    their difference covers from the start of the 5-minute window (or the
    instance's start, if later) up to the start of the last 60 s: between
    181 and 240 s.  Dividing by the span actually covered keeps a young or
    mid-minute instance from reading as a drop.
    """
    one, five = _window(snapshot, "1m"), _window(snapshot, "5m")
    if one is None or five is None:
        return None
    second = math.floor(snapshot.at)
    window_start = max(float(second - second % MINUTE - 4 * MINUTE), snapshot.started_at)
    span = (second - (MINUTE - 1)) - window_start
    if span < _MIN_PREVIOUS_SPAN_S:
        return None
    return max(0, five.received - one.received) * MINUTE / span


def _merge_windows(snapshots: list[MetricsSnapshot]) -> dict[WindowName, MergedWindow]:
    merged: dict[WindowName, MergedWindow] = {}
    for name, seconds in _WINDOWS:
        stats = [w for w in (_window(s, name) for s in snapshots) if w is not None]
        answered = sum(w.answered for w in stats)
        failed = sum(w.failed for w in stats)
        attempts = answered + failed
        merged[name] = MergedWindow(
            seconds=seconds,
            received=sum(w.received for w in stats),
            answered=answered,
            failed=failed,
            error_rate=failed / attempts if attempts else None,
            unique_users=sum(w.unique_users for w in stats),
            latency=LatencySummary.of(merge_histograms(w.latency for w in stats)),
        )
    return merged


# -- the aggregator --------------------------------------------------------------


class Aggregator:
    """The latest snapshot and the minute history of every bot instance, merged on demand.

    Args:
        stale_after: seconds without a snapshot after which an instance is stale.
        down_after: seconds without a snapshot after which it is down
            (``> stale_after``).
        history_minutes: length of :meth:`series`.
        history_hours: hours of :meth:`hourly_rollups` kept per instance.
        max_instances: instances tracked; the least recently seen is evicted
            (with its history) when a new one would exceed it.

    Raises:
        ValueError: a bound is not positive or ``down_after <= stale_after``.

    Owned by one task; methods never block.
    """

    def __init__(
        self,
        *,
        stale_after: float,
        down_after: float,
        history_minutes: int = 60,
        history_hours: int = 24 * 7,
        max_instances: int = DEFAULT_MAX_INSTANCES,
    ) -> None:
        if not 0 < stale_after < down_after:
            raise ValueError("need 0 < stale_after < down_after")
        if history_minutes < 1 or history_hours < 1 or max_instances < 1:
            raise ValueError("history_minutes, history_hours and max_instances must be >= 1")
        self.stale_after = stale_after
        self.down_after = down_after
        self.history_minutes = history_minutes
        self.history_hours = history_hours
        self.max_instances = max_instances
        self._retention = max(history_minutes, _SNAPSHOT_MINUTES) + _SKEW_MINUTES
        # Ordered by last ingest: the first entry is the least recently seen.
        self._instances: OrderedDict[str, _Instance] = OrderedDict()
        self._evicted = 0
        self._ignored_snapshots = 0
        self._ignored_buckets = 0

    def ingest(self, snapshot: MetricsSnapshot, now: float) -> bool:
        """Take one instance's snapshot, arrived at Trio time ``now``.

        Returns False when the snapshot was ignored: it comes from a process
        of that instance that has since been replaced (a restart), so its
        numbers are already settled.  A snapshot older (by ``at``) than the
        instance's latest still refreshes ``last_seen`` and may fill minutes,
        but does not replace the latest.
        """
        name = snapshot.instance
        record = self._instances.get(name)
        if record is None:
            record = _Instance(snapshot, now, _History(self._retention, self.history_hours))
            self._instances[name] = record
            while len(self._instances) > self.max_instances:
                self._instances.popitem(last=False)
                self._evicted += 1
        else:
            if snapshot.started_at in record.retired:
                self._ignored_snapshots += 1
                return False
            if snapshot.started_at != record.snapshot.started_at:
                record.retired.append(record.snapshot.started_at)
                record.history.retire_incarnation()
                record.snapshot = snapshot
            elif snapshot.at >= record.snapshot.at:
                record.snapshot = snapshot
            record.last_seen = max(record.last_seen, now)
            self._instances.move_to_end(name)
        self._ignored_buckets += record.history.absorb(snapshot)
        return True

    def status(self, instance: str, now: float) -> InstanceStatus | None:
        """An instance's status at Trio time ``now``; None if it is not tracked."""
        record = self._instances.get(instance)
        return None if record is None else self._status(record, now)

    def _status(self, record: _Instance, now: float) -> InstanceStatus:
        age = now - record.last_seen
        if age > self.down_after:
            return "down"
        if age > self.stale_after:
            return "stale"
        return "healthy"

    def merged(self, now: float) -> AggregatedMetrics:
        """The fleet at Trio time ``now``: cards, merged windows, totals and the breakdown."""
        rows: list[InstanceRow] = []
        live: list[MetricsSnapshot] = []
        totals: dict[str, int] = {}
        for name in sorted(self._instances):
            record = self._instances[name]
            snapshot = record.snapshot
            status = self._status(record, now)
            if status == "healthy":
                live.append(snapshot)
            for key, value in snapshot.totals.items():
                totals[key] = totals.get(key, 0) + value
            one = _window(snapshot, "1m")
            rows.append(
                InstanceRow(
                    instance=name,
                    status=status,
                    last_seen=snapshot.at,
                    age_s=max(0.0, now - record.last_seen),
                    started_at=snapshot.started_at,
                    uptime_s=snapshot.uptime_s,
                    received=one.received if one else 0,
                    answered=one.answered if one else 0,
                    failed=one.failed if one else 0,
                )
            )
        windows = _merge_windows(live)
        current = windows["1m"]
        previous = [p for p in map(_previous_per_minute, live) if p is not None]
        # The sum is exact when at most one instance saw anyone this minute.
        contributing = sum(1 for s in live if (w := _window(s, "1m")) and w.unique_users)
        return AggregatedMetrics(
            messages_per_minute=current.received,
            messages_per_minute_previous=sum(previous) if previous else None,
            answered=current.answered,
            failed=current.failed,
            error_rate=current.error_rate,
            latency_p50_ms=current.latency.p50_ms,
            latency_p95_ms=current.latency.p95_ms,
            latency_p99_ms=current.latency.p99_ms,
            active_users=current.unique_users,
            active_users_upper_bound=contributing > 1,
            instances_connected=len(live),
            instances_stale=sum(1 for row in rows if row.status == "stale"),
            instances_down=sum(1 for row in rows if row.status == "down"),
            uptime_s=max((s.uptime_s for s in live), default=None),
            totals=totals,
            windows=windows,
            send_api=LatencySummary.of(merge_histograms(s.send_api for s in live)),
            instances=tuple(rows),
        )

    def series(self, now_wall: float) -> list[MinuteBucket]:
        """The last ``history_minutes`` minutes, oldest first, summed over instances.

        Ends at the minute containing ``now_wall`` (epoch seconds); minutes
        nobody reported are zeros.  Every known instance counts, stale and down
        included: their past minutes did happen.
        """
        end = math.floor(now_wall) // MINUTE
        start = end - self.history_minutes + 1
        sums = [_ZERO] * self.history_minutes
        for record in self._instances.values():
            for minute, counts in record.history.minutes():
                if start <= minute <= end:
                    sums[minute - start] = _add(sums[minute - start], counts)
        return [
            MinuteBucket(minute=(start + i) * MINUTE, received=c[0], answered=c[1], failed=c[2])
            for i, c in enumerate(sums)
        ]

    def hourly_rollups(self, now_wall: float, *, since: float | None = None) -> list[RollupRow]:
        """Per (instance, hour) totals for the last ``history_hours`` hours up to ``now_wall``.

        Sorted by hour, then instance; only hours an instance reported minutes
        in.  Pure: the same ingested snapshots always give the same rows.
        ``since`` (epoch seconds) keeps only hours that end after it: a store
        flushing every few minutes needs ``since=now_wall - 2 * 3600`` at most,
        because older hours no longer change.
        """
        end = math.floor(now_wall) // HOUR
        first = end - self.history_hours + 1
        if since is not None:
            first = max(first, math.floor(since) // HOUR)
        rows = [
            RollupRow(name, hour * HOUR, *counts)
            for name, record in self._instances.items()
            for hour, counts in record.history.by_hour().items()
            if first <= hour <= end
        ]
        rows.sort(key=lambda row: (row.hour, row.instance))
        return rows

    def instances(self) -> tuple[str, ...]:
        """Names of the tracked instances, least recently seen first."""
        return tuple(self._instances)

    def statistics(self) -> AggregatorStatistics:
        """Sizes of what is held (bounded) and counts of what was refused."""
        histories = [record.history for record in self._instances.values()]
        return AggregatorStatistics(
            instances=len(self._instances),
            minute_cells=sum(len(h.current) + len(h.settled) for h in histories),
            hour_cells=sum(len(h.hours) for h in histories),
            evicted_instances=self._evicted,
            ignored_snapshots=self._ignored_snapshots,
            ignored_buckets=self._ignored_buckets,
        )
