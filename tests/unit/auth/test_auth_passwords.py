"""argon2id password hashes: round trip, rehash detection, and equal work for unknown users."""

from __future__ import annotations

import dataclasses

import pytest
from argon2 import PasswordHasher, extract_parameters, profiles

from essen.auth import (
    DEFAULT_PASSWORDS,
    MAX_PASSWORD_LENGTH,
    Passwords,
    Verification,
    hash_password,
    verify_password,
)
from tests.unit.auth.auth_helpers import CHEAP, counting_hasher


def test_default_parameters_are_rfc_9106_low_memory() -> None:
    hasher = DEFAULT_PASSWORDS.hasher
    expected = profiles.RFC_9106_LOW_MEMORY
    assert (hasher.time_cost, hasher.memory_cost, hasher.parallelism) == (
        expected.time_cost,
        expected.memory_cost,
        expected.parallelism,
    )
    assert expected.memory_cost == 64 * 1024  # KiB


def test_default_hasher_round_trip() -> None:
    """One real, full-cost hash (about a quarter second)."""
    stored = hash_password("correct horse battery staple")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert verify_password(stored, "correct horse battery staple") == Verification(ok=True)
    assert verify_password(stored, "Correct horse battery staple") == Verification(ok=False)


def test_hash_and_verify() -> None:
    passwords = Passwords(PasswordHasher.from_parameters(CHEAP))
    first = passwords.hash("s3cret!")
    second = passwords.hash("s3cret!")
    assert first != second  # salted
    assert "s3cret" not in first
    assert passwords.verify(first, "s3cret!") == Verification(ok=True, needs_rehash=False)
    assert passwords.verify(first, "s3cret") == Verification(ok=False)
    assert passwords.verify(first, "") == Verification(ok=False)


@pytest.mark.parametrize("password", ["", "x" * (MAX_PASSWORD_LENGTH + 1)])
def test_unusable_passwords_are_not_hashed(password: str) -> None:
    with pytest.raises(ValueError, match="characters"):
        Passwords(PasswordHasher.from_parameters(CHEAP)).hash(password)


def test_old_parameters_ask_for_a_rehash() -> None:
    old = Passwords(PasswordHasher.from_parameters(CHEAP))
    stronger = dataclasses.replace(CHEAP, time_cost=2)
    new = Passwords(PasswordHasher.from_parameters(stronger))
    stored = old.hash("pw")
    assert new.verify(stored, "pw") == Verification(ok=True, needs_rehash=True)
    assert new.verify(stored, "wrong") == Verification(ok=False, needs_rehash=False)
    assert new.verify(new.hash("pw"), "pw") == Verification(ok=True, needs_rehash=False)


def test_unknown_user_costs_one_verification_with_the_same_parameters() -> None:
    hasher = counting_hasher()
    passwords = Passwords(hasher)
    real = passwords.hash("pw")
    hasher.verified.clear()

    assert passwords.verify(real, "wrong") == Verification(ok=False)
    assert passwords.verify(None, "wrong") == Verification(ok=False)
    assert passwords.verify(None, "x" * 10_000) == Verification(ok=False)
    assert passwords.verify("not-a-phc-string", "pw") == Verification(ok=False)
    # Each call verified exactly once, always against argon2id with the
    # parameters of real hashes (the dummy was made in the first call).
    assert hasher.verified == [extract_parameters(real)] * 4


def test_the_dummy_is_made_once_and_can_be_made_ahead() -> None:
    passwords = Passwords(PasswordHasher.from_parameters(CHEAP))
    dummy = passwords.warm_up()
    assert passwords.warm_up() == dummy
    assert extract_parameters(dummy) == extract_parameters(passwords.hash("x"))
