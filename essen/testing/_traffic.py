"""Bulk traffic: a constant message rate for simulated hours, mostly counted, partly real.

Theory of operation
-------------------
A day at 50 messages/s is 4.32 million messages.  Each one through the whole
in-process system (signed webhook, bot, fake Graph API, uplink, admin API,
dashboards) costs milliseconds of CPU, so a day that way takes hours.  What
a long run has to prove is mostly about *volume* — that windows, series,
totals, hourly rollups, history and memory hold up under a day of it — and
volume can be counted without being processed.  So :func:`drive` splits the
offered messages:

* **sampled** messages (every ``sample_every``-th) go the whole real way: a
  signed webhook POST from a real :class:`~essen.testing.system.User`, at the
  moment the message arrives;
* **counted** messages are never processed: every ``step`` seconds, at the
  start of the step, the messages arriving during the step are handed to each
  bot's real :class:`~essen.metrics.collector.MetricsCollector` in aggregate,
  as one :class:`~essen.metrics.collector.BulkMessages` observation through
  the bot's metrics actor (received, answered, their response times and a
  sketch of their users).  No reply is sent for them, the fake Graph API
  never sees them, no ``message:processed`` exists for them, and the Send
  API's latency histogram does not include them.  Everything downstream of
  the collector — ``metrics:update`` over the uplink, the admin API's
  aggregation, hourly rollups in the store, the 24 h history, the
  dashboards' numbers — sees the full volume, because it only ever sees the
  collector's snapshots.

Recording a step at its start puts its messages in the second, minute and
hour they arrive in, as long as steps line up with whole seconds (traffic
starting on a whole second with ``step`` dividing 60); they are counted up to
one step early.

Users come from a population of ``population`` Messenger users, the users
:meth:`System.user` ``(n)`` for ``n < population`` (the same PSIDs, so the
same pseudonyms and the same bot: ``n % bots``).  Counted messages take users
round-robin; the ``j``-th sampled message comes from user ``j % population``.
With 50 messages/s and a population of 1000 every user writes about once in
20 s, so every window of a minute or more sees all of them.

The messages of a step are a function of where the round-robin stands and how
many there are, so the observations of a step are built once and reused
(a constant rate repeats a handful of them all day long); the cache is bounded.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import trio

from essen.metrics.collector import BulkMessages
from essen.metrics.histogram import bucket_index
from essen.metrics.unique import FrozenSketch, user_position
from essen.pseudonym import pseudonymize

if TYPE_CHECKING:
    from collections.abc import Sequence

    from essen.events import MessageOutcome

    from .system import System, User

__all__ = ("Population", "TrafficReport", "TrafficState", "drive", "psid_of")

#: Observations kept for reuse (per distinct step), each with one sketch per bot.
BATCHES_KEPT: Final = 256
#: The largest population :func:`drive` accepts (each user's pseudonym and
#: register update are computed once and kept).
MAX_POPULATION: Final = 1_000_000

_PSID_BASE: Final = 5_000_000


def psid_of(n: int) -> str:
    """The PSID of :meth:`System.user` ``(n)``."""
    return str(_PSID_BASE + n)


@dataclass(frozen=True, slots=True)
class TrafficReport:
    """What one :meth:`System.traffic` call offered, and where it went.

    ``offered == counted + sampled + undelivered``.  ``per_bot`` is what each
    bot instance was offered (counted and sampled).  Times are Trio times.
    """

    offered: int
    #: Applied in aggregate to a bot's collector: counted, never processed.
    counted: int
    #: Sent as real signed webhooks through the whole system.
    sampled: int
    #: Counted messages for a bot that was stopped, or whose metrics inbox was
    #: full: counted nowhere (sampled ones are retried as Facebook would).
    undelivered: int
    per_bot: tuple[int, ...]
    started: float
    ended: float


class Population:
    """The users of bulk traffic and the register update each one causes.

    The update is that of the user's *pseudonym* under the bots' key, the id
    the bot itself counts a real message under, so sampled and counted
    messages of one user are one user in every sketch.
    """

    def __init__(self, size: int, pseudonym_key: bytes) -> None:
        if not 1 <= size <= MAX_POPULATION:
            raise ValueError(f"population must be in [1, {MAX_POPULATION}]")
        self.size = size
        self._key = pseudonym_key
        self._positions: list[int | None] = [None] * size

    def position(self, n: int) -> int:
        position = self._positions[n]
        if position is None:
            position = user_position(pseudonymize(psid_of(n), self._key))
            self._positions[n] = position
        return position


class TrafficState:
    """Where a system's bulk traffic stands, so that consecutive calls continue it."""

    def __init__(self, pseudonym_key: bytes) -> None:
        self.pseudonym_key = pseudonym_key
        #: Messages offered so far (the index of the next one, for sampling).
        self.offered = 0
        #: Sampled messages sent so far (the next one's user).
        self.sampled = 0
        #: The next user of a counted message.
        self.cursor = 0
        self._population: Population | None = None
        self._batches: OrderedDict[tuple[int, int, int, int], tuple[BulkMessages | None, ...]]
        self._batches = OrderedDict()
        self._latencies: tuple[float, ...] = ()

    def population(self, size: int) -> Population:
        if self._population is None or self._population.size != size:
            self._population = Population(size, self.pseudonym_key)
        return self._population

    def batches(
        self, population: Population, bots: int, count: int, latencies: tuple[float, ...]
    ) -> tuple[BulkMessages | None, ...]:
        """One observation per bot for ``count`` counted messages from the cursor on."""
        if latencies != self._latencies:
            self._batches.clear()
            self._latencies = latencies
        start = self.cursor % population.size
        key = (population.size, bots, start, count)
        cached = self._batches.get(key)
        if cached is not None:
            self._batches.move_to_end(key)
            return cached
        positions: list[list[int]] = [[] for _ in range(bots)]
        timings: list[Counter[float]] = [Counter() for _ in range(bots)]
        for i in range(count):
            n = (start + i) % population.size
            bot = n % bots
            positions[bot].append(population.position(n))
            timings[bot][latencies[n % len(latencies)]] += 1
        built = tuple(
            _batch(positions[bot], timings[bot]) if positions[bot] else None for bot in range(bots)
        )
        self._batches[key] = built
        if len(self._batches) > BATCHES_KEPT:
            self._batches.popitem(last=False)
        return built


def _batch(positions: list[int], timings: Counter[float]) -> BulkMessages:
    outcomes: dict[MessageOutcome, int] = {"answered": len(positions)}
    return BulkMessages(
        "text", outcomes, tuple(sorted(timings.items())), FrozenSketch.of(positions)
    )


def _arrived_before(rate: float, elapsed: float, total: int) -> int:
    """How many of ``total`` messages, one every ``1 / rate`` s from 0, come before ``elapsed``."""
    # Message k arrives at k / rate; k / rate < elapsed  <=>  k < rate * elapsed.
    # Rounding first keeps 50 * 3600.0 from landing a hair above an integer.
    return min(total, max(0, math.ceil(round(rate * elapsed, 9))))


async def drive(
    system: System,
    state: TrafficState,
    *,
    rate: float,
    duration: float,
    sample_every: int | None,
    population: int,
    step: float,
    text: str,
    latencies_ms: Sequence[float],
) -> TrafficReport:
    """Offer ``round(rate * duration)`` messages over ``duration`` s; see the module docstring.

    Returns at the end of ``duration`` (Trio time), once every sampled webhook
    has been accepted.  Cancelling stops the traffic where it is.
    """
    if not rate > 0 or not math.isfinite(rate):
        raise ValueError("rate must be a positive number of messages per second")
    if not duration >= 0 or not math.isfinite(duration):
        raise ValueError("duration must be >= 0 seconds")
    if not step > 0:
        raise ValueError("step must be > 0 seconds")
    if sample_every is not None and sample_every < 1:
        raise ValueError("sample_every must be >= 1 (or None: sample nothing)")
    latencies = tuple(float(latency) for latency in latencies_ms)
    if not latencies:
        raise ValueError("latencies_ms must not be empty")
    for latency in latencies:
        bucket_index(latency)  # raises ValueError for a negative or infinite one
    people = state.population(population)
    bots = len(system.bots)
    total = round(rate * duration)
    per_bot = [0] * bots
    counted = sampled = undelivered = 0
    started = trio.current_time()
    async with trio.open_nursery() as posts:
        done = 0
        for index in range(math.ceil(duration / step)):
            await trio.sleep_until(started + index * step)
            arrived = _arrived_before(rate, (index + 1) * step, total)
            if arrived == done:
                continue
            first = state.offered
            state.offered += arrived - done
            picked: list[int] = []
            if sample_every is not None:
                # Global indices first .. state.offered - 1 that are multiples.
                k = -(-first // sample_every) * sample_every
                picked = list(range(k, state.offered, sample_every))
            batches = state.batches(people, bots, arrived - done - len(picked), latencies)
            state.cursor += arrived - done
            for bot, batch in enumerate(batches):
                if batch is None:
                    continue
                per_bot[bot] += batch.received
                node = system.bots[bot]
                handles = node.handles
                dropped = handles.metrics.dropped if handles is not None else 0
                if handles is not None:
                    handles.metrics.observe(batch)
                if handles is None or handles.metrics.dropped != dropped:
                    undelivered += batch.received
                else:
                    counted += batch.received
            for k in picked:
                user = system.user(state.sampled % people.size)
                state.sampled += 1
                sampled += 1
                per_bot[user.bot] += 1
                arrival = started + (k - first + done) / rate
                posts.start_soon(_say_at, user, text, arrival)
            done = arrived
        await trio.sleep_until(started + duration)
    return TrafficReport(
        offered=counted + sampled + undelivered,
        counted=counted,
        sampled=sampled,
        undelivered=undelivered,
        per_bot=tuple(per_bot),
        started=started,
        ended=trio.current_time(),
    )


async def _say_at(user: User, text: str, at: float) -> None:
    await trio.sleep_until(at)
    await user.say(text)
