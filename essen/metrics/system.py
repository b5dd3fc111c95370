"""Process health for ``/debug/system-stats``: memory, CPU, descriptors, tasks, loop lag.

:func:`system_stats` is a point-in-time reading (psutil for the process, a
walk of Trio's task tree for the task count).  :class:`EventLoopLag` watches
the one thing psutil cannot see: how late Trio wakes a task whose sleep is
over.  Everything in the bot shares one thread, so a handler that blocks (a
synchronous call, a long loop without a checkpoint) delays every other task
by that much; a growing lag is the earliest sign of it, before timeouts and
Messenger retries pile up.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, TypedDict

import psutil
import trio

if TYPE_CHECKING:
    from trio.lowlevel import Task

__all__ = ("EventLoopLag", "LagStatistics", "SystemStats", "system_stats", "trio_task_count")


class SystemStats(TypedDict):
    """What :func:`system_stats` returns (a plain dict, ready for JSON)."""

    rss_bytes: int
    cpu_user_s: float
    cpu_system_s: float
    open_fds: int | None
    threads: int
    trio_tasks: int | None
    uptime_s: float


def trio_task_count() -> int | None:
    """How many Trio tasks exist, counted from the root task down; None outside Trio.

    A number that keeps growing under steady traffic is a task leak (a
    per-message task that never finishes, a nursery that is never closed).
    """
    try:
        root = trio.lowlevel.current_root_task()
    except RuntimeError:
        return None
    if root is None:
        return None
    count = 0
    pending: list[Task] = [root]
    while pending:
        task = pending.pop()
        count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count


def system_stats(*, started: float, now: float | None = None) -> SystemStats:
    """Resource use of this process.

    Args:
        started: the Trio time the service started (uptime is measured on the
            Trio clock, like every duration in ESSEN).
        now: the current Trio time; ``trio.current_time()`` when omitted.

    Returns:
        RSS in bytes, CPU user/system seconds, open file descriptors (None
        where the platform has no such count), OS threads, Trio tasks (None
        outside a Trio run) and uptime in seconds.

    Reads ``/proc`` (or the platform's equivalent) synchronously; it takes
    tens of microseconds, short enough not to need a worker thread.
    """
    if now is None:
        now = trio.current_time()
    process = psutil.Process()
    with process.oneshot():
        memory = process.memory_info()
        cpu = process.cpu_times()
        threads = process.num_threads()
        open_fds = process.num_fds() if hasattr(process, "num_fds") else None
    return SystemStats(
        rss_bytes=memory.rss,
        cpu_user_s=cpu.user,
        cpu_system_s=cpu.system,
        open_fds=open_fds,
        threads=threads,
        trio_tasks=trio_task_count(),
        uptime_s=max(0.0, now - started),
    )


@dataclass(frozen=True, slots=True)
class LagStatistics:
    """Event-loop lag readings, in seconds (None before the first sample)."""

    last_s: float | None
    max_s: float | None
    window_s: float
    samples: int


class EventLoopLag:
    """Measures how late ``trio.sleep`` returns, on the Trio clock.

    Args:
        window: the maximum is taken over the samples of the last ``window``
            seconds (Trio time), so one stall is visible for that long and
            then ages out.

    Run it as a task (``await nursery.start(lag.run, interval=...)``) and
    read :meth:`statistics` from anywhere in the same Trio run.
    """

    def __init__(self, *, window: float = 60.0) -> None:
        if not window > 0:
            raise ValueError("window must be > 0")
        self._window = window
        self._last: float | None = None
        self._samples = 0
        self._recent: deque[tuple[float, float]] = deque()

    async def run(
        self,
        *,
        interval: float,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> NoReturn:
        """Sleep ``interval`` seconds at a time forever, recording each wake-up's delay.

        Signals readiness at once.  Cancellation ends it cleanly (it holds
        nothing to release).

        Raises:
            ValueError: ``interval`` is not positive.
        """
        if not interval > 0:
            raise ValueError("interval must be > 0")
        # Wake-ups are at least ``interval`` apart, so this bounds the samples
        # a window can hold whatever happens.
        self._recent = deque(self._recent, maxlen=math.ceil(self._window / interval) + 1)
        task_status.started()
        while True:
            scheduled = trio.current_time() + interval
            await trio.sleep_until(scheduled)
            woke = trio.current_time()
            self._add(woke, max(0.0, woke - scheduled))

    def _add(self, at: float, lag: float) -> None:
        self._last = lag
        self._samples += 1
        recent = self._recent
        recent.append((at, lag))
        while recent and recent[0][0] <= at - self._window:
            recent.popleft()

    def statistics(self) -> LagStatistics:
        """The last lag and the maximum over the window ending at the last sample."""
        return LagStatistics(
            last_s=self._last,
            max_s=max((lag for _, lag in self._recent), default=None),
            window_s=self._window,
            samples=self._samples,
        )
