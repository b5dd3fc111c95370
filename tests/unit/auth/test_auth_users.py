"""Admin accounts on a real SQLite store: first admin, login, uniform refusals, throttling."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pytest
import trio
from argon2 import PasswordHasher, extract_parameters

from essen.auth import LoginLimiter, Passwords, TokenSettings, authenticate, ensure_admin
from essen.errors import AuthError, LoginRefused, LoginThrottled
from essen.store import Store, default_url
from tests.unit.auth.auth_helpers import CHEAP, SECRET, counting_hasher

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.unit.auth.auth_helpers import CountingHasher

WALL = 1_767_225_600.0
TOKENS = TokenSettings(secret=SECRET, ttl=3600)
IP = "192.0.2.10"
DEADLINE = 30


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[Store]:
    with trio.fail_after(DEADLINE):
        opened = await Store.open(default_url(tmp_path))
    try:
        yield opened
    finally:
        with trio.fail_after(DEADLINE):
            await opened.close()


@pytest.fixture
def hasher() -> CountingHasher:
    return counting_hasher()


@pytest.fixture
def passwords(hasher: CountingHasher) -> Passwords:
    return Passwords(hasher)


async def login(
    store: Store,
    passwords: Passwords,
    username: str,
    password: str,
    *,
    limiter: LoginLimiter | None = None,
    now: float = 0.0,
    client: str = IP,
):
    return await authenticate(
        store,
        limiter or LoginLimiter(),
        username,
        password,
        client,
        now,
        tokens=TOKENS,
        now_wall=WALL,
        passwords=passwords,
    )


async def test_ensure_admin_creates_once_and_never_overwrites(
    store: Store, passwords: Passwords
) -> None:
    with trio.fail_after(DEADLINE):
        assert await ensure_admin(store, "ada", "first-password", passwords=passwords)
        assert not await ensure_admin(store, "ada", "second-password", passwords=passwords)
        issued = await login(store, passwords, "ada", "first-password")
        assert issued.claims.sub == "ada"
        with pytest.raises(LoginRefused):
            await login(store, passwords, "ada", "second-password")


async def test_instances_starting_together_create_one_admin(
    store: Store, passwords: Passwords
) -> None:
    created: list[bool] = []

    async def start() -> None:
        created.append(await ensure_admin(store, "ada", "pw", passwords=passwords))

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(start)
    assert sorted(created) == [False, False, False, True]


@pytest.mark.parametrize("username", ["", "has space", "x" * 65, "-leading-dash", "ünï"])
async def test_ensure_admin_refuses_odd_usernames(
    store: Store, passwords: Passwords, username: str
) -> None:
    with trio.fail_after(DEADLINE), pytest.raises(ValueError, match="username"):
        await ensure_admin(store, username, "pw", passwords=passwords)


async def test_login_issues_a_verifiable_token(store: Store, passwords: Passwords) -> None:
    with trio.fail_after(DEADLINE):
        await ensure_admin(store, "ada", "pw", passwords=passwords)
        issued = await login(store, passwords, "ada", "pw")
    claims = TOKENS.verify(issued.token, now_wall=WALL + 10)
    assert claims == issued.claims
    assert (claims.sub, claims.iat, claims.exp) == ("ada", int(WALL), int(WALL) + 3600)


async def test_every_refusal_looks_the_same_and_costs_the_same(
    store: Store, passwords: Passwords, hasher: CountingHasher
) -> None:
    """Unknown user, wrong password, disabled account, impossible name: one
    error, one message, one lookup and one verification with the same parameters."""
    lookups: list[str] = []
    real_get_admin = store.get_admin

    async def counting_get_admin(username: str):
        lookups.append(username)
        return await real_get_admin(username)

    with trio.fail_after(DEADLINE):
        await ensure_admin(store, "ada", "right", passwords=passwords)
        await ensure_admin(store, "eve", "right", passwords=passwords)
        await store.set_admin_disabled("eve", True)
        store.get_admin = counting_get_admin  # type: ignore[method-assign]
        hasher.verified.clear()
        refusals: list[AuthError] = []
        for username, password in [
            ("nobody", "right"),
            ("ada", "wrong"),
            ("eve", "right"),
            ("not a name!", "right"),
        ]:
            with pytest.raises(LoginRefused) as caught:
                await login(store, passwords, username, password)
            refusals.append(caught.value)
    assert {(type(e), e.reason, str(e)) for e in refusals} == {
        (LoginRefused, "invalid_credentials", "invalid_credentials")
    }
    assert len(lookups) == 4
    stored = await store.get_admin("ada")
    assert stored is not None
    assert hasher.verified == [extract_parameters(stored.password_hash)] * 4


async def test_throttling_locks_then_lets_in(store: Store, passwords: Passwords) -> None:
    limiter = LoginLimiter()
    with trio.fail_after(DEADLINE):
        await ensure_admin(store, "ada", "right", passwords=passwords)
        for attempt in range(5):
            with pytest.raises(LoginRefused):
                await login(store, passwords, "ada", "wrong", limiter=limiter, now=attempt)
        # Locked: even the right password is not checked now.
        with pytest.raises(LoginThrottled) as caught:
            await login(store, passwords, "ada", "right", limiter=limiter, now=10.0)
        assert caught.value.reason == "rate_limited"
        assert caught.value.retry_after == pytest.approx(54.0)
        # Unknown names are throttled the same way (no hint that ada exists).
        for attempt in range(5):
            with pytest.raises(LoginRefused):
                await login(store, passwords, "nobody", "x", limiter=limiter, now=attempt)
        with pytest.raises(LoginThrottled):
            await login(store, passwords, "nobody", "x", limiter=limiter, now=10.0)
        # After the lockout, the right password works and clears the account.
        issued = await login(store, passwords, "ada", "right", limiter=limiter, now=64.0)
        assert issued.claims.sub == "ada"


async def test_old_hashes_are_upgraded_at_login(store: Store) -> None:
    old = Passwords(PasswordHasher.from_parameters(CHEAP))
    new_parameters = dataclasses.replace(CHEAP, time_cost=2)
    new = Passwords(PasswordHasher.from_parameters(new_parameters))
    with trio.fail_after(DEADLINE):
        await ensure_admin(store, "ada", "pw", passwords=old)
        await login(store, new, "ada", "pw")
        stored = await store.get_admin("ada")
        assert stored is not None
        assert extract_parameters(stored.password_hash).time_cost == 2
        # And the new hash still lets ada in.
        assert (await login(store, new, "ada", "pw")).claims.sub == "ada"
