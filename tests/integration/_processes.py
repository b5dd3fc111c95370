"""Child processes for the multi-process tests, run from Trio and read line by line.

A test must wait for a service on what the service says ("listening on",
"Connected to admin backend"), never on a guessed delay.  :class:`Child` runs
one process in its own process group (so ``kill -9`` of the group is the
death of the whole service), keeps every line of its output (also in a log
file, for the post-mortem), and wakes whoever waits for a pattern the moment
the line arrives.  The reader is a Trio task, so waiting blocks nothing else
of the test (the load balancer and the dashboards run in the same loop).

Stopping is part of the task: when the test's nursery is cancelled the
group gets SIGTERM, then SIGKILL after a short grace, and the process is
reaped, so no child outlives the test, also when it fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from essen.config import AdminSettings, BotSettings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

__all__ = ("ESSEN", "ROOT", "Child", "ChildFailed", "explain_timeouts", "service_env")

ROOT = Path(__file__).resolve().parents[2]
#: The console script of this venv (what an operator runs), else the module.
ESSEN: tuple[str, ...] = (
    (str(Path(sys.executable).with_name("essen")),)
    if Path(sys.executable).with_name("essen").exists()
    else (sys.executable, "-m", "essen.cli")
)
#: Seconds between SIGTERM and SIGKILL when a child is stopped at the end.
STOP_GRACE = 3.0
#: Every variable a service reads: none of the developer's own may leak in.
_SETTINGS = {name.upper() for name in BotSettings.model_fields} | {
    name.upper() for name in AdminSettings.model_fields
}


def service_env(**values: str | int | float) -> dict[str, str]:
    """This process's environment without any ESSEN setting, plus ``values``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name.upper() not in _SETTINGS and not name.startswith(("ESSEN_", "FB_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update({name: str(value) for name, value in values.items()})
    return env


class ChildFailed(AssertionError):
    """A child ended before saying what the test waited for (the message has its output)."""


class Child:
    """One process in its own group; its output (stdout + stderr) kept line by line.

    ``await nursery.start(child.run)`` returns once the process exists;
    :meth:`wait_for` then waits for a line.  ``on_line`` sees every line as
    it arrives (the Node dashboard's JSON reports are parsed that way).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path = ROOT,
        stdin: bool = False,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.cwd = cwd
        self.stdin = stdin
        self.on_line = on_line
        self.lines: list[str] = []
        self.returncode: int | None = None
        self.process: trio.Process | None = None
        self._changed = trio.Event()
        self._ended = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[Child] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the process and read its output until it ends; stop it when cancelled."""
        process = await trio.lowlevel.open_process(
            self.argv,
            stdin=subprocess.PIPE if self.stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        self.process = process
        assert process.stdout is not None
        try:
            task_status.started(self)
            with self.log_path.open("w", encoding="utf-8") as log:
                pending = b""
                async for chunk in process.stdout:
                    *complete, pending = (pending + chunk).split(b"\n")
                    for raw in complete:
                        line = raw.decode("utf-8", "replace")
                        log.write(line + "\n")
                        self._add(line)
                    log.flush()
                if pending:
                    log.write(pending.decode("utf-8", "replace") + "\n")
                    self._add(pending.decode("utf-8", "replace"))
            self.returncode = await process.wait()
        finally:
            with trio.CancelScope(shield=True):
                await self._reap(process)
            self._ended.set()
            self._wake()

    async def _reap(self, process: trio.Process) -> None:
        if process.returncode is None:
            self._signal_group(process.pid, signal.SIGTERM)
            with trio.move_on_after(STOP_GRACE):
                await process.wait()
        self._signal_group(process.pid, signal.SIGKILL)  # and whatever it left in its group
        self.returncode = await process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                await stream.aclose()

    @staticmethod
    def _signal_group(pid: int, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signum)

    def _add(self, line: str) -> None:
        self.lines.append(line)
        if self.on_line is not None:
            self.on_line(line)
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    @property
    def running(self) -> bool:
        return self.process is not None and not self._ended.is_set()

    def kill(self) -> None:
        """``kill -9`` of the whole group: no goodbye to anyone, sockets reset by the kernel."""
        assert self.process is not None
        self._signal_group(self.process.pid, signal.SIGKILL)

    async def wait_ended(self) -> int | None:
        await self._ended.wait()
        return self.returncode

    async def send_line(self, line: str) -> None:
        assert self.process is not None
        assert self.process.stdin is not None
        await self.process.stdin.send_all(line.encode() + b"\n")

    def mark(self) -> int:
        """The current line count: ``wait_for(..., start=mark)`` looks only at what follows."""
        return len(self.lines)

    async def wait_for(self, pattern: str | re.Pattern[str], *, start: int = 0) -> re.Match[str]:
        """The first line from index ``start`` on that matches ``pattern``; waits for it.

        Wrap in ``trio.fail_after``.

        Raises:
            ChildFailed: the process ended without printing such a line.
        """
        compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
        seen = start
        while True:
            while seen < len(self.lines):
                match = compiled.search(self.lines[seen])
                seen += 1
                if match:
                    return match
            if self._ended.is_set():
                raise ChildFailed(
                    f"{self.name} exited ({self.returncode}) before printing "
                    f"{compiled.pattern!r}:\n{self.tail()}"
                )
            await self._changed.wait()

    def tail(self, n: int = 30) -> str:
        return "\n".join(f"  | {line}" for line in self.lines[-n:])


@contextlib.contextmanager
def explain_timeouts(what: str, children: Sequence[Child]) -> Iterator[None]:
    """Turn a ``TooSlowError`` inside into an assertion that shows every child's last lines."""
    try:
        yield
    except trio.TooSlowError:
        tails = "\n".join(f"-- {child.name}:\n{child.tail(15)}" for child in children)
        raise AssertionError(f"timed out: {what}\n{tails}") from None
