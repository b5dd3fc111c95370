"""What a lost Redis connection looks like through coredis, for its two users
(the admin's cluster bus and the bot's fleet dedupe)."""

from __future__ import annotations

from typing import Final

import anyio
from coredis.exceptions import RedisError

from essen.errors import first_leaf

__all__ = ("LOST", "describe")

#: coredis' own errors, the socket's, and its AnyIO streams' when the
#: connection closes under them (also in its clean-up after a cancellation).
LOST: Final = (
    RedisError,
    OSError,
    TimeoutError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
)


def describe(group: BaseExceptionGroup[BaseException], limit: int = 300) -> str:
    """The cause, for a health reason or a log line: coredis nests its error
    several task groups deep, and "ExceptionGroup" says nothing."""
    first = first_leaf(group)
    return f"{first.__class__.__name__}: {first}"[:limit]
