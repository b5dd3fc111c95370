"""Login throttling: lockouts per account and per address, exponential, bounded memory."""

from __future__ import annotations

import pytest

from essen.auth import ACCOUNT_LIMIT, ADDRESS_LIMIT, LimitPolicy, LoginLimiter

IP = "203.0.113.7"


def fail(limiter: LoginLimiter, times: int, now: float, user: str = "ada", ip: str = IP) -> None:
    for _ in range(times):
        assert limiter.retry_after(user, ip, now) is None
        limiter.failed(user, ip, now)


def test_defaults() -> None:
    assert (ACCOUNT_LIMIT.max_failures, ACCOUNT_LIMIT.window) == (5, 900)
    assert (ADDRESS_LIMIT.max_failures, ADDRESS_LIMIT.window) == (20, 900)


def test_account_locks_after_five_failures_then_recovers() -> None:
    limiter = LoginLimiter()
    fail(limiter, 4, now=100.0)
    assert limiter.retry_after("ada", IP, 100.0) is None
    limiter.failed("ada", IP, 100.0)
    assert limiter.retry_after("ada", IP, 100.0) == 60.0
    assert limiter.retry_after("ada", IP, 130.0) == 30.0
    assert limiter.retry_after("ADA", "198.51.100.1", 130.0) == 30.0  # any case, any address
    assert limiter.retry_after("bob", IP, 130.0) is None
    assert limiter.retry_after("ada", IP, 160.0) is None


def test_lockouts_grow_exponentially_up_to_the_cap() -> None:
    limiter = LoginLimiter(address=LimitPolicy(10_000, 900, 1, 1))
    now = 0.0
    lockouts = []
    for _ in range(8):
        fail(limiter, 5, now)
        wait = limiter.retry_after("ada", IP, now)
        assert wait is not None
        lockouts.append(wait)
        now += wait
    assert lockouts == [60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_failures_outside_the_window_do_not_count() -> None:
    limiter = LoginLimiter()
    for minute in range(20):  # one failure every 4 minutes: never 5 in 15
        fail(limiter, 1, now=minute * 240.0)
    assert limiter.retry_after("ada", IP, 20 * 240.0) is None


def test_success_clears_the_account_but_not_the_address() -> None:
    limiter = LoginLimiter()
    fail(limiter, 4, now=0.0)
    limiter.succeeded("ada", IP, 1.0)
    fail(limiter, 4, now=2.0)  # a fresh budget of 5
    assert limiter.retry_after("ada", IP, 2.0) is None
    # ...but the address remembers all 8 failures.
    for n in range(12):
        fail(limiter, 1, now=3.0, user=f"user{n}")
    assert limiter.retry_after("zed", IP, 3.0) == 300.0
    limiter.succeeded("ada", IP, 4.0)
    assert limiter.retry_after("zed", IP, 4.0) == 299.0


def test_address_locks_after_twenty_failures_across_accounts() -> None:
    limiter = LoginLimiter()
    for n in range(19):
        fail(limiter, 1, now=10.0, user=f"guess{n}")
    assert limiter.retry_after("anyone", IP, 10.0) is None
    limiter.failed("guess19", IP, 10.0)
    assert limiter.retry_after("anyone", IP, 10.0) == 300.0
    assert limiter.retry_after("anyone", "203.0.113.8", 10.0) is None
    assert limiter.statistics(10.0).locked_addresses == 1


def test_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() -> None:
    limiter = LoginLimiter(account=LimitPolicy(10_000, 900, 1, 1))
    for n in range(20):
        limiter.failed(f"u{n}", f"2001:db8:1:2::{n:x}", 0.0)
    assert limiter.retry_after("x", "2001:db8:1:2:ffff::1", 0.0) == 300.0
    assert limiter.retry_after("x", "2001:db8:1:3::1", 0.0) is None
    for n in range(20):
        limiter.failed(f"u{n}", "::ffff:192.0.2.1", 0.0)
    assert limiter.retry_after("x", "192.0.2.1", 0.0) == 300.0


def test_strikes_are_forgotten_after_a_quiet_day() -> None:
    limiter = LoginLimiter()
    fail(limiter, 5, now=0.0)
    fail(limiter, 5, now=60.0)
    assert limiter.retry_after("ada", "198.51.100.9", 60.0) == 120.0
    later = 60.0 + 24 * 3600 + 1
    fail(limiter, 5, now=later, ip="198.51.100.9")
    assert limiter.retry_after("ada", "198.51.100.9", later) == 60.0


def test_memory_is_bounded() -> None:
    limiter = LoginLimiter(max_keys=100)
    for n in range(1_000):
        limiter.failed(f"user{n}" + "x" * 10_000, f"10.0.{n // 256}.{n % 256}", float(n))
    stats = limiter.statistics(1_000.0)
    assert (stats.accounts, stats.addresses) == (100, 100)
    assert stats.evicted == 1_800
    # Checking unknown keys allocates nothing.
    for n in range(1_000):
        assert limiter.retry_after(f"other{n}", f"10.9.{n // 256}.{n % 256}", 0.0) is None
    assert limiter.statistics(0.0).accounts == 100


def test_the_least_recently_touched_key_is_evicted() -> None:
    limiter = LoginLimiter(max_keys=2, address=LimitPolicy(10_000, 900, 1, 1))
    fail(limiter, 4, now=0.0, user="ada")
    fail(limiter, 1, now=0.0, user="bob")
    fail(limiter, 1, now=1.0, user="ada")  # ada touched last: bob goes next
    fail(limiter, 1, now=2.0, user="cy")
    assert limiter.retry_after("ada", IP, 2.0) == 59.0  # kept (locked at 1.0)
    fail(limiter, 4, now=3.0, user="bob")  # bob's first failure was forgotten
    assert limiter.retry_after("bob", IP, 3.0) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_failures": 0, "window": 1, "base_lockout": 1, "max_lockout": 1},
        {"max_failures": 1, "window": 0, "base_lockout": 1, "max_lockout": 1},
        {"max_failures": 1, "window": 1, "base_lockout": 2, "max_lockout": 1},
    ],
)
def test_invalid_policies(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="invalid"):
        LimitPolicy(**kwargs)  # type: ignore[arg-type]
