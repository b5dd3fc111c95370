"""Which webhook events were handled already: Messenger delivers at least once.

Messenger redelivers a webhook POST that was not answered 200 in time, for up
to several hours, and a batch that timed out once may arrive again next to
new items.  A user must not get the same answer twice, so the webhook actor
asks :meth:`DedupeCache.seen` for every event's ``identity`` before handling
it.

The cache is sans-IO: time is an argument (``now``, seconds on any monotonic
clock; the actor passes ``trio.current_time()``).  It is bounded twice: by
age (``ttl``) and by count (``max_entries``, oldest out first), so a flood of
distinct events costs bounded memory.  Entries are kept in an ``OrderedDict``
in order of their last sighting, so expiry only ever looks at the front and
each call costs O(1) amortised.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

__all__ = ("DEFAULT_MAX_ENTRIES", "DEFAULT_TTL", "DedupeCache", "DedupeStatistics")

SECONDS: Final = 1.0
HOURS: Final = 3600 * SECONDS
#: About a day of a busy page's events at a few hundred bytes each: ~10 MB.
DEFAULT_MAX_ENTRIES: Final = 50_000
#: Messenger retries a failed delivery for hours; six covers what it documents.
DEFAULT_TTL: Final = 6 * HOURS


@dataclass(frozen=True, slots=True)
class DedupeStatistics:
    """Counters since the cache was made (``entries`` is the current size)."""

    entries: int
    max_entries: int
    ttl: float
    checked: int
    duplicates: int
    #: Dropped because the cache was full before their ``ttl`` ran out: if
    #: this grows, duplicates older than the oldest entry go unnoticed.
    evicted: int
    expired: int


class DedupeCache:
    """Identities seen within the last ``ttl`` seconds, at most ``max_entries`` of them."""

    __slots__ = ("_checked", "_duplicates", "_evicted", "_expired", "_seen", "max_entries", "ttl")

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, ttl: float = DEFAULT_TTL) -> None:
        """Raises ValueError unless ``max_entries >= 1`` and ``ttl > 0``."""
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        if not ttl > 0:
            raise ValueError(f"ttl must be positive, not {ttl}")
        self.max_entries = max_entries
        self.ttl = ttl
        # identity -> when it was last seen; ordered by that time.
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._checked = 0
        self._duplicates = 0
        self._evicted = 0
        self._expired = 0

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, identity: str, now: float) -> bool:
        """Whether ``identity`` was seen in the last ``ttl`` seconds; records it either way.

        A duplicate refreshes the entry: a redelivery storm keeps being
        recognised for ``ttl`` after its last copy, not its first.

        Args:
            identity: the event's ``identity``.
            now: the current time in seconds, from the same clock on every
                call (it must not go backwards).

        Returns:
            True for a duplicate (drop the event), False for a first sighting.
        """
        self._checked += 1
        self._expire(now)
        seen = identity in self._seen
        if seen:
            self._duplicates += 1
            self._seen.move_to_end(identity)
        self._seen[identity] = now
        if len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
            self._evicted += 1
        return seen

    def statistics(self) -> DedupeStatistics:
        return DedupeStatistics(
            entries=len(self._seen),
            max_entries=self.max_entries,
            ttl=self.ttl,
            checked=self._checked,
            duplicates=self._duplicates,
            evicted=self._evicted,
            expired=self._expired,
        )

    def _expire(self, now: float) -> None:
        # Each entry is removed at most once, so this loop is O(1) amortised.
        oldest_allowed = now - self.ttl
        seen = self._seen
        while seen:
            identity, at = next(iter(seen.items()))
            if at > oldest_allowed:
                break
            del seen[identity]
            self._expired += 1
