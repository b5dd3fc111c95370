"""The admin's recent-message feed: the last N events, and a short history per user.

A dashboard that subscribes gets the last few dozen ``message:processed``
events in its ack, so the feed is not empty until traffic arrives; an admin
who opens a conversation (``conversation:join``) gets that user's recent
events.  Both are answered from memory, never from the store: the store's
message log is for retention and audits, not for the hot path.

Bounded by construction:

* one ring of the last ``limit`` events;
* a per-user index of at most ``max_users`` users, each with at most
  ``per_user`` events; the least recently *active* user (whose latest event
  is oldest) is forgotten first.  Reads do not count as activity, so that
  reading stays side-effect free and an admin browsing conversations cannot
  push active users out.

Events are shared between the ring and the index (frozen models), so memory
is at most ``limit + max_users * per_user`` events, whatever the traffic.

Bots re-send a batch after a reconnect when they cannot know whether it
arrived; an event whose ``(instance, id)`` is still in the ring is dropped,
so a re-sent batch does not show twice.

Events are kept in arrival order and returned oldest first, so live
``message:processed`` events continue the list a snapshot started.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable

    from essen.events import MessageProcessed

__all__ = ("DEFAULT_LIMIT", "DEFAULT_MAX_USERS", "DEFAULT_PER_USER", "FeedStatistics", "RecentFeed")

DEFAULT_LIMIT: Final = 500
DEFAULT_PER_USER: Final = 50
DEFAULT_MAX_USERS: Final = 256


@dataclass(frozen=True, slots=True)
class FeedStatistics:
    """What the feed holds and has dropped."""

    events: int
    users: int
    indexed_events: int
    added: int
    duplicates: int
    evicted_users: int


def _newest(events: deque[MessageProcessed], n: int) -> list[MessageProcessed]:
    """The newest ``n`` of ``events``, oldest first, without walking the whole deque."""
    newest = list(islice(reversed(events), n))
    newest.reverse()
    return newest


class RecentFeed:
    """The last ``limit`` processed messages, and the last ``per_user`` of each active user.

    Args:
        limit: events kept in the ring.
        per_user: events kept per user.
        max_users: users indexed; the least recently active is forgotten first.

    Raises:
        ValueError: a bound is below 1.

    Owned by one task; nothing blocks.
    """

    def __init__(
        self,
        limit: int = DEFAULT_LIMIT,
        *,
        per_user: int = DEFAULT_PER_USER,
        max_users: int = DEFAULT_MAX_USERS,
    ) -> None:
        if limit < 1 or per_user < 1 or max_users < 1:
            raise ValueError("limit, per_user and max_users must be >= 1")
        self.limit = limit
        self.per_user = per_user
        self.max_users = max_users
        self._ring: deque[MessageProcessed] = deque()
        # (instance, id) of every event in the ring: the ring never holds a
        # duplicate, so removing the key of an evicted event is exact.
        self._keys: set[tuple[str, str]] = set()
        self._users: OrderedDict[str, deque[MessageProcessed]] = OrderedDict()
        self._added = 0
        self._duplicates = 0
        self._evicted_users = 0

    def add(self, event: MessageProcessed) -> bool:
        """Keep one event; returns False if it is a duplicate still in the ring."""
        key = (event.instance, event.id)
        if key in self._keys:
            self._duplicates += 1
            return False
        self._added += 1
        ring = self._ring
        if len(ring) >= self.limit:
            evicted = ring.popleft()
            self._keys.discard((evicted.instance, evicted.id))
        ring.append(event)
        self._keys.add(key)

        history = self._users.get(event.user)
        if history is None:
            history = self._users[event.user] = deque(maxlen=self.per_user)
            if len(self._users) > self.max_users:
                self._users.popitem(last=False)
                self._evicted_users += 1
        else:
            self._users.move_to_end(event.user)
        history.append(event)
        return True

    def extend(self, events: Iterable[MessageProcessed]) -> int:
        """Keep several events in order (a bot's batch); returns how many were new."""
        return sum(self.add(event) for event in events)

    def last(self, n: int = 50) -> list[MessageProcessed]:
        """The newest ``n`` events (at most ``limit``), oldest first.

        Raises:
            ValueError: ``n`` is negative.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        return _newest(self._ring, n)

    def for_user(self, user: str, limit: int = 50) -> list[MessageProcessed]:
        """The newest ``limit`` events of ``user`` (at most ``per_user``), oldest first.

        An unknown or forgotten user has none.  Does not count as activity.

        Raises:
            ValueError: ``limit`` is negative.
        """
        if limit < 0:
            raise ValueError("limit must be >= 0")
        history = self._users.get(user)
        return [] if history is None else _newest(history, limit)

    def __len__(self) -> int:
        return len(self._ring)

    def statistics(self) -> FeedStatistics:
        """Sizes (bounded) and counters."""
        return FeedStatistics(
            events=len(self._ring),
            users=len(self._users),
            indexed_events=sum(len(history) for history in self._users.values()),
            added=self._added,
            duplicates=self._duplicates,
            evicted_users=self._evicted_users,
        )
