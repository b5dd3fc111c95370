"""The fan-out actor: everything the dashboards see leaves the admin API here.

It owns the only calls to ``server.emit`` for monitoring traffic, so the
delivery policies live in one place:

* ``metrics:update`` to ``monitoring`` is volatile and coalesced per client
  (latest wins): a slow dashboard sees fewer updates, never a stale backlog;
* ``message:processed`` to ``monitoring`` and the user's ``user-{id}`` room is
  droppable under pressure (the feed is bounded per client) but kept for
  connection state recovery;
* ``health:changed`` to ``monitoring`` and ``admins`` is never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from essen.realtime import SocketIOServer

__all__ = ("Broadcast", "run")


@dataclass(frozen=True, slots=True)
class Broadcast:
    event: str
    payload: Any
    rooms: tuple[str, ...]
    volatile: bool = False
    droppable: bool = False
    coalesce: str | None = None


async def run(
    inbox: trio.MemoryReceiveChannel[Broadcast],
    *,
    server: SocketIOServer,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Emit what arrives until cancelled or the inbox closes."""
    task_status.started()
    async for item in inbox:
        server.emit(
            item.event,
            item.payload,
            to=item.rooms,
            volatile=item.volatile,
            droppable=item.droppable,
            coalesce=item.coalesce,
        )
