"""One connection's failure as one exception, however many of its tasks saw it."""

from __future__ import annotations

from typing import TypeVar

import trio

__all__ = ("collapse",)

E = TypeVar("E", bound=BaseException)


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def collapse(group: BaseExceptionGroup[BaseException], *types: type[E]) -> E | None:
    """The first leaf of ``types`` if everything else in ``group`` is a cancellation.

    When a connection breaks, several of its tasks fail with the same cause,
    and a cancellation arriving at the same moment (``aclose()``) adds
    ``Cancelled``s to the group.  Returning the cause alone is safe then: the
    cancelled scope raises ``Cancelled`` again at the next checkpoint.  Returns
    None when the group holds anything else, which the caller must re-raise.
    """
    leaves = _leaves(group)
    wanted = [leaf for leaf in leaves if isinstance(leaf, types)]
    if not wanted:
        return None
    if any(not isinstance(leaf, (*types, trio.Cancelled)) for leaf in leaves):
        return None
    return wanted[0]
