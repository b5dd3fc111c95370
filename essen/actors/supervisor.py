"""Supervision: children restarted with backoff, restarts visible, escalation on a storm.

Erlang's shape, on a Trio nursery.  Each child is a :class:`ChildSpec` whose
``run`` accepts ``task_status`` and calls ``task_status.started()`` when ready.
The supervisor starts the children in order (each one ready before the next
starts), then keeps each alive according to its :class:`Restart` policy.  A
crash is logged, reported to ``on_event`` (the health actor and the metrics
count them) and followed by a backoff delay; more than ``max_restarts``
restarts of one child within ``window`` seconds (on the Trio clock) raises
:class:`SupervisorEscalation` to the parent, which is the signal that a
restart will not fix it.  ``Cancelled`` is never a failure: cancelling the
supervisor stops every child, which is how the process shuts down.
"""

from __future__ import annotations

import enum
import logging
import random
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from essen.errors import EssenError, first_leaf
from essen.realtime.backoff import Backoff, BackoffPolicy

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = (
    "ChildEvent",
    "ChildSpec",
    "Restart",
    "Supervisor",
    "SupervisorEscalation",
)

log = logging.getLogger("essen.supervisor")


class Restart(enum.Enum):
    PERMANENT = "permanent"  # always restarted, even after a normal return
    TRANSIENT = "transient"  # restarted after a crash, not after a normal return
    TEMPORARY = "temporary"  # never restarted


@dataclass(frozen=True, slots=True)
class ChildSpec:
    id: str
    run: Callable[..., Awaitable[Any]]
    args: tuple[Any, ...] = ()
    restart: Restart = Restart.PERMANENT


@dataclass(frozen=True, slots=True)
class ChildEvent:
    """Something a child did that an operator may need to see."""

    child: str
    kind: str  # "started" | "crashed" | "exited" | "gave-up"
    error: str | None = None
    restarts: int = 0


class SupervisorEscalation(EssenError):
    """A child kept crashing: more restarts in the window than allowed."""


@dataclass
class Supervisor:
    children: list[ChildSpec]
    max_restarts: int = 5
    window: float = 60.0
    backoff: BackoffPolicy = field(
        default_factory=lambda: BackoffPolicy(initial=0.1, factor=2.0, maximum=5.0, jitter=0.2)
    )
    rng: random.Random = field(default_factory=random.Random)
    on_event: Callable[[ChildEvent], None] | None = None
    restarts: dict[str, int] = field(default_factory=dict)

    def _report(self, event: ChildEvent) -> None:
        if event.kind == "crashed":
            log.error("actor %s crashed (restart %d): %s", event.child, event.restarts, event.error)
        elif event.kind == "gave-up":
            log.critical("actor %s crashed too often, escalating: %s", event.child, event.error)
        else:
            log.debug("actor %s %s", event.child, event.kind)
        if self.on_event is not None:
            self.on_event(event)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start every child in order, then supervise them until cancelled.

        Raises:
            SupervisorEscalation: a child crashed more often than allowed (the
                other children are cancelled first).
        """
        try:
            async with trio.open_nursery() as nursery:
                for spec in self.children:
                    await nursery.start(self._keep, spec)
                task_status.started()
        except* SupervisorEscalation as group:
            # The parent is told in one exception it can catch, not a group
            # (its __cause__ is still the child's last crash).
            raise first_leaf(group)  # noqa: B904 - the escalation carries its own cause

    async def _keep(self, spec: ChildSpec, *, task_status: trio.TaskStatus[None]) -> None:
        backoff = Backoff(self.backoff, self.rng)
        recent: deque[float] = deque()
        ready = False
        while True:
            error: BaseException | None = None
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(spec.run, *spec.args)
                    if not ready:
                        ready = True
                        task_status.started()
                    self._report(
                        ChildEvent(spec.id, "started", restarts=self.restarts.get(spec.id, 0))
                    )
            except Exception as exc:  # an ExceptionGroup from the child's own nursery too
                error = exc
            if error is None:
                if spec.restart is not Restart.PERMANENT:
                    self._report(ChildEvent(spec.id, "exited"))
                    return
                description = "returned"
            else:
                if spec.restart is Restart.TEMPORARY:
                    self._report(ChildEvent(spec.id, "crashed", _describe(error)))
                    return
                description = _describe(error)
            now = trio.current_time()
            recent.append(now)
            while recent and recent[0] < now - self.window:
                recent.popleft()
            count = self.restarts[spec.id] = self.restarts.get(spec.id, 0) + 1
            if len(recent) > self.max_restarts:
                self._report(ChildEvent(spec.id, "gave-up", description, count))
                raise SupervisorEscalation(
                    f"{spec.id} restarted {len(recent)} times in {self.window:g} s"
                ) from error
            self._report(ChildEvent(spec.id, "crashed", description, count))
            await trio.sleep(backoff.next())


def _describe(error: BaseException) -> str:
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return f"{type(error).__name__}: {error}"
