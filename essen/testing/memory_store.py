"""An in-memory store for the harness: the admin API's store without a database or a thread.

Same behaviour as :class:`essen.store.store.Store` where the admin API can
tell (duplicate admins refused, rollups replaced per ``(instance, hour)``,
appends idempotent per ``(instance, id)``, newest-first user history), bounded
like everything else, and every method a checkpoint, so a run under MockClock
stays deterministic.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import trio

from essen.errors import AdminExists, StoreUnavailable
from essen.store.rows import AdminUser, MessageLogEntry, Rollup

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from essen.clock import WallClock

__all__ = ("MemoryStore",)


class MemoryStore:
    def __init__(self, wall: WallClock, *, max_messages: int = 100_000) -> None:
        self._wall = wall
        self._admins: dict[str, AdminUser] = {}
        self._rollups: dict[tuple[str, int], Rollup] = {}
        self._messages: OrderedDict[tuple[str, str], MessageLogEntry] = OrderedDict()
        self._max_messages = max_messages
        #: Set to make every call fail as an unreachable database would.
        self.down = False

    @property
    def backend(self) -> str:
        return "memory"

    async def _enter(self) -> None:
        await trio.lowlevel.checkpoint()
        if self.down:
            raise StoreUnavailable("the in-memory store is down (by request)")

    async def create_admin(self, username: str, password_hash: str) -> AdminUser:
        await self._enter()
        if username in self._admins:
            raise AdminExists(username)
        user = AdminUser(username, password_hash, created_at=self._wall.now())
        self._admins[username] = user
        return user

    async def get_admin(self, username: str) -> AdminUser | None:
        await self._enter()
        return self._admins.get(username)

    async def set_password_hash(self, username: str, password_hash: str) -> bool:
        await self._enter()
        user = self._admins.get(username)
        if user is None:
            return False
        self._admins[username] = AdminUser(username, password_hash, user.created_at, user.disabled)
        return True

    async def append_messages(self, batch: Sequence[MessageLogEntry]) -> None:
        await self._enter()
        for entry in batch:
            self._messages.setdefault((entry.instance, entry.id), entry)
        while len(self._messages) > self._max_messages:
            self._messages.popitem(last=False)

    async def upsert_rollups(self, rollups: Iterable[Rollup]) -> int:
        await self._enter()
        count = 0
        latest = {(r.instance, r.hour_epoch): r for r in rollups}
        for key, rollup in latest.items():
            stored = self._rollups.get(key)
            if stored is None or _total(rollup) >= _total(stored):
                self._rollups[key] = rollup  # the fuller row wins, as in Store
            count += 1
        return count

    async def rollups(
        self, since_epoch: float, until_epoch: float, instance: str | None = None
    ) -> list[Rollup]:
        await self._enter()
        rows = [
            r
            for (name, hour), r in self._rollups.items()
            if since_epoch <= hour < until_epoch and (instance is None or name == instance)
        ]
        return sorted(rows, key=lambda r: (r.hour_epoch, r.instance))

    async def messages_for_user(self, user: str, limit: int = 50) -> list[MessageLogEntry]:
        await self._enter()
        entries = [e for e in self._messages.values() if e.user == user]
        return sorted(entries, key=lambda e: e.at, reverse=True)[:limit]

    async def prune_messages(self, before_epoch: float) -> int:
        await self._enter()
        old = [key for key, e in self._messages.items() if e.at < before_epoch]
        for key in old:
            del self._messages[key]
        return len(old)

    async def ping(self) -> None:
        await self._enter()


def _total(rollup: Rollup) -> int:
    return rollup.received + rollup.answered + rollup.failed
