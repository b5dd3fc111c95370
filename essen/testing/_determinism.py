"""Make Trio's scheduler reproducible.

Trio deliberately shuffles the order in which tasks that became runnable at
the same moment are run (a coin flip per batch), to shake out code that
depends on an order nobody promised.  For a harness that must produce the same
trace on every run, that coin has to be seeded.  Trio supports this for
Hypothesis (``trio._core._run._hypothesis_plugin_setup``: sort each batch by
task creation, then use a registered ``random.Random``); we use the same two
switches.  The shuffle still happens, so races are still exercised: a
different seed gives a different, equally valid, interleaving.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import trio._core._run as _trio_run

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ("deterministic_scheduling",)


@contextlib.contextmanager
def deterministic_scheduling(seed: int) -> Iterator[None]:
    """Within the block, Trio runs same-instant tasks in an order fixed by ``seed``."""
    previous_flag = _trio_run._ALLOW_DETERMINISTIC_SCHEDULING
    previous_state = _trio_run._r.getstate()
    _trio_run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    _trio_run._r.seed(seed)
    try:
        yield
    finally:
        _trio_run._ALLOW_DETERMINISTIC_SCHEDULING = previous_flag  # type: ignore[misc]
        _trio_run._r.setstate(previous_state)
