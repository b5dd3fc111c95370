"""Login throttling per account and per client address, as pure logic.

Theory of operation: every key (a casefolded username, or a client address)
has a sliding window of its recent failures.  When ``max_failures`` fall
within ``window`` seconds the key is locked for ``base_lockout`` seconds, and
each further lockout of the same key doubles that, up to ``max_lockout``
("strikes").  A success clears an *account*'s record but never an address's
(an attacker with one valid account must not be able to reset the counter of
the address they guess other accounts from).  Strikes are forgotten after
``forget_after`` seconds without a failure.

The defaults: an account locks after 5 failures in 15 minutes (1 min, 2, 4 ...
at most 1 h); an address after 20 in 15 minutes (5 min, 10 ... at most 24 h).
Unknown usernames are counted exactly like real ones, so a lockout reveals
nothing about which exist.

Time is the ``now`` argument (Trio's clock in the service, anything in
tests).  Memory is bounded: each dimension keeps at most ``max_keys`` keys,
least recently touched evicted first (counted in :meth:`statistics`), and a
key holds at most ``max_failures`` timestamps.  Checking a key never
creates one.  IPv6 addresses count per /64, the block one host usually has.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from dataclasses import dataclass, field

__all__ = ("ACCOUNT_LIMIT", "ADDRESS_LIMIT", "LimitPolicy", "LimiterStatistics", "LoginLimiter")

MINUTE = 60.0
HOUR = 3600.0
_MAX_KEY = 256


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    """How many failures one key may have, and how long it is locked after."""

    max_failures: int
    window: float
    base_lockout: float
    max_lockout: float
    forget_after: float = 24 * HOUR

    def __post_init__(self) -> None:
        if self.max_failures < 1 or not 0 < self.base_lockout <= self.max_lockout:
            raise ValueError(f"invalid limit policy {self}")
        if self.window <= 0 or self.forget_after <= 0:
            raise ValueError(f"invalid limit policy {self}")

    def lockout(self, strikes: int) -> float:
        """The lockout after ``strikes`` earlier lockouts."""
        return min(self.base_lockout * 2.0 ** min(strikes, 64), self.max_lockout)


ACCOUNT_LIMIT = LimitPolicy(
    max_failures=5, window=15 * MINUTE, base_lockout=1 * MINUTE, max_lockout=1 * HOUR
)
ADDRESS_LIMIT = LimitPolicy(
    max_failures=20, window=15 * MINUTE, base_lockout=5 * MINUTE, max_lockout=24 * HOUR
)


@dataclass(slots=True)
class _Record:
    failures: deque[float]
    last_failure: float
    locked_until: float = float("-inf")
    strikes: int = 0


@dataclass(frozen=True, slots=True)
class LimiterStatistics:
    accounts: int
    addresses: int
    #: Keys forgotten because a dimension was full (their history is lost).
    evicted: int
    locked_accounts: int
    locked_addresses: int


@dataclass(slots=True)
class _Dimension:
    policy: LimitPolicy
    max_keys: int
    records: OrderedDict[str, _Record] = field(default_factory=OrderedDict)
    evicted: int = 0

    def retry_after(self, key: str, now: float) -> float | None:
        record = self.records.get(key)
        if record is None or record.locked_until <= now:
            return None
        return record.locked_until - now

    def fail(self, key: str, now: float) -> None:
        policy = self.policy
        record = self.records.pop(key, None)
        if record is None or now - record.last_failure > policy.forget_after:
            record = _Record(failures=deque(maxlen=policy.max_failures), last_failure=now)
        record.last_failure = now
        while record.failures and record.failures[0] <= now - policy.window:
            record.failures.popleft()
        record.failures.append(now)
        if len(record.failures) >= policy.max_failures:
            record.locked_until = now + policy.lockout(record.strikes)
            record.strikes += 1
            record.failures.clear()
        self.records[key] = record  # most recently touched last
        while len(self.records) > self.max_keys:
            self.records.popitem(last=False)
            self.evicted += 1

    def forget(self, key: str) -> None:
        self.records.pop(key, None)

    def locked(self, now: float) -> int:
        return sum(1 for record in self.records.values() if record.locked_until > now)


class LoginLimiter:
    """Decides whether a login attempt may even be checked.

    Use: ``retry_after`` before verifying a password (refuse when it is not
    None), then ``failed`` or ``succeeded`` with the outcome.
    """

    __slots__ = ("_accounts", "_addresses")

    def __init__(
        self,
        *,
        account: LimitPolicy = ACCOUNT_LIMIT,
        address: LimitPolicy = ADDRESS_LIMIT,
        max_keys: int = 10_000,
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be positive")
        self._accounts = _Dimension(account, max_keys)
        self._addresses = _Dimension(address, max_keys)

    def retry_after(self, username: str, address: str, now: float) -> float | None:
        """Seconds until an attempt for ``username`` from ``address`` is allowed;
        None when it is allowed now."""
        waits = [
            wait
            for wait in (
                self._accounts.retry_after(_account_key(username), now),
                self._addresses.retry_after(_address_key(address), now),
            )
            if wait is not None
        ]
        return max(waits) if waits else None

    def failed(self, username: str, address: str, now: float) -> None:
        """Count a failed attempt against both the account and the address."""
        self._accounts.fail(_account_key(username), now)
        self._addresses.fail(_address_key(address), now)

    def succeeded(self, username: str, address: str, now: float) -> None:
        """Clear the account's failures and lockouts (the address keeps its record)."""
        del address, now  # an address is never cleared by a success, see above
        self._accounts.forget(_account_key(username))

    def statistics(self, now: float) -> LimiterStatistics:
        return LimiterStatistics(
            accounts=len(self._accounts.records),
            addresses=len(self._addresses.records),
            evicted=self._accounts.evicted + self._addresses.evicted,
            locked_accounts=self._accounts.locked(now),
            locked_addresses=self._addresses.locked(now),
        )


def _account_key(username: str) -> str:
    # "Admin" and "admin" share one budget, whatever the store does with case;
    # the cut keeps a flood of huge usernames from growing memory per key.
    return username[:_MAX_KEY].casefold()


def _address_key(address: str) -> str:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:_MAX_KEY]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)
