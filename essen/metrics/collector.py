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

Snapshots are taken every few seconds, and most of what a window merges has
settled (seconds and minutes before the current one).  The collector keeps
the merge of settled slots — per aligned block of 10 seconds, per window of
complete minutes, per complete minute's bucket — in fixed-size caches and
merges only the current slot on top; an observation that lands in a settled
slot (a late one) drops the caches.  A snapshot equals the full merge, sums of
latencies included to the last bit, whatever snapshots came before it.

:class:`BulkMessages` counts many messages at once (load models, the
harness's bulk traffic): counted exactly as the same messages one by one,
but never processed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, assert_never, get_args

from essen.events import (
    Histogram,
    MessageKind,
    MessageOutcome,
    MetricsSnapshot,
    MinuteBucket,
    WindowStats,
)
from essen.metrics.histogram import BUCKET_COUNT, LatencyRecorder, bucket_index, merge_histograms
from essen.metrics.unique import FrozenSketch, UniqueSketch, user_position

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from essen.clock import WallClock

__all__ = (
    "HOURS_KEPT",
    "MAX_SEND_API_CODES",
    "BulkMessages",
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


@dataclass(frozen=True, slots=True)
class BulkMessages:
    """Many Messenger events of one kind, **counted at once, never processed**.

    For load models (the harness's :meth:`essen.testing.System.traffic`): it
    stands for ``received`` events that each arrived in a webhook POST of its
    own (as :class:`WebhookReceived` with one event) and ended with an outcome
    (as :class:`MessageHandled`), all at the Trio time it is recorded.  Nothing
    else happened to them: no reply was sent, no Send API call is counted, no
    ``message:processed`` exists for them, no user was paused.  Windows,
    series, totals and hourly rollups count them exactly as they would count
    the same events one by one, which is what lets a simulated day of 50
    messages/s reach the dashboard in seconds.

    Args:
        kind: the Messenger kind of every event.
        outcomes: how many events ended with each outcome; ``received`` is
            their sum.
        latencies: ``(latency_ms, count)`` pairs, the receipt-to-reply times of
            the answered ones (``answered`` and ``handoff`` outcomes, as for
            :class:`MessageHandled`); at most that many in all.
        users: the distinct (pseudonymous) users among the senders, as a
            sketch: they count towards every window's unique users.  None
            leaves unique users as they are.

    Raises:
        ValueError: an unknown kind or outcome, a negative count, a latency
            that is negative or not finite, more latencies than replies.
    """

    kind: MessageKind
    outcomes: Mapping[MessageOutcome, int]
    latencies: tuple[tuple[float, int], ...] = ()
    users: FrozenSketch | None = field(default=None, repr=False)
    # Derived once, where the observation is made (as MessageHandled does):
    # the collector adds these to up to three slots.
    received: int = field(init=False)
    answered: int = field(init=False, repr=False, compare=False)
    failed: int = field(init=False, repr=False, compare=False)
    latency_counts: tuple[int, ...] = field(init=False, repr=False, compare=False)
    latency_sum_ms: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown message kind {self.kind!r}")
        for outcome, count in self.outcomes.items():
            if outcome not in _OUTCOMES:
                raise ValueError(f"unknown outcome {outcome!r}")
            if count < 0:
                raise ValueError("outcome counts must be >= 0")
        counts = [0] * BUCKET_COUNT
        total_ms = 0.0
        timed = 0
        for latency_ms, count in self.latencies:
            if count < 0:
                raise ValueError("latency counts must be >= 0")
            counts[bucket_index(latency_ms)] += count
            total_ms += latency_ms * count
            timed += count
        replies = self.outcomes.get("answered", 0) + self.outcomes.get("handoff", 0)
        if timed > replies:
            raise ValueError(f"{timed} latencies for {replies} replies")
        object.__setattr__(self, "received", sum(self.outcomes.values()))
        object.__setattr__(self, "answered", self.outcomes.get("answered", 0))
        object.__setattr__(self, "failed", self.outcomes.get("failed", 0))
        object.__setattr__(self, "latency_counts", tuple(counts))
        object.__setattr__(self, "latency_sum_ms", total_ms)


Observation = (
    WebhookReceived
    | MessageHandled
    | SendApiCall
    | Duplicate
    | InboxRejected
    | Handoff
    | BulkMessages
)


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
    #: Merged blocks and windows cached for snapshots (at most 19: 8 blocks
    #: per ring, 3 windows).
    settled_sketches: int


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


class _Settled:
    """Counts, users and latency counts of an aligned block of slots that can no longer change.

    Snapshots are taken every few seconds, and most of what their windows
    merge is older than the current second or minute: merging it again on
    every snapshot (up to 120 HyperLogLog unions and histogram adds) cost
    milliseconds per snapshot at 50 messages/s.  The collector therefore keeps
    the merge of each block of settled slots and merges blocks, plus the few
    slots at the window's edges, instead.  ``latency`` holds counts only: the
    latencies' ``sum_ms`` is always added slot by slot, oldest first, as
    merge_histograms adds it (block-wise partial sums would differ in the last
    bits, and a snapshot must not depend on when the previous one was taken).
    """

    __slots__ = ("answered", "failed", "latency", "received", "users")

    def __init__(self, parts: Sequence[_Slot | _Settled]) -> None:
        self.received: int = sum(part.received for part in parts)
        self.answered: int = sum(part.answered for part in parts)
        self.failed: int = sum(part.failed for part in parts)
        self.users: UniqueSketch = UniqueSketch.union(part.users for part in parts)
        self.latency = LatencyRecorder()
        for part in parts:
            self.latency.add_counts(part.latency.counts, 0.0)


class _Blocks:
    """The cached :class:`_Settled` blocks of one ring: aligned, ``size`` slots each.

    Fixed-size, like the rings: a block replaces the entry it outdates, so
    memory does not move with running time.  A window of 60 slots touches at
    most 7 blocks of 10, 6 of them whole.
    """

    __slots__ = ("entries", "ring", "size")

    def __init__(self, ring: _Ring, size: int) -> None:
        self.ring = ring
        self.size = size
        self.entries: list[tuple[int, _Settled] | None] = [None] * (ring.size // size + 2)

    def get(self, block: int) -> _Settled:
        entries = self.entries
        entry = entries[block % len(entries)]
        if entry is not None and entry[0] == block:
            return entry[1]
        last = block * self.size + self.size - 1
        settled = _Settled(list(self.ring.window(last, self.size)))
        entries[block % len(entries)] = (block, settled)
        return settled

    def cached(self) -> int:
        return sum(entry is not None for entry in self.entries)

    def keep_from(self, index: int) -> None:
        """Forget blocks that end before slot ``index`` (no window reaches them any more)."""
        entries = self.entries
        for i, entry in enumerate(entries):
            if entry is not None and (entry[0] + 1) * self.size <= index:
                entries[i] = None

    def clear(self) -> None:
        self.entries[:] = [None] * len(self.entries)


# Slots are settled (and cached) in aligned blocks of this many.
_BLOCK_SLOTS: Final = 10


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
        # What snapshots cache of settled slots (see _Settled), and the last
        # wall second any of it covers: an observation at or before that
        # second (a late one: Trio time does not go back) drops it all.
        self._newest_second = -1
        self._settled_upto = -1
        self._second_blocks = _Blocks(self._seconds, _BLOCK_SLOTS)
        self._minute_blocks = _Blocks(self._minutes, _BLOCK_SLOTS)
        # Per window (by its length in seconds): the slot it ended at, and the
        # merge of its settled part.
        self._settled_windows: dict[int, tuple[int, _Settled]] = {}
        # Finished minutes' buckets, by minute % 60 (fixed-size, like a ring).
        self._settled_buckets: list[MinuteBucket | None] = [None] * _MINUTES_KEPT

    # -- recording --

    def _wall_second(self, now: float) -> int:
        return math.floor(now + self._offset)

    def _slots_at(self, now: float) -> tuple[_Slot, ...]:
        """The slots of ``now`` in each ring that still reaches it."""
        second = math.floor(now + self._offset)
        if second <= self._settled_upto:
            self._drop_settled()
        if second == self._cached_second:
            return self._cached_slots
        if second > self._newest_second:
            self._newest_second = second
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
            case BulkMessages():
                self._record_bulk(observation, now)
            case _:
                assert_never(observation)

    def _record_bulk(self, bulk: BulkMessages, now: float) -> None:
        received = bulk.received
        if not received:
            return
        totals = self._totals
        totals["webhooks"] += received
        totals["received"] += received
        totals["handled"] += received
        totals[_KIND_KEYS[bulk.kind]] += received
        for outcome, count in bulk.outcomes.items():
            totals[_OUTCOME_KEYS[outcome]] += count
        answered, failed, users = bulk.answered, bulk.failed, bulk.users
        timed = any(bulk.latency_counts)
        for slot in self._slots_at(now):
            slot.received += received
            slot.answered += answered
            slot.failed += failed
            if timed:
                slot.latency.add_counts(bulk.latency_counts, bulk.latency_sum_ms)
            if users is not None:
                slot.users.update(users)

    def _drop_settled(self) -> None:
        self._settled_upto = -1
        self._second_blocks.clear()
        self._minute_blocks.clear()
        self._settled_windows.clear()
        self._settled_buckets[:] = [None] * _MINUTES_KEPT

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
        if second < self._newest_second:
            # A snapshot of the past (never taken by the metrics actor, whose
            # Trio time only advances): the rings have moved on, compute it all.
            return self._snapshot(
                now, second, self._uncached_windows(second), self._buckets(minute)
            )
        windows: dict[Literal["1m", "5m", "60m"], WindowStats] = {
            "1m": self._window(self._second_blocks, second, _SECONDS_KEPT, MINUTE, SECOND),
            "5m": self._window(self._minute_blocks, minute, 5, 5 * MINUTE, MINUTE),
            "60m": self._window(self._minute_blocks, minute, _MINUTES_KEPT, HOUR, MINUTE),
        }
        self._second_blocks.keep_from(second - _SECONDS_KEPT + 1)
        self._minute_blocks.keep_from(minute - _MINUTES_KEPT + 1)
        return self._snapshot(now, second, windows, self._buckets(minute, settled=True))

    def _snapshot(
        self,
        now: float,
        second: int,
        windows: dict[Literal["1m", "5m", "60m"], WindowStats],
        per_minute: tuple[MinuteBucket, ...],
    ) -> MetricsSnapshot:
        return MetricsSnapshot(
            instance=self.instance,
            at=now + self._offset,
            started_at=self._started_at,
            uptime_s=max(0.0, now - self._start),
            totals=dict(self._totals),
            windows=windows,
            send_api=self._send_api.snapshot(),
            per_minute=per_minute,
        )

    def _uncached_windows(self, second: int) -> dict[Literal["1m", "5m", "60m"], WindowStats]:
        minute = second // MINUTE
        recent = list(self._minutes.window(minute, _MINUTES_KEPT))
        return {
            "1m": _window_stats(list(self._seconds.window(second, _SECONDS_KEPT)), MINUTE),
            "5m": _window_stats([slot for slot in recent if slot.index > minute - 5], 5 * MINUTE),
            "60m": _window_stats(recent, HOUR),
        }

    def _settle(self, upto: int) -> None:
        """Note that cached merges now cover wall seconds up to ``upto``."""
        if upto > self._settled_upto:
            self._settled_upto = upto

    def _window(
        self, blocks: _Blocks, last: int, count: int, seconds: int, unit: int
    ) -> WindowStats:
        """The window of ``count`` slots of ``blocks.ring`` up to ``last``, the current one.

        What lies before ``last`` has settled: its merge is kept until ``last``
        moves on (a 60-minute window changes its settled part once a minute,
        and snapshots come every few seconds), and is made of cached whole
        blocks and the slots at the edges one by one.  ``unit`` is the slots'
        length in seconds.
        """
        ring = blocks.ring
        cached = self._settled_windows.get(seconds)
        if cached is not None and cached[0] == last:
            settled = cached[1]
        else:
            settled = self._settled_run(blocks, last - count + 1, last - 1, unit)
            self._settled_windows[seconds] = (last, settled)
            self._settle(last * unit - 1)
        received, answered, failed = settled.received, settled.answered, settled.failed
        users = settled.users
        latency = settled.latency
        current = ring.get(last)
        if current is not None:
            received += current.received
            answered += current.answered
            failed += current.failed
            if not current.users.is_empty:
                users = users.copy()
                users.update(current.users)
            latency = LatencyRecorder()
            latency.add_counts(settled.latency.counts, 0.0)
            latency.add_counts(current.latency.counts, 0.0)
        sum_ms = 0.0
        for slot in ring.window(last, count):
            sum_ms += slot.latency.sum_ms
        return WindowStats(
            seconds=seconds,
            received=received,
            answered=answered,
            failed=failed,
            unique_users=users.estimate(),
            latency=Histogram(counts=tuple(latency.counts), sum_ms=sum_ms),
        )

    def _settled_run(self, blocks: _Blocks, first: int, last: int, unit: int) -> _Settled:
        """The merge of slots ``first .. last`` (all settled): whole blocks from the cache."""
        ring = blocks.ring
        size = blocks.size
        parts: list[_Slot | _Settled] = []
        index = first
        while index <= last:
            block, offset = divmod(index, size)
            if not offset and index + size - 1 <= last:
                parts.append(blocks.get(block))
                self._settle((index + size) * unit - 1)
                index += size
                continue
            slot = ring.get(index)
            if slot is not None:
                parts.append(slot)
            index += 1
        return _Settled(parts)

    def _buckets(self, minute: int, *, settled: bool = False) -> tuple[MinuteBucket, ...]:
        """The per-minute series, oldest first; with ``settled``, finished minutes are cached."""
        buckets: list[MinuteBucket] = []
        cache = self._settled_buckets
        for index in range(minute - _MINUTES_KEPT + 1, minute + 1):
            bucket = cache[index % _MINUTES_KEPT] if settled else None
            if bucket is None or bucket.minute != index * MINUTE:
                slot = self._minutes.get(index)
                bucket = MinuteBucket(
                    minute=index * MINUTE,
                    received=slot.received if slot else 0,
                    answered=slot.answered if slot else 0,
                    failed=slot.failed if slot else 0,
                )
                if settled and index < minute:
                    cache[index % _MINUTES_KEPT] = bucket
                    self._settle(index * MINUTE + MINUTE - 1)
            buckets.append(bucket)
        return tuple(buckets)

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
            settled_sketches=self._second_blocks.cached()
            + self._minute_blocks.cached()
            + len(self._settled_windows),
        )
