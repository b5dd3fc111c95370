"""A redelivered webhook event is recognised, so nobody gets the same answer twice."""

from __future__ import annotations

import pytest

from essen.messenger.dedupe import DEFAULT_MAX_ENTRIES, DEFAULT_TTL, DedupeCache

HOUR = 3600.0


def test_the_first_sighting_is_new_and_a_redelivery_is_a_duplicate():
    cache = DedupeCache(max_entries=10, ttl=HOUR)
    assert cache.seen("mid:m1", now=0.0) is False
    assert cache.seen("mid:m1", now=5.0) is True
    assert cache.seen("mid:m2", now=5.0) is False


def test_a_redelivery_hours_later_is_still_caught_with_the_defaults():
    cache = DedupeCache()
    assert (cache.max_entries, cache.ttl) == (DEFAULT_MAX_ENTRIES, DEFAULT_TTL)
    cache.seen("mid:m1", now=100.0)
    assert cache.seen("mid:m1", now=100.0 + 5.9 * HOUR) is True


def test_an_identity_is_forgotten_after_ttl():
    cache = DedupeCache(max_entries=10, ttl=64.0)
    cache.seen("mid:m1", now=0.0)
    assert cache.seen("mid:m1", now=63.5) is True  # refreshed at 63.5
    assert cache.seen("mid:m1", now=127.0) is True  # refreshed at 127
    assert cache.seen("mid:m1", now=191.0) is False  # exactly ttl after the last sighting
    stats = cache.statistics()
    assert (stats.duplicates, stats.expired) == (2, 1)


def test_expired_entries_are_cleaned_as_time_passes():
    cache = DedupeCache(max_entries=1000, ttl=10.0)
    for n in range(100):
        cache.seen(f"old{n}", now=float(n) / 10)
    assert len(cache) == 100
    cache.seen("new", now=30.0)
    assert len(cache) == 1
    assert cache.statistics().expired == 100


def test_the_cache_is_bounded_and_evicts_the_oldest():
    cache = DedupeCache(max_entries=3, ttl=HOUR)
    for n, identity in enumerate(["a", "b", "c", "d"]):
        cache.seen(identity, now=float(n))
    assert len(cache) == 3
    assert cache.statistics().evicted == 1
    assert cache.seen("a", now=10.0) is False  # evicted, so it looks new again
    assert cache.seen("d", now=10.0) is True


def test_a_duplicate_is_refreshed_and_so_survives_eviction():
    cache = DedupeCache(max_entries=2, ttl=HOUR)
    cache.seen("a", now=0.0)
    cache.seen("b", now=1.0)
    cache.seen("a", now=2.0)  # a is now the most recent
    cache.seen("c", now=3.0)  # evicts b, not a
    assert cache.seen("a", now=4.0) is True
    assert cache.seen("b", now=4.0) is False


def test_a_flood_of_distinct_events_keeps_memory_bounded():
    cache = DedupeCache(max_entries=1000, ttl=HOUR)
    for n in range(50_000):
        cache.seen(f"mid:{n}", now=n * 0.001)
    stats = cache.statistics()
    assert stats.entries == 1000
    assert stats.evicted == 49_000
    assert stats.checked == 50_000


def test_statistics_start_at_zero():
    stats = DedupeCache(max_entries=5, ttl=1.0).statistics()
    assert (stats.entries, stats.checked, stats.duplicates, stats.evicted, stats.expired) == (
        0,
        0,
        0,
        0,
        0,
    )
    assert (stats.max_entries, stats.ttl) == (5, 1.0)


@pytest.mark.parametrize(("max_entries", "ttl"), [(0, 1.0), (-1, 1.0), (1, 0.0), (1, -5.0)])
def test_nonsense_bounds_are_refused(max_entries, ttl):
    with pytest.raises(ValueError, match=r"max_entries|ttl"):
        DedupeCache(max_entries=max_entries, ttl=ttl)
