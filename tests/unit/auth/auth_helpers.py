"""Shared pieces of the auth tests: a cheap hasher that records its work."""

from __future__ import annotations

from argon2 import Parameters, PasswordHasher, extract_parameters, profiles

#: Cheap enough for many tests, still real argon2id.
CHEAP = profiles.CHEAPEST
SECRET = "test-secret-" + "k" * 60  # long enough for HS512 too


class CountingHasher(PasswordHasher):
    """Records the parameters of every hash it verifies against."""

    verified: list[Parameters]

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verified.append(extract_parameters(hash if isinstance(hash, str) else hash.decode()))
        return super().verify(hash, password)


def counting_hasher(parameters: Parameters = CHEAP) -> CountingHasher:
    hasher = CountingHasher.from_parameters(parameters)
    assert isinstance(hasher, CountingHasher)
    hasher.verified = []
    return hasher
