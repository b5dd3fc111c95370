"""Reconnection delays: exponential backoff with jitter, as socket.io-client computes them.

A pure object: the random source is injected, so a test with a seeded
``random.Random`` knows every delay in advance.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ("Backoff", "BackoffPolicy")


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """socket.io-client's knobs: ``reconnectionDelay``, ``reconnectionDelayMax``,
    ``randomizationFactor``, plus the growth factor (seconds)."""

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 5.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum and self.factor >= 1 and 0 <= self.jitter < 1):
            raise ValueError(f"invalid backoff policy {self}")


@dataclass(slots=True)
class Backoff:
    policy: BackoffPolicy = field(default_factory=BackoffPolicy)
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def next(self) -> float:
        """The delay before the next attempt; each call counts one attempt.

        ``initial * factor**attempts``, moved up or down by up to ``jitter`` of
        itself, capped at ``maximum`` (the formula of socket.io's backo2).
        """
        policy = self.policy
        # Cap the exponent: the delay is capped anyway and floats overflow.
        delay = policy.initial * policy.factor ** min(self.attempts, 64)
        self.attempts += 1
        if policy.jitter:
            rand = self.rng.random()
            deviation = rand * policy.jitter * delay
            delay = delay - deviation if int(rand * 10) & 1 == 0 else delay + deviation
        return min(delay, policy.maximum)

    def reset(self) -> None:
        self.attempts = 0
