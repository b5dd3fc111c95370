"""The health actor: every component's status, and ``health:changed`` on transitions only.

Components report :class:`Signal`s into its inbox (the webhook actor for the
Graph API, the uplink for its connection, the supervisor for crashes); the
actor itself watches the event loop's lag and the process's memory.  It owns
the statuses and publishes an immutable :class:`HealthBoard` snapshot after
every change, which the web layer reads for ``/debug/health-quick``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

import psutil
import trio

from essen.events import ComponentStatus, HealthChanged, HealthStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from essen.clock import WallClock

__all__ = ("HealthBoard", "HealthConfig", "Signal", "run")

log = logging.getLogger("essen.health")

MAX_REASON = 500
_RANK: dict[HealthStatus, int] = {"healthy": 0, "degraded": 1, "stale": 2, "down": 3}


@dataclass(frozen=True, slots=True)
class Signal:
    component: str
    status: HealthStatus
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class HealthConfig:
    instance: str
    check_interval: float = 5.0
    #: Event-loop lag above this is "degraded".
    max_loop_lag: float = 0.5
    #: Resident memory above this (bytes) is "degraded".
    max_rss: int = 512 * 1024 * 1024


@dataclass
class HealthBoard:
    """The latest published statuses (replaced, never mutated, so readers need no lock)."""

    components: Mapping[str, ComponentStatus] = field(default_factory=lambda: MappingProxyType({}))
    loop_lag: float = 0.0

    @property
    def overall(self) -> HealthStatus:
        worst: HealthStatus = "healthy"
        for status in self.components.values():
            if _RANK[status.status] > _RANK[worst]:
                worst = status.status
        return worst


async def run(
    inbox: trio.MemoryReceiveChannel[Signal],
    outbox: trio.MemorySendChannel[HealthChanged],
    *,
    config: HealthConfig,
    wall: WallClock,
    board: HealthBoard,
    rss: Callable[[], int] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Own the components' health until cancelled or ``inbox`` closes."""
    statuses: dict[str, ComponentStatus] = dict(board.components)
    process = psutil.Process()
    read_rss = rss or (lambda: int(process.memory_info().rss))

    def apply(signal: Signal) -> None:
        # A reason is free text from elsewhere (an HTTP error page, an exception
        # message): it is cut to what the contract allows, never allowed to crash us.
        if signal.reason is not None and len(signal.reason) > MAX_REASON:
            signal = Signal(signal.component, signal.status, signal.reason[: MAX_REASON - 1] + "…")
        current = statuses.get(signal.component)
        if current is not None and current.status == signal.status:
            return
        now = wall.now()
        statuses[signal.component] = ComponentStatus(
            component=signal.component, status=signal.status, since=now, reason=signal.reason
        )
        board.components = MappingProxyType(dict(statuses))
        change = HealthChanged(
            instance=config.instance,
            component=signal.component,
            status=signal.status,
            previous=current.status if current is not None else None,
            since=now,
            reason=signal.reason,
        )
        level = logging.INFO if signal.status == "healthy" else logging.WARNING
        log.log(level, "health %s: %s (%s)", signal.component, signal.status, signal.reason or "ok")
        try:
            outbox.send_nowait(change)
        except trio.WouldBlock:
            log.warning("health change for %s not forwarded: uplink inbox full", signal.component)

    async def watch_process() -> None:
        interval = config.check_interval
        while True:
            before = trio.current_time()
            await trio.sleep(interval)
            lag = max(0.0, trio.current_time() - before - interval)
            board.loop_lag = lag
            if lag > config.max_loop_lag:
                apply(Signal("event_loop", "degraded", f"event loop lag {lag * 1000:.0f} ms"))
            else:
                apply(Signal("event_loop", "healthy"))
            used = read_rss()
            if used > config.max_rss:
                apply(Signal("memory", "degraded", f"RSS {used // 2**20} MiB"))
            else:
                apply(Signal("memory", "healthy"))

    async with trio.open_nursery() as nursery:
        apply(Signal("event_loop", "healthy"))
        apply(Signal("memory", "healthy"))
        nursery.start_soon(watch_process)
        task_status.started()
        # The inbox belongs to the assembly: a restarted actor reads the same channel.
        async for signal in inbox:
            apply(signal)
        nursery.cancel_scope.cancel()
