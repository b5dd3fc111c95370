"""Admin password hashing with argon2id, and verification that does not reveal who exists.

Parameters: RFC 9106's second recommendation ("low memory": t=3, m=64 MiB,
p=4), argon2-cffi's default, about a quarter second per hash on a 2-core
machine: expensive for someone guessing offline, affordable for a login
that is rate-limited anyway.  Hashes are PHC strings that carry their own
parameters, so raising them later only makes :func:`verify_password` report
``needs_rehash`` for the old ones, and the login path rehashes on success.

Timing: :meth:`Passwords.verify` with no stored hash (unknown user) verifies
against a dummy hash made with the same parameters, so it costs what a wrong
password for a real user costs.  The work is CPU-bound and blocking: callers
on Trio run it in a worker thread (``essen.auth.users`` does).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = (
    "DEFAULT_PASSWORDS",
    "MAX_PASSWORD_LENGTH",
    "Passwords",
    "Verification",
    "hash_password",
    "verify_password",
)

log = logging.getLogger("essen.auth")

#: Longer passwords are refused: they would only make each verify slower.
MAX_PASSWORD_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of checking a password."""

    ok: bool
    #: The password was right but its hash uses old parameters: store a new one.
    needs_rehash: bool = False


class Passwords:
    """A password hasher and its dummy hash (tests pass a cheap hasher)."""

    __slots__ = ("_dummy", "hasher")

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY)
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        """The PHC string for ``password`` (a fresh random salt each time).

        Raises:
            ValueError: empty, or longer than ``MAX_PASSWORD_LENGTH``.
        """
        if not password or len(password) > MAX_PASSWORD_LENGTH:
            raise ValueError(f"a password must be 1..{MAX_PASSWORD_LENGTH} characters")
        return self.hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> Verification:
        """Whether ``password`` matches ``stored_hash``, at the same cost either way.

        ``stored_hash`` None means "no such user": the password is checked
        against the dummy hash and the answer is always no.  A stored hash
        that cannot be parsed (a damaged row) is also no, after the same work.
        """
        # The dummy is made at the first verification of either kind, so
        # whichever comes first pays for it, known user or not.
        self.warm_up()
        if stored_hash is None or not 0 < len(password) <= MAX_PASSWORD_LENGTH:
            self._burn(password[:MAX_PASSWORD_LENGTH])
            return Verification(ok=False)
        try:
            self.hasher.verify(stored_hash, password)
        except VerificationError:
            return Verification(ok=False)
        except InvalidHashError:
            log.error("an admin's stored password hash is not a valid argon2 hash")
            self._burn(password)
            return Verification(ok=False)
        return Verification(ok=True, needs_rehash=self.hasher.check_needs_rehash(stored_hash))

    def warm_up(self) -> str:
        """Make the dummy hash now (blocking) instead of at the first login.

        Made once per hasher, from a secret nobody knows, with the same
        parameters as real hashes so that checking it costs the same.
        """
        if self._dummy is None:
            self._dummy = self.hasher.hash(secrets.token_urlsafe(32))
        return self._dummy

    def _burn(self, password: str) -> None:
        """Spend the time a real verification would."""
        with contextlib.suppress(VerificationError):
            self.hasher.verify(self.warm_up(), password)


DEFAULT_PASSWORDS = Passwords()


def hash_password(password: str, *, passwords: Passwords = DEFAULT_PASSWORDS) -> str:
    """Hash a new admin password (blocking, about 0.25 s with the default parameters)."""
    return passwords.hash(password)


def verify_password(
    stored_hash: str | None, password: str, *, passwords: Passwords = DEFAULT_PASSWORDS
) -> Verification:
    """Check ``password`` against ``stored_hash`` (None for an unknown user); blocking."""
    return passwords.verify(stored_hash, password)
