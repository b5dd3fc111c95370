"""The bot's in-memory metrics store: ring buffers by second, minute and hour.

Theory of operation
-------------------
The metrics actor owns one :class:`MetricsCollector`.  Other actors send it
typed observations (:class:`WebhookReceived`, :class:`MessageHandled`, ...);
it calls :meth:`MetricsCollector.record` with the Trio time of each, and
periodically :meth:`MetricsCollector.snapshot` to publish ``metrics:update``.
Nothing here reads a clock or does I/O: time is an argument, which is what
lets tests drive a day of traffic in a loop and MockClock drive the actor.

Storage follows the deployment guide ("in-memory circular buffers, hourly
aggregation, automatic cleanup, no database writes for real-time data"):

* three rings of preallocated slots — 60 one-second slots (the exact sliding
  1-minute window and the rates), 60 one-minute slots (the 5/60-minute
  windows and the per-minute series) and 24 one-hour slots (the history);
* a slot belongs to the time index it was last written for.  Writing to a
  slot whose index is older resets it in place; readers only accept slots
  whose index lies in the window they read.  Cleanup is therefore automatic
  and costs nothing, a jump of hours at once (MockClock, a suspended VM)
  leaves no stale data visible, and memory does not grow with running time;
* totals since start in one counter dict whose key set is bounded: the
  Messenger kinds and outcomes are closed sets, and Send API outcome codes
  are capped at :data:`MAX_SEND_API_CODES` distinct keys, the rest counted
  under ``send_api:other``.

Every slot has its own latency recorder and unique-users sketch, so windows
are merges: counts add, histograms add bucket-wise, sketches take the
register-wise maximum.  Users are never stored: a pseudonymous id is hashed
into a register update on arrival and dropped.

Times: buckets are aligned to wall-clock seconds, minutes and hours so that
minute stamps of several bot instances line up at the admin API.  The wall
clock is read once, at construction, and every stamp is derived from the Trio
time by that fixed offset: a wall clock that steps later (NTP, a manual
change) cannot reorder buckets, and the same Trio times give the same stamps.

The 1-minute window slides by the second (the last 60 one-second slots).  The
5- and 60-minute windows are minute-aligned: the current minute so far plus
the 4 (resp. 59) complete minutes before it, so the 60-minute window equals
the sum of the per-minute series.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, assert_never, get_args

from essen.events import (
    Histogram,
    MessageKind,
    MessageOutcome,
    MetricsSnapshot,
    MinuteBucket,
    WindowStats,
)
from essen.metrics.histogram import LatencyRecorder, bucket_index, merge_histograms
from essen.metrics.unique import UniqueSketch, user_position

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from essen.clock import WallClock

__all__ = (
    "HOURS_KEPT",
    "MAX_SEND_API_CODES",
    "CollectorStatistics",
    "Duplicate",
    "Handoff",
    "HourlyRollup",
    "InboxRejected",
    "MessageHandled",
    "MetricsCollector",
    "Observation",
    "Rates",
    "SendApiCall",
    "WebhookReceived",
)

SECOND: Final = 1
MINUTE: Final = 60
HOUR: Final = 3600

#: Hourly rollups kept (the current hour included).
HOURS_KEPT: Final = 24
#: Distinct Send API outcome codes counted under their own key.
MAX_SEND_API_CODES: Final = 64

_SECONDS_KEPT: Final = 60
_MINUTES_KEPT: Final = 60
_RATE_SECONDS: Final = 10

_KINDS: Final[frozenset[str]] = frozenset(get_args(MessageKind))
_OUTCOMES: Final[frozenset[str]] = frozenset(get_args(MessageOutcome))
# The same rule as events._Name, so a snapshot never fails validation on a key.
_NAME: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_CODE: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,48}")

_KIND_KEYS: Final = {kind: f"kind:{kind}" for kind in _KINDS}
_OUTCOME_KEYS: Final = {outcome: f"outcome:{outcome}" for outcome in _OUTCOMES}
_SEND_API_OTHER: Final = "send_api:other"


# -- observations --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookReceived:
    """One verified webhook POST and how many Messenger events of each kind it carried.

    These events are what the windows count as ``received``, at arrival, so
    the dashboard sees load before handling finishes (or fails).
    """

    events_by_kind: Mapping[MessageKind, int]

    def __post_init__(self) -> None:
        for kind, count in self.events_by_kind.items():
            if kind not in _KINDS:
                raise ValueError(f"unknown message kind {kind!r}")
            if count < 0:
                raise ValueError("event counts must be >= 0")


@dataclass(frozen=True, slots=True)
class MessageHandled:
    """One Messenger event finished, with its outcome.

    ``user`` is the pseudonymous id (never a page-scoped id); the collector
    hashes it into the unique-users sketches and keeps nothing else of it.
    ``latency_ms`` is from receipt to reply, when there was a reply to time.
    """

    kind: MessageKind
    outcome: MessageOutcome
    user: str = field(repr=False)
    latency_ms: float | None = None
    # Derived once, where the observation is made: the register update the
    # user causes and the latency bucket.  Validation needs the bucket anyway,
    # and the collector's hot path then neither hashes nor bisects.
    user_position: int = field(init=False, repr=False, compare=False)
    latency_bucket: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown message kind {self.kind!r}")
        if self.outcome not in _OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")
        # bucket_index raises for a negative or non-finite latency.
        bucket = -1 if self.latency_ms is None else bucket_index(self.latency_ms)
        object.__setattr__(self, "latency_bucket", bucket)
        object.__setattr__(self, "user_position", user_position(self.user))


@dataclass(frozen=True, slots=True)
class SendApiCall:
    """One Graph Send API call: an outcome code (``"200"``, ``"timeout"``, ``"613"``...)."""

    outcome_code: str
    latency_ms: float

    def __post_init__(self) -> None:
        bucket_index(self.latency_ms)


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The webhook dropped an event it had already seen (Messenger retries)."""


@dataclass(frozen=True, slots=True)
class InboxRejected:
    """An event was refused because a worker's bounded inbox was full."""


@dataclass(frozen=True, slots=True)
class Handoff:
    """A conversation was handed over to a human."""


Observation = WebhookReceived | MessageHandled | SendApiCall | Duplicate | InboxRejected | Handoff


# -- results -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HourlyRollup:
    """One wall-clock hour of traffic, for the admin's history and its store.

    The newest rollup is the current hour, still growing; a store should
    upsert by ``hour_epoch``.
    """

    hour_epoch: int
    received: int
    answered: int
    failed: int
    latency: Histogram
    unique_users_estimate: int


@dataclass(frozen=True, slots=True)
class Rates:
    """Messages received per second over the last 10 s, and per minute over the last 60 s.

    Divided by the time actually covered (less than the window just after
    start), so a fresh bot does not report a rate diluted by time it was not
    running.
    """

    per_second: float
    per_minute: float


@dataclass(frozen=True, slots=True)
class CollectorStatistics:
    """What the collector holds, to check that memory stays bounded."""

    slots: int
    sketch_bytes: int
    latency_buckets: int
    total_keys: int
    late_observations: int


# -- storage -------------------------------------------------------------------


class _Slot:
    """One time bucket: counts, latencies and unique users of one second/minute/hour."""

    __slots__ = ("answered", "failed", "index", "latency", "received", "users")

    def __init__(self) -> None:
        self.index = -1  # no time index yet: never inside a window
        self.received = 0
        self.answered = 0
        self.failed = 0
        self.latency = LatencyRecorder()
        self.users = UniqueSketch()

    def reset(self, index: int) -> None:
        self.index = index
        self.received = 0
        self.answered = 0
        self.failed = 0
        self.latency.reset()
        self.users.clear()


class _Ring:
    """Fixed slots indexed by ``time index % size``, reset lazily on reuse."""

    __slots__ = ("size", "slots")

    def __init__(self, size: int) -> None:
        self.size = size
        self.slots = tuple(_Slot() for _ in range(size))

    def for_write(self, index: int) -> _Slot | None:
        """The slot for ``index``, claimed if it held an older index; None if too old."""
        slot = self.slots[index % self.size]
        if slot.index == index:
            return slot
        if slot.index < index:
            slot.reset(index)
            return slot
        # The slot already holds a newer index: this observation is older
        # than the ring remembers and must not erase what replaced it.
        return None

    def get(self, index: int) -> _Slot | None:
        slot = self.slots[index % self.size]
        return slot if slot.index == index else None

    def window(self, last: int, count: int) -> Iterator[_Slot]:
        """Live slots for indices ``last - count + 1 .. last``."""
        for index in range(last - count + 1, last + 1):
            slot = self.get(index)
            if slot is not None:
                yield slot


def _window_stats(slots: list[_Slot], seconds: int) -> WindowStats:
    return WindowStats(
        seconds=seconds,
        received=sum(slot.received for slot in slots),
        answered=sum(slot.answered for slot in slots),
        failed=sum(slot.failed for slot in slots),
        unique_users=UniqueSketch.union(slot.users for slot in slots).estimate(),
        latency=merge_histograms(slot.latency for slot in slots),
    )


# -- the collector -------------------------------------------------------------


class MetricsCollector:
    """Counters, windows and rollups of one bot instance, in bounded memory.

    Args:
        instance: the instance name published in snapshots (``[A-Za-z0-9_.:-]``,
            at most 64 characters, as the wire contract requires).
        wall: read once, here, to align buckets and stamp payloads.
        start: the Trio time (``trio.current_time()``) the collector starts at.

    Raises:
        ValueError: ``instance`` is not a valid wire name.

    Not thread-safe; owned by one task.  Methods take ``now``, the current
    Trio time, and never block.
    """

    def __init__(self, instance: str, wall: WallClock, *, start: float) -> None:
        if not _NAME.fullmatch(instance):
            raise ValueError(f"invalid instance name {instance!r}")
        self.instance = instance
        self._start = start
        self._started_at = wall.now()
        self._offset = self._started_at - start
        self._seconds = _Ring(_SECONDS_KEPT)
        self._minutes = _Ring(_MINUTES_KEPT)
        self._hours = _Ring(HOURS_KEPT)
        self._send_api = LatencyRecorder()
        self._late = 0
        self._totals: dict[str, int] = dict.fromkeys(
            (
                "webhooks",
                "received",
                "handled",
                "duplicates",
                "inbox_rejected",
                "handoffs",
                "send_api",
                *sorted(_KIND_KEYS.values()),
                *sorted(_OUTCOME_KEYS.values()),
            ),
            0,
        )
        self._send_api_codes = 0
        # record() is the hot path: the slots for the second of the previous
        # observation are reused until the second changes.
        self._cached_second: int | None = None
        self._cached_slots: tuple[_Slot, ...] = ()

    # -- recording --

    def _wall_second(self, now: float) -> int:
        return math.floor(now + self._offset)

    def _slots_at(self, now: float) -> tuple[_Slot, ...]:
        """The slots of ``now`` in each ring that still reaches it."""
        second = math.floor(now + self._offset)
        if second == self._cached_second:
            return self._cached_slots
        found = (
            self._seconds.for_write(second),
            self._minutes.for_write(second // MINUTE),
            self._hours.for_write(second // HOUR),
        )
        slots = tuple(slot for slot in found if slot is not None)
        if len(slots) < len(found):
            # Rare (an observation older than a ring's reach): not cached, so
            # that each such observation is counted.
            self._late += 1
            return slots
        self._cached_second = second
        self._cached_slots = slots
        return slots

    def record(self, observation: Observation, now: float) -> None:
        """Count one observation made at Trio time ``now``.

        An observation older than a ring remembers is still counted in the
        totals and in the coarser rings that do hold its time.
        """
        totals = self._totals
        match observation:
            case MessageHandled(outcome=outcome, latency_ms=latency_ms):
                totals["handled"] += 1
                totals[_OUTCOME_KEYS[outcome]] += 1
                position = observation.user_position
                bucket = observation.latency_bucket
                answered = outcome == "answered"
                failed = outcome == "failed"
                for slot in self._slots_at(now):
                    slot.users.add_position(position)
                    if answered:
                        slot.answered += 1
                    elif failed:
                        slot.failed += 1
                    if latency_ms is not None:
                        slot.latency.record_at(bucket, latency_ms)
            case WebhookReceived(events_by_kind=events_by_kind):
                totals["webhooks"] += 1
                received = 0
                for kind, count in events_by_kind.items():
                    totals[_KIND_KEYS[kind]] += count
                    received += count
                totals["received"] += received
                for slot in self._slots_at(now):
                    slot.received += received
            case SendApiCall(outcome_code=code, latency_ms=latency_ms):
                totals["send_api"] += 1
                totals[self._send_api_key(code)] += 1
                self._send_api.record(latency_ms)
            case Duplicate():
                totals["duplicates"] += 1
            case InboxRejected():
                totals["inbox_rejected"] += 1
            case Handoff():
                totals["handoffs"] += 1
            case _:
                assert_never(observation)

    def _send_api_key(self, code: str) -> str:
        key = f"send_api:{code}"
        if key in self._totals:
            return key
        if self._send_api_codes >= MAX_SEND_API_CODES or not _CODE.fullmatch(code):
            key = _SEND_API_OTHER
            self._totals.setdefault(key, 0)
            return key
        self._send_api_codes += 1
        self._totals[key] = 0
        return key

    # -- reading --

    def snapshot(self, now: float) -> MetricsSnapshot:
        """The ``metrics:update`` payload at Trio time ``now``.

        Windows 1m/5m/60m, the last 60 minutes as a series (oldest first,
        always 60 buckets, zeros for quiet minutes), the Send API latency
        histogram since start, totals since start and uptime.
        """
        second = self._wall_second(now)
        minute = second // MINUTE
        last_minute = list(self._seconds.window(second, _SECONDS_KEPT))
        per_minute: list[MinuteBucket] = []
        recent: list[_Slot] = []
        for index in range(minute - _MINUTES_KEPT + 1, minute + 1):
            slot = self._minutes.get(index)
            if slot is None:
                per_minute.append(
                    MinuteBucket(minute=index * MINUTE, received=0, answered=0, failed=0)
                )
                continue
            recent.append(slot)
            per_minute.append(
                MinuteBucket(
                    minute=index * MINUTE,
                    received=slot.received,
                    answered=slot.answered,
                    failed=slot.failed,
                )
            )
        five = [slot for slot in recent if slot.index > minute - 5]
        return MetricsSnapshot(
            instance=self.instance,
            at=now + self._offset,
            started_at=self._started_at,
            uptime_s=max(0.0, now - self._start),
            totals=dict(self._totals),
            windows={
                "1m": _window_stats(last_minute, MINUTE),
                "5m": _window_stats(five, 5 * MINUTE),
                "60m": _window_stats(recent, HOUR),
            },
            send_api=self._send_api.snapshot(),
            per_minute=tuple(per_minute),
        )

    def hourly(self, now: float) -> list[HourlyRollup]:
        """Hourly rollups, oldest first, for every hour since start in the last 24.

        The last one is the current hour so far.  Hours without traffic are
        included with zeros; hours before the collector started are not.
        """
        hour = self._wall_second(now) // HOUR
        first = max(hour - HOURS_KEPT + 1, math.floor(self._started_at) // HOUR)
        rollups: list[HourlyRollup] = []
        for index in range(first, hour + 1):
            slot = self._hours.get(index)
            if slot is None:
                rollups.append(HourlyRollup(index * HOUR, 0, 0, 0, Histogram(), 0))
            else:
                rollups.append(
                    HourlyRollup(
                        hour_epoch=index * HOUR,
                        received=slot.received,
                        answered=slot.answered,
                        failed=slot.failed,
                        latency=slot.latency.snapshot(),
                        unique_users_estimate=slot.users.estimate(),
                    )
                )
        return rollups

    def rates(self, now: float) -> Rates:
        """Messages received per second (last 10 s) and per minute (last 60 s)."""
        wall = now + self._offset
        second = math.floor(wall)
        return Rates(
            per_second=self._rate(wall, second, _RATE_SECONDS),
            per_minute=self._rate(wall, second, _SECONDS_KEPT) * MINUTE,
        )

    def _rate(self, wall: float, second: int, seconds: int) -> float:
        received = sum(slot.received for slot in self._seconds.window(second, seconds))
        # The window runs from the start of its oldest second to now, but not
        # before the collector started; at least one second, so that the first
        # message does not read as a huge rate.
        covered = min(wall - (second - seconds + 1), wall - self._started_at)
        return received / max(covered, 1.0)

    def statistics(self) -> CollectorStatistics:
        """Sizes of what the collector holds (constant once it has started)."""
        rings = (self._seconds, self._minutes, self._hours)
        slots = [slot for ring in rings for slot in ring.slots]
        return CollectorStatistics(
            slots=len(slots),
            sketch_bytes=sum(slot.users.size_bytes for slot in slots),
            latency_buckets=sum(len(slot.latency.counts) for slot in slots)
            + len(self._send_api.counts),
            total_keys=len(self._totals),
            late_observations=self._late,
        )
