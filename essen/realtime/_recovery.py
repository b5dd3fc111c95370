"""Connection state recovery, as Socket.IO 4.6+ defines it.  Pure: time is an argument.

Every broadcast that can be recovered (an event without ack, not volatile) is
given an *offset* (a string appended as the event's last argument, which the
client remembers) and kept in a log for ``window`` seconds.  When a socket
drops for a reason that is not deliberate, its id, rooms and private id
(``pid``) are kept for the same window.  A client that comes back with
``{pid, offset}`` in its CONNECT gets its old socket id and rooms back, and
every logged packet after ``offset`` that was addressed to it, in order.

Memory is bounded: the log keeps at most ``max_packets`` packets and the store
at most ``max_sessions`` disconnected sessions; the oldest go first.  A client
whose offset has fallen out of the log is not recovered (it connects afresh,
``recovered`` false), exactly as socket.io behaves.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from essen.protocol.engine_server import Outgoing

__all__ = ("LoggedPacket", "RecoveryConfig", "RecoveryStore", "SavedSession")


@dataclass(frozen=True, slots=True)
class RecoveryConfig:
    #: How long a disconnected session, and the packets it may miss, are kept (seconds).
    window: float = 120.0
    max_packets: int = 10_000
    max_sessions: int = 10_000


@dataclass(frozen=True, slots=True)
class LoggedPacket:
    offset: str
    namespace: str
    to: frozenset[str] | None
    exclude: frozenset[str]
    item: Outgoing
    at: float


@dataclass(frozen=True, slots=True)
class SavedSession:
    pid: str
    sid: str
    namespace: str
    rooms: frozenset[str]
    data: dict[str, Any]
    expires_at: float
    #: Sequence number the log had when the socket connected: a client that
    #: comes back with no offset (it got no broadcast yet) resumes from here.
    since_seq: int = 0


class RecoveryStore:
    def __init__(self, config: RecoveryConfig) -> None:
        self.config = config
        self._log: deque[LoggedPacket] = deque()
        self._index: dict[str, int] = {}  # offset -> sequence number
        self._first_seq = 0  # sequence number of self._log[0]
        self._sessions: OrderedDict[str, SavedSession] = OrderedDict()
        self._counter = 0

    @property
    def next_seq(self) -> int:
        """The sequence number the next logged packet will get."""
        return self._first_seq + len(self._log)

    def next_offset(self) -> str:
        self._counter += 1
        return format(self._counter, "x")

    def log(self, packet: LoggedPacket) -> None:
        self._prune(packet.at)
        seq = self._first_seq + len(self._log)
        self._log.append(packet)
        self._index[packet.offset] = seq
        while len(self._log) > self.config.max_packets:
            self._pop_oldest()

    def save(self, session: SavedSession, now: float) -> None:
        self._prune(now)
        self._sessions[session.pid] = session
        self._sessions.move_to_end(session.pid)
        while len(self._sessions) > self.config.max_sessions:
            self._sessions.popitem(last=False)

    def restore(
        self, pid: str, offset: str | None, namespace: str, now: float
    ) -> tuple[SavedSession, list[Outgoing]] | None:
        """The saved session and the packets it missed, or None if it cannot be recovered.

        ``offset`` is the last broadcast the client saw; ``None`` means it saw
        none since it connected (socket.io-client then sends no offset), so it
        missed everything addressed to it since then.  A successful restore
        consumes the saved session.
        """
        self._prune(now)
        session = self._sessions.get(pid)
        if session is None or session.namespace != namespace:
            return None
        if offset is None:
            if session.since_seq < self._first_seq:
                return None  # part of what it missed is already pruned
            seq = session.since_seq - 1
        else:
            found = self._index.get(offset)
            if found is None:
                return None
            seq = found
        del self._sessions[pid]
        rooms = session.rooms | {session.sid}
        missed = [
            logged.item
            for i, logged in enumerate(self._log)
            if i + self._first_seq > seq
            and logged.namespace == namespace
            and (logged.to is None or not logged.to.isdisjoint(rooms))
            and logged.exclude.isdisjoint(rooms)
        ]
        return session, missed

    def statistics(self) -> dict[str, int]:
        return {"logged_packets": len(self._log), "saved_sessions": len(self._sessions)}

    def _pop_oldest(self) -> None:
        oldest = self._log.popleft()
        del self._index[oldest.offset]
        self._first_seq += 1

    def _prune(self, now: float) -> None:
        horizon = now - self.config.window
        while self._log and self._log[0].at < horizon:
            self._pop_oldest()
        while self._sessions:
            pid, oldest = next(iter(self._sessions.items()))
            if oldest.expires_at > now:
                break
            del self._sessions[pid]
