"""Run a peer (Node or Python scenario script) as a subprocess that talks in JSON lines.

The peer prints one JSON object per line on stdout.  A line with ``"step"``
says where an interactive scenario has got to; a line with ``"result"`` ends a
scenario (``"ok"``, or ``"fail"`` with ``"error"``).  Commands go to its stdin,
one per line.  Nothing here sleeps: every read waits for a line, and callers
bound each wait with ``trio.fail_after``.
"""

from __future__ import annotations

import json
import subprocess
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from pathlib import Path


class PeerFailed(AssertionError):
    pass


class Peer:
    def __init__(self, process: trio.Process, name: str) -> None:
        self.process = process
        self.name = name
        self.lines: list[dict[str, Any]] = []  # every JSON line, in order
        self.noise: list[str] = []  # stdout lines that were not JSON
        self.stderr = bytearray()
        self._buffer = bytearray()
        self._eof = False

    def transcript(self) -> str:
        out = [json.dumps(line) for line in self.lines[-40:]]
        if self.noise:
            out.append("stdout noise: " + " | ".join(self.noise[-10:]))
        err = self.stderr.decode(errors="replace").strip()
        if err:
            out.append("stderr:\n" + err[-3000:])
        return "\n".join(out)

    async def _read_line(self) -> bytes | None:
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            if self._eof:
                return None
            chunk = await self.process.stdout.receive_some(65536)
            if not chunk:
                self._eof = True
                if self._buffer:
                    rest = bytes(self._buffer)
                    self._buffer.clear()
                    return rest
                return None
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer[:] = rest
        return line

    async def next(self) -> dict[str, Any] | None:
        """The next JSON line, or None at end of output."""
        while (raw := await self._read_line()) is not None:
            text = raw.decode(errors="replace").strip()
            if not text:
                continue
            try:
                obj = json.loads(text)
            except ValueError:
                self.noise.append(text)
                continue
            if isinstance(obj, dict):
                self.lines.append(obj)
                return obj
            self.noise.append(text)
        return None

    async def expect(self, step: str) -> dict[str, Any]:
        """Read until the line ``{"step": step}``; a failed scenario or EOF raises."""
        while (obj := await self.next()) is not None:
            if obj.get("step") == step:
                return obj
            if obj.get("result") == "fail":
                raise PeerFailed(
                    f"{self.name}: scenario {obj.get('scenario')} failed while the test "
                    f"waited for {step!r}: {obj.get('error')}\n{self.transcript()}"
                )
        raise PeerFailed(
            f"{self.name} ended while the test waited for {step!r}\n{self.transcript()}"
        )

    async def send(self, command: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(command.encode() + b"\n")

    async def finish(self) -> dict[str, dict[str, Any]]:
        """Read to EOF and wait for exit; returns the ``result`` line of each scenario."""
        while await self.next() is not None:
            pass
        await self.process.wait()
        return {
            line["scenario"]: line for line in self.lines if "result" in line and "scenario" in line
        }

    def result_of(self, scenario: str) -> dict[str, Any]:
        for line in self.lines:
            if line.get("scenario") == scenario and "result" in line:
                return line
        raise PeerFailed(f"{self.name}: no result for scenario {scenario}\n{self.transcript()}")

    def steps(self, scenario: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("scenario") == scenario and "step" in line]


@asynccontextmanager
async def run_peer(
    command: Sequence[str], *, cwd: Path, name: str, env: dict[str, str] | None = None
) -> AsyncIterator[Peer]:
    """Start ``command``; on exit from the block the process is killed if still running."""
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                list(command),
                cwd=cwd,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                check=False,
            )
        )
        peer = Peer(process, name)

        async def drain_stderr() -> None:
            assert process.stderr is not None
            while chunk := await process.stderr.receive_some(65536):
                peer.stderr += chunk

        nursery.start_soon(drain_stderr)
        try:
            yield peer
        finally:
            nursery.cancel_scope.cancel()


def check_results(peer: Peer, expected: Sequence[str]) -> None:
    """Every scenario in ``expected`` reported ``ok`` and the peer exited 0."""
    failures = []
    for scenario in expected:
        try:
            result = peer.result_of(scenario)
        except PeerFailed as exc:
            failures.append(str(exc))
            continue
        if result["result"] != "ok":
            failures.append(f"{scenario}: {result.get('error')}")
    if failures or peer.process.returncode != 0:
        raise PeerFailed(
            f"{peer.name} exit code {peer.process.returncode}; failures:\n"
            + "\n".join(failures)
            + "\n"
            + peer.transcript()
        )
