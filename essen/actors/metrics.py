"""The metrics actor: owns the MetricsCollector, answers snapshot requests, publishes snapshots.

Everything that happens in the bot reaches it as an observation on one
bounded inbox; nothing else touches the collector, so it needs no lock.  A
snapshot goes to the uplink every ``interval`` seconds; a full uplink inbox
skips that one (the next is newer anyway) and counts it.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from essen.events import MetricsSnapshot
from essen.metrics.collector import MetricsCollector, Observation

if TYPE_CHECKING:
    from essen.actors.uplink import UplinkItem

__all__ = ("MetricsHandle", "MetricsRequest", "run")

log = logging.getLogger("essen.metrics")


@dataclass(frozen=True, slots=True)
class MetricsRequest:
    """Ask for a snapshot; it arrives on ``reply`` (a one-shot channel)."""

    reply: trio.MemorySendChannel[MetricsSnapshot]


MetricsInbox = Observation | MetricsRequest


class MetricsHandle:
    """The other actors' end of the metrics actor: observe without blocking, ask for snapshots."""

    def __init__(self, inbox: trio.MemorySendChannel[MetricsInbox]) -> None:
        self._inbox = inbox
        #: Observations lost because the metrics inbox was full (should stay 0).
        self.dropped = 0

    def observe(self, observation: Observation) -> None:
        try:
            self._inbox.send_nowait(observation)
        except trio.WouldBlock:
            self.dropped += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.dropped += 1

    async def snapshot(self) -> MetricsSnapshot:
        """The collector's snapshot now (wrap in a timeout: the actor may be restarting)."""
        send, receive = trio.open_memory_channel[MetricsSnapshot](1)
        await self._inbox.send(MetricsRequest(send))
        async with receive:
            return await receive.receive()


async def run(
    inbox: trio.MemoryReceiveChannel[MetricsInbox],
    uplink: trio.MemorySendChannel[UplinkItem],
    *,
    collector: MetricsCollector,
    interval: float,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Record observations and publish snapshots until cancelled or ``inbox`` closes."""
    skipped = 0
    next_publish = trio.current_time() + interval
    task_status.started()
    while True:
        deadline_hit = True
        with trio.move_on_at(next_publish):
            try:
                item = await inbox.receive()
            except trio.EndOfChannel:
                return
            deadline_hit = False
            now = trio.current_time()
            if isinstance(item, MetricsRequest):
                # The asker may have given up (timed out): that is fine.
                with contextlib.suppress(
                    trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError
                ):
                    item.reply.send_nowait(collector.snapshot(now))
            else:
                collector.record(item, now)
        if deadline_hit or trio.current_time() >= next_publish:
            now = trio.current_time()
            next_publish = now + interval if interval > 0 else math.inf
            try:
                uplink.send_nowait(collector.snapshot(now))
            except trio.WouldBlock:
                skipped += 1
                log.debug("metrics snapshot skipped (%d so far): uplink inbox full", skipped)
