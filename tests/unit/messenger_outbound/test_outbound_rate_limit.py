"""The token bucket (pure, ``now`` given) and the limiter on the Trio clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from essen.messenger.rate_limit import (
    DEFAULT_BURST,
    DEFAULT_RATE,
    RateLimiter,
    TokenBucket,
)


def test_defaults_stay_under_facebooks_300_per_second() -> None:
    assert DEFAULT_RATE < 300
    assert DEFAULT_BURST <= DEFAULT_RATE
    stats = RateLimiter().statistics()
    assert (stats.rate, stats.burst) == (DEFAULT_RATE, DEFAULT_BURST)


def test_bucket_starts_full_and_empties() -> None:
    bucket = TokenBucket(rate=10.0, burst=3)
    assert [bucket.try_take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.tokens == 0.0


def test_bucket_refills_at_rate() -> None:
    bucket = TokenBucket(rate=4.0, burst=2)
    assert bucket.try_take(0.0)
    assert bucket.try_take(0.0)
    assert bucket.wait_time(0.0) == pytest.approx(0.25)
    assert not bucket.try_take(0.2)
    assert bucket.tokens == pytest.approx(0.8)
    assert bucket.wait_time(0.2) == pytest.approx(0.05)
    assert bucket.try_take(0.25)
    assert bucket.tokens == pytest.approx(0.0)


def test_bucket_caps_at_burst() -> None:
    bucket = TokenBucket(rate=100.0, burst=5)
    bucket.try_take(0.0)
    assert bucket.refill(3600.0) == 5.0
    assert bucket.wait_time(3600.0) == 0.0


def test_wait_time_then_take_never_needs_a_second_wait() -> None:
    # Float rounding must not leave 0.999... tokens at the promised instant.
    bucket = TokenBucket(rate=3.0, burst=1)
    now = 0.1
    for _ in range(1000):
        assert bucket.try_take(now) or bucket.try_take(now + bucket.wait_time(now))
        now += bucket.wait_time(now)


def test_clock_going_back_mints_nothing() -> None:
    bucket = TokenBucket(rate=1.0, burst=1)
    assert bucket.try_take(10.0)
    assert not bucket.try_take(5.0)
    assert bucket.wait_time(5.0) == pytest.approx(1.0)  # measured from 10.0, not from 5.0
    assert bucket.try_take(11.0)


def test_sustained_rate_is_exact() -> None:
    bucket = TokenBucket(rate=250.0, burst=50)
    granted = sum(bucket.try_take(i / 1000) for i in range(10_001))  # every ms for 10 s
    assert granted == 50 + 250 * 10


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (float("inf"), 1), (1.0, 0)])
def test_invalid_buckets_are_refused(rate, burst) -> None:
    with pytest.raises(ValueError, match=r"rate|burst"):
        TokenBucket(rate, burst)


def test_try_acquire_with_explicit_now() -> None:
    limiter = RateLimiter(rate=2.0, burst=1)
    assert limiter.try_acquire(0.0)
    assert not limiter.try_acquire(0.4)
    assert limiter.try_acquire(0.5)
    assert limiter.statistics().granted == 2


async def test_acquire_paces_callers_on_the_trio_clock(autojump_clock) -> None:
    limiter = RateLimiter(rate=4.0, burst=2)
    times: list[float] = []
    with trio.fail_after(10):
        start = trio.current_time()
        for _ in range(6):
            await limiter.acquire()
            times.append(trio.current_time() - start)
    assert times == pytest.approx([0.0, 0.0, 0.25, 0.5, 0.75, 1.0])
    stats = limiter.statistics()
    assert (stats.granted, stats.delayed, stats.waiting) == (6, 4, 0)


async def test_waiters_are_served_in_arrival_order(autojump_clock) -> None:
    limiter = RateLimiter(rate=1.0, burst=1)
    assert limiter.try_acquire(trio.current_time())
    order: list[int] = []

    async def take(i: int) -> None:
        await limiter.acquire()
        order.append(i)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for i in range(4):
                nursery.start_soon(take, i)
                await trio.testing.wait_all_tasks_blocked()
            assert limiter.statistics().waiting == 4
            # Nobody may jump the queue, even when a token is due.
            assert not limiter.try_acquire(trio.current_time() + 10)
    assert order == [0, 1, 2, 3]


async def test_cancelled_waiter_leaves_the_queue_without_a_token(autojump_clock) -> None:
    limiter = RateLimiter(rate=1.0, burst=1)
    await limiter.acquire()
    with trio.fail_after(10):
        with trio.move_on_after(0.5):
            await limiter.acquire()
        assert limiter.statistics().waiting == 0
        before = trio.current_time()
        await limiter.acquire()  # the token due at 1.0 is still there
        assert trio.current_time() - before == pytest.approx(0.5)
    assert limiter.statistics().granted == 2


async def test_acquire_checkpoints_even_when_a_token_is_free() -> None:
    limiter = RateLimiter(rate=1.0, burst=1)
    with trio.fail_after(10):
        with trio.CancelScope() as scope:
            scope.cancel()
            await limiter.acquire()
    assert scope.cancelled_caught
    assert limiter.statistics().granted == 0
