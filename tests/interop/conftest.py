from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ._app import SERVINGS

NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="session")
def node() -> str:
    """The ``node`` executable, with the interop peers installed next to the scenarios."""
    executable = shutil.which("node")
    if executable is None:
        pytest.fail("node is not on PATH (the interop tests need Node >= 20)")
    if not (NODE_DIR / "node_modules" / "socket.io-client").is_dir():
        pytest.fail(f"socket.io-client is not installed: run `npm ci` in {NODE_DIR}")
    return executable


@pytest.fixture(params=SERVINGS)
def how(request: pytest.FixtureRequest) -> str:
    """How the server under test is served: production fast path, or plain Hypercorn ASGI."""
    serving: str = request.param
    return serving
