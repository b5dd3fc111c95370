"""pytest fixtures for ESSEN's in-process harness (registered as a pytest11 plugin).

::

    async def test_answers(essen_system):
        async with essen_system(seed=1, bots=2, dashboards=1) as s:
            await s.user(1).say("hi")
            await s.advance(1)
            assert s.dashboards[0].messages()

``essen_system`` requests pytest-trio's ``autojump_clock``, so the test runs
under MockClock; ``essen_trace`` writes a system's trace as JSON lines next
to the test's temporary files and returns the path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from .system import System, system

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ("essen_system", "essen_trace")


@pytest.fixture
def essen_system(autojump_clock: Any) -> Callable[..., Any]:
    """The :func:`essen.testing.system` factory, under MockClock."""
    return system


@pytest.fixture
def essen_trace(tmp_path: Path) -> Callable[[System], Path]:
    """Write a system's trace as JSON lines; returns the file's path."""

    def write(s: System) -> Path:
        path = tmp_path / f"essen-trace-seed{s.seed}.jsonl"
        s.trace.write(path)
        return path

    return write
