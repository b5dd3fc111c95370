"""A private ``redis-server`` for the tests that stop and restart Redis.

Stopping the machine's own Redis would pull it from under everything else
running here, so an outage is staged on a server of the test's own, on a
free loopback port that stays the same across restarts (the admins keep
their ``REDIS_URL``).  Shared by ``test_cluster_redis.py`` (admins in
process) and ``test_multi_instance.py`` (admins as processes).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ("RedisProcess",)


class RedisProcess:
    """A private redis-server on a fixed free port that the test can stop and restart."""

    def __init__(self, directory: Path) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail("redis-server is not installed (Debian's redis-server package)")
        self.executable = executable
        self.directory = directory
        with socket.socket() as spare:
            spare.bind(("127.0.0.1", 0))
            self.port = spare.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:  # ends when the process does
            if b"Ready to accept connections" in line:
                return
        raise AssertionError(f"redis-server exited with {self.process.wait()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None
