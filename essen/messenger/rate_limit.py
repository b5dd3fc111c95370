"""A per-page token bucket that keeps Send API calls under Facebook's rate limits.

Facebook documents 300 Send API calls per second per Page for text, links,
reactions and stickers (10 per second for audio and video).  Going over earns
throttling errors (codes 4, 32, 613) that cost a retry each, so the bot paces
itself instead: one :class:`RateLimiter` per page token, shared by every task
that sends for that page.

The bucket math (:class:`TokenBucket`) is pure: time is an argument, so a test
states ``now`` and checks the arithmetic exactly.  :class:`RateLimiter` puts it
on the Trio clock, which is what lets MockClock drive the waits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import trio

__all__ = (
    "DEFAULT_BURST",
    "DEFAULT_RATE",
    "RateLimiter",
    "RateLimiterStatistics",
    "TokenBucket",
)

#: Calls per second per page: a margin under the documented 300/s for text.
DEFAULT_RATE = 250.0
#: Calls that may go out back to back after a quiet spell.
DEFAULT_BURST = 50

# Float arithmetic can leave 0.9999999999 tokens at the instant the wait said
# one token would be there; counting that as a whole token avoids a second,
# nanosecond-long sleep (and an endless one if the clock cannot resolve it).
_EPSILON = 1e-9


@dataclass(slots=True)
class TokenBucket:
    """``burst`` tokens at most, refilled at ``rate`` tokens per second.

    Starts full.  Every method takes ``now`` (seconds on any monotonic clock);
    a ``now`` earlier than one already seen is treated as no time passing,
    so a clock that steps back can never mint tokens.
    """

    rate: float
    burst: int
    tokens: float = field(init=False)
    updated: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(
                f"rate must be a positive number of tokens per second, not {self.rate}"
            )
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, not {self.burst}")
        self.tokens = float(self.burst)

    def refill(self, now: float) -> float:
        """Bring the bucket up to ``now``; returns the tokens it holds."""
        if self.updated is not None and now > self.updated:
            self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        if self.updated is None or now > self.updated:
            self.updated = now
        return self.tokens

    def try_take(self, now: float) -> bool:
        """Take one token if there is one at ``now``."""
        if self.refill(now) + _EPSILON >= 1.0:
            self.tokens = max(0.0, self.tokens - 1.0)
            return True
        return False

    def wait_time(self, now: float) -> float:
        """Seconds from ``now`` until a token is there (0 if one is there now)."""
        missing = 1.0 - self.refill(now)
        return 0.0 if missing <= _EPSILON else missing / self.rate


@dataclass(frozen=True, slots=True)
class RateLimiterStatistics:
    """What a health page or a test wants to know about one limiter."""

    rate: float
    burst: int
    tokens: float
    granted: int
    delayed: int
    waiting: int


class RateLimiter:
    """Paces the calls for one page: :meth:`acquire` waits for a token.

    Waiters are served first come, first served (a ``trio.Lock`` is FIFO), so
    a steady stream of new callers cannot starve one that has been waiting.
    :meth:`try_acquire` never jumps that queue: while anyone waits, it says no.
    """

    def __init__(self, rate: float = DEFAULT_RATE, burst: int = DEFAULT_BURST) -> None:
        self._bucket = TokenBucket(rate, burst)
        self._queue = trio.Lock()
        self._granted = 0
        self._delayed = 0
        self._waiting = 0

    def try_acquire(self, now: float) -> bool:
        """Take a token at ``now`` if one is free and nobody is queued for one."""
        if self._waiting:
            return False
        if self._bucket.try_take(now):
            self._granted += 1
            return True
        return False

    async def acquire(self) -> None:
        """Wait (on the Trio clock) until a token is free, and take it.

        Cancellation: a cancelled caller leaves the queue without taking a
        token; the next waiter moves up.  Always checkpoints, like any Trio
        blocking call, even when a token is free at once.
        """
        self._waiting += 1
        try:
            async with self._queue:
                waited = False
                while not self._bucket.try_take(trio.current_time()):
                    waited = True
                    await trio.sleep(self._bucket.wait_time(trio.current_time()))
                self._granted += 1
                self._delayed += waited
        finally:
            self._waiting -= 1

    def statistics(self) -> RateLimiterStatistics:
        """Counters since creation; ``tokens`` as of the last grant or refusal."""
        return RateLimiterStatistics(
            rate=self._bucket.rate,
            burst=self._bucket.burst,
            tokens=self._bucket.tokens,
            granted=self._granted,
            delayed=self._delayed,
            waiting=self._waiting,
        )
