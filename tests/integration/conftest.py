"""Fixtures shared by the integration tests."""

from __future__ import annotations

import os
import socket

import pytest


@pytest.fixture
def machine_redis() -> str:
    """The machine's Redis (127.0.0.1:6379): a missing one fails under CI=true."""
    with socket.socket() as probe:
        probe.settimeout(1)
        up = probe.connect_ex(("127.0.0.1", 6379)) == 0
    if not up:
        if os.environ.get("CI") == "true":
            pytest.fail("Redis is not running on 127.0.0.1:6379 (.ci/run should start it)")
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    return "redis://127.0.0.1:6379/0"
