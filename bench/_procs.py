"""Child processes of the benchmark drivers: started in their own process group,
always stopped (SIGTERM, then SIGKILL of the whole group), also on Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from typing import Any

__all__ = ("_kill_all", "_kill_group", "_live", "_on_signal", "_spawn")

_live: list[subprocess.Popen[Any]] = []
_live_lock = threading.Lock()


def _spawn(cmd: list[str], **kw: Any) -> subprocess.Popen[Any]:
    # own session/process group, so that the whole tree can be signalled
    proc = subprocess.Popen(cmd, start_new_session=True, **kw)
    with _live_lock:
        _live.append(proc)
    return proc


def _kill_group(proc: subprocess.Popen[Any], grace_s: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after grace_s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    with _live_lock:
        if proc in _live:
            _live.remove(proc)


def _kill_all() -> None:
    with _live_lock:
        procs = list(_live)
    for p in procs:
        _kill_group(p, grace_s=2.0)


def _on_signal(signum: int, _frame: Any) -> None:
    _kill_all()
    sys.stderr.write(f"\ninterrupted (signal {signum}); child processes stopped\n")
    os._exit(128 + signum)
