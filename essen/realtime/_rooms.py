"""Room membership of one namespace: a pure data structure (no I/O, no time).

Mirrors socket.io's in-memory adapter: every socket is in the room named by
its own id, rooms disappear when their last member leaves, and a broadcast is
"sockets in any of these rooms, minus sockets in any of those rooms".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ("Rooms",)


class Rooms:
    def __init__(self) -> None:
        self._members: dict[str, set[str]] = {}
        self._rooms_of: dict[str, set[str]] = {}

    def add(self, sid: str) -> None:
        """Register a socket; it joins the room named after itself."""
        self._rooms_of.setdefault(sid, set())
        self.join(sid, sid)

    def remove(self, sid: str) -> frozenset[str]:
        """Forget a socket; returns the rooms it was in (its own room excluded)."""
        rooms = self._rooms_of.pop(sid, set())
        for room in rooms:
            members = self._members.get(room)
            if members is not None:
                members.discard(sid)
                if not members:
                    del self._members[room]
        return frozenset(rooms - {sid})

    def join(self, sid: str, room: str) -> None:
        if sid not in self._rooms_of:
            raise KeyError(sid)
        self._rooms_of[sid].add(room)
        self._members.setdefault(room, set()).add(sid)

    def leave(self, sid: str, room: str) -> None:
        rooms = self._rooms_of.get(sid)
        if rooms is None or room not in rooms:
            return
        rooms.discard(room)
        members = self._members[room]
        members.discard(sid)
        if not members:
            del self._members[room]

    def rooms_of(self, sid: str) -> frozenset[str]:
        return frozenset(self._rooms_of.get(sid, ()))

    def members(self, room: str) -> frozenset[str]:
        return frozenset(self._members.get(room, ()))

    def room_sizes(self) -> dict[str, int]:
        """Member count per room, own-id rooms excluded."""
        return {
            room: len(members)
            for room, members in self._members.items()
            if room not in self._rooms_of or len(members) != 1 or room not in members
        }

    def targets(self, to: Iterable[str] | None, exclude: Iterable[str] = ()) -> set[str]:
        """Sockets a broadcast reaches: all (``to`` is None) or any of ``to``, minus ``exclude``."""
        if to is None:
            result = set(self._rooms_of)
        else:
            result = set()
            for room in to:
                members = self._members.get(room)
                if members:
                    result |= members
        for room in exclude:
            members = self._members.get(room)
            if members:
                result -= members
        return result

    def __len__(self) -> int:
        return len(self._rooms_of)
