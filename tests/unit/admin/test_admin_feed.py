"""RecentFeed: the last N processed messages and a bounded per-user history (LRU)."""

from __future__ import annotations

import pytest

from essen.admin.feed import RecentFeed
from essen.events import MessageProcessed


def event(i: int, user: str = "u_0001", instance: str = "bot-1") -> MessageProcessed:
    return MessageProcessed(
        instance=instance,
        id=f"m{i}",
        user=user,
        kind="text",
        direction="in",
        preview=f"hello {i}",
        outcome="answered",
        at=1_767_225_600.0 + i,
    )


def ids(events: list[MessageProcessed]) -> list[str]:
    return [e.id for e in events]


def test_ring_keeps_the_last_limit_events_oldest_first() -> None:
    feed = RecentFeed(limit=5)
    for i in range(12):
        assert feed.add(event(i))
    assert len(feed) == 5
    assert ids(feed.last(50)) == ["m7", "m8", "m9", "m10", "m11"]
    assert ids(feed.last(2)) == ["m10", "m11"]
    assert feed.last(0) == []
    with pytest.raises(ValueError, match="n must be"):
        feed.last(-1)


def test_default_sizes() -> None:
    feed = RecentFeed()
    assert feed.extend(event(i, user=f"u_{i % 300:04d}") for i in range(2000)) == 2000
    assert len(feed) == 500
    assert ids(feed.last()) == [f"m{i}" for i in range(1950, 2000)]
    stats = feed.statistics()
    assert stats.users == 256
    # Round robin over more users than the index holds: once full, every
    # arrival is a user forgotten since, so each holds only its latest event.
    assert stats.evicted_users == 2000 - 256
    assert stats.indexed_events == 256


def test_a_resent_event_still_in_the_ring_is_dropped() -> None:
    feed = RecentFeed(limit=3)
    assert feed.extend([event(1), event(2)]) == 2
    # A bot re-sends its batch after a reconnect: nothing shows twice.
    assert feed.extend([event(1), event(2), event(3)]) == 1
    assert ids(feed.last()) == ["m1", "m2", "m3"]
    assert ids(feed.for_user("u_0001")) == ["m1", "m2", "m3"]
    # The same id from another instance is another event.
    assert feed.add(event(3, instance="bot-2"))
    stats = feed.statistics()
    assert (stats.added, stats.duplicates) == (4, 2)
    # Once an event has left the ring its key is forgotten with it: the set stays bounded.
    for i in range(10, 20):
        feed.add(event(i))
    assert feed.add(event(1))


def test_per_user_history_is_bounded_and_ordered() -> None:
    feed = RecentFeed(limit=100, per_user=4)
    for i in range(10):
        feed.add(event(i, user="u_alice" if i % 2 == 0 else "u_bob"))
    assert ids(feed.for_user("u_alice")) == ["m2", "m4", "m6", "m8"]
    assert ids(feed.for_user("u_bob", limit=2)) == ["m7", "m9"]
    assert feed.for_user("u_alice", limit=0) == []
    assert feed.for_user("u_nobody") == []
    with pytest.raises(ValueError, match="limit must be"):
        feed.for_user("u_alice", limit=-1)


def test_per_user_index_forgets_the_least_recently_active_user() -> None:
    feed = RecentFeed(limit=100, max_users=3)
    feed.add(event(1, user="u_a"))
    feed.add(event(2, user="u_b"))
    feed.add(event(3, user="u_c"))
    feed.add(event(4, user="u_a"))  # a is active again: b is now the least recent
    # Reading is not activity: an admin browsing b does not keep b.
    assert ids(feed.for_user("u_b")) == ["m2"]
    feed.add(event(5, user="u_d"))
    assert feed.for_user("u_b") == []
    assert ids(feed.for_user("u_a")) == ["m1", "m4"]
    assert ids(feed.for_user("u_c")) == ["m3"]
    assert ids(feed.for_user("u_d")) == ["m5"]
    assert feed.statistics().users == 3
    assert feed.statistics().evicted_users == 1
    # The ring is independent of the index: b's event is still in the feed.
    assert "m2" in ids(feed.last())


def test_memory_bound_under_a_flood_of_users() -> None:
    feed = RecentFeed(limit=50, per_user=5, max_users=20)
    for i in range(20_000):
        feed.add(event(i, user=f"u_{i % 997:04d}"))
    stats = feed.statistics()
    assert stats.events == 50
    assert stats.users == 20
    assert stats.indexed_events <= 20 * 5


def test_bounds_are_validated() -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        RecentFeed(limit=0)
    with pytest.raises(ValueError, match="must be >= 1"):
        RecentFeed(per_user=0)
    with pytest.raises(ValueError, match="must be >= 1"):
        RecentFeed(max_users=0)
