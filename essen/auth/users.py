"""Admin accounts: the first admin at start, and login.

Login is uniform on purpose: an unknown username, a wrong password, a
disabled account and a malformed username all end in the same
:class:`~essen.errors.LoginRefused`, after the same work (one store lookup and
one argon2 verification with the same parameters), and all count as a failure
for the rate limiter.  Only throttling answers differently
(:class:`~essen.errors.LoginThrottled`, with ``retry_after``), and it depends
on the failure history of the name and address, never on whether the account
exists.

Argon2 is CPU- and memory-heavy (64 MiB per verification by default), so it
runs in worker threads bounded by a small :class:`trio.CapacityLimiter`: a
burst of logins queues instead of exhausting memory.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Protocol

import trio

from essen.auth.passwords import DEFAULT_PASSWORDS, Passwords, Verification
from essen.errors import AdminExists, LoginRefused, LoginThrottled, StoreError

if TYPE_CHECKING:
    from essen.auth.rate_limit import LoginLimiter
    from essen.auth.tokens import IssuedToken, TokenSettings
    from essen.store import AdminUser

__all__ = ("USERNAME_PATTERN", "AdminDirectory", "authenticate", "ensure_admin", "valid_username")

log = logging.getLogger("essen.auth")

#: What an admin username may be: short, printable, no spaces (it is logged).
USERNAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+\-]{0,63}")
#: At most this many argon2 computations at once, process-wide by default.
_HASHING = trio.CapacityLimiter(2)


class AdminDirectory(Protocol):
    """What accounts need of a store (:class:`essen.store.Store` is one)."""

    async def get_admin(self, username: str) -> AdminUser | None: ...

    async def create_admin(self, username: str, password_hash: str) -> AdminUser: ...

    async def set_password_hash(self, username: str, password_hash: str) -> bool: ...


def valid_username(username: str) -> bool:
    return USERNAME_PATTERN.fullmatch(username) is not None


async def ensure_admin(
    store: AdminDirectory,
    username: str,
    password: str,
    *,
    passwords: Passwords = DEFAULT_PASSWORDS,
    hash_limiter: trio.CapacityLimiter | None = None,
) -> bool:
    """Create the admin account ``username`` unless it exists; True when created.

    For first start (``essen dev`` prints a generated login; production reads
    it from the environment).  An existing account is left as it is, its
    password included: restarting with another password must not take over
    an account.  Safe when several instances start at once.

    Raises:
        ValueError: the username or password is not acceptable.
        StoreUnavailable: the store cannot be reached.
    """
    if not valid_username(username):
        raise ValueError(f"an admin username must match {USERNAME_PATTERN.pattern}")
    if await store.get_admin(username) is not None:
        return False
    password_hash = await trio.to_thread.run_sync(
        passwords.hash, password, limiter=hash_limiter or _HASHING
    )
    try:
        await store.create_admin(username, password_hash)
    except AdminExists:
        return False  # another instance created it a moment ago
    log.info("created admin account %r", username)
    return True


async def authenticate(
    store: AdminDirectory,
    limiter: LoginLimiter,
    username: str,
    password: str,
    client: str,
    now: float,
    *,
    tokens: TokenSettings,
    now_wall: float,
    passwords: Passwords = DEFAULT_PASSWORDS,
    hash_limiter: trio.CapacityLimiter | None = None,
) -> IssuedToken:
    """Check a login and issue a token for it.

    Args:
        client: the client's address (the rate limiter's second key).
        now: Trio time, for the rate limiter.
        now_wall: wall-clock epoch seconds, for the token's ``iat``/``exp``.

    Returns:
        The signed token and its claims.

    Raises:
        LoginThrottled: too many recent failures for this name or address;
            nothing was checked.
        LoginRefused: anything else wrong (the same error and the same work
            for every cause).
        StoreUnavailable: the store cannot be reached (not counted as a failure).
    """
    retry_after = limiter.retry_after(username, client, now)
    if retry_after is not None:
        raise LoginThrottled(retry_after)
    # A name that cannot exist still costs a lookup (of the empty name).
    admin = await store.get_admin(username if valid_username(username) else "")
    verification: Verification = await trio.to_thread.run_sync(
        passwords.verify,
        admin.password_hash if admin is not None else None,
        password,
        limiter=hash_limiter or _HASHING,
    )
    if admin is None or admin.disabled or not verification.ok:
        limiter.failed(username, client, now)
        raise LoginRefused()
    limiter.succeeded(username, client, now)
    if verification.needs_rehash:
        await _rehash(store, admin.username, password, passwords, hash_limiter or _HASHING)
    return tokens.issue(admin.username, now_wall=now_wall)


async def _rehash(
    store: AdminDirectory,
    username: str,
    password: str,
    passwords: Passwords,
    hash_limiter: trio.CapacityLimiter,
) -> None:
    """Store a hash with today's parameters; a failure here must not fail the login."""
    try:
        new_hash = await trio.to_thread.run_sync(passwords.hash, password, limiter=hash_limiter)
        await store.set_password_hash(username, new_hash)
    except StoreError as error:
        log.warning("could not store a rehashed password for %r: %s", username, error)
