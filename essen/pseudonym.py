"""Pseudonymous user ids: what the dashboard, the metrics and the logs call a user.

A page-scoped id (PSID) identifies a Facebook user to the page; it must not
leave the bot.  Everything that needs to tell users apart (unique-user
counts, the ``user-{id}`` conversation rooms, log lines) uses
:func:`pseudonymize` instead: a keyed hash, so the same user gets the same
short id in every process that shares the key, and nobody without the key can
go back from an id to a PSID (a plain hash would not do: PSIDs are ~16-digit
numbers, few enough to try them all).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final

__all__ = ("PSEUDONYM_LENGTH", "PSEUDONYM_PREFIX", "pseudonymize")

PSEUDONYM_PREFIX: Final = "u_"
#: Characters of base32 after the prefix: 50 bits, so a collision among a
#: million users has a chance of about 1 in 2000 (and only merges two users'
#: counts; nothing is ever sent to a pseudonym).
PSEUDONYM_LENGTH: Final = 10


def pseudonymize(psid: str, key: bytes) -> str:
    """The stable pseudonymous id of ``psid``: ``u_`` + 10 lowercase base32 characters.

    Args:
        psid: the page-scoped id (or any user reference Messenger sends).
        key: the secret of the deployment (``PSEUDONYM_KEY``); changing it
            gives every user a new id.

    Returns:
        ``u_`` followed by the first 10 base32 characters of
        HMAC-SHA256(key, psid), e.g. ``u_k3d9q2mzxa``.

    Raises:
        ValueError: ``key`` is empty (an unkeyed hash could be reversed).
    """
    if not key:
        raise ValueError("the pseudonym key must not be empty")
    digest = hmac.new(key, psid.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    encoded = base64.b32encode(digest).decode("ascii")
    return PSEUDONYM_PREFIX + encoded[:PSEUDONYM_LENGTH].lower()
