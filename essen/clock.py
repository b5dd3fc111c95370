"""Time for ESSEN code: Trio's clock for durations, one injectable wall clock for stamps.

Durations, deadlines and rates use ``trio.current_time()`` (MockClock drives it
in tests).  A payload that carries a calendar time (``received_at``,
``since``) asks a :class:`WallClock`: the real one reads the system clock, the
harness's one is derived from Trio's clock, so a run under MockClock stamps the
same times every run.  This module is the only place ESSEN reads the system clock.
"""

from __future__ import annotations

import time
from typing import Protocol

import trio

__all__ = ("SystemWallClock", "TrioWallClock", "WallClock")


class WallClock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch."""


class SystemWallClock:
    def now(self) -> float:
        return time.time()


class TrioWallClock:
    """Wall time that advances with Trio's clock from a fixed epoch (for the harness)."""

    def __init__(self, epoch: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._epoch = epoch
        self._origin: float | None = None

    def now(self) -> float:
        current = trio.current_time()
        if self._origin is None:
            self._origin = current
        return self._epoch + (current - self._origin)
