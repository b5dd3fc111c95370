"""``scripts/test_production_socket.py`` against a running ESSEN, as an operator runs it.

``essen dev`` runs as a subprocess (temporary data folder, ports chosen by the
system, no simulated traffic); the script runs as a subprocess against it:
directly, and through a path-stripping reverse proxy that forwards only
``/api/...`` and strips the prefix, like App Platform's ingress does, for every
request on a connection and for the WebSocket upgrade.  Failures must say why
and exit non-zero: a wrong secret (the admin's connect error), an unreachable
backend (the connection error), a refused login, a missing secret.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from essen.config import AdminSettings, BotSettings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "test_production_socket.py"
SETTINGS_VARIABLES = {name.upper() for name in BotSettings.model_fields} | {
    name.upper() for name in AdminSettings.model_fields
}
SCRIPT_VARIABLES = {"BOT_SERVICE_SECRET", "ADMIN_USERNAME", "ADMIN_PASSWORD"}
START_LIMIT = 90.0
RUN_LIMIT = 60.0


def essen_command(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("essen")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "essen.cli", *args]


def clean_env(**values: str) -> dict[str, str]:
    strip = SETTINGS_VARIABLES | SCRIPT_VARIABLES
    env = {k: v for k, v in os.environ.items() if k.upper() not in strip}
    env.update(values)
    return env


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class EssenDev:
    admin_url: str
    username: str
    password: str
    secret: str
    log: Path


@pytest.fixture(scope="module")
def essen_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EssenDev]:
    """``essen dev --no-simulator`` on ports the system picks, until the module is done."""
    yield from _essen_dev(tmp_path_factory.mktemp("essen-dev"))


def _essen_dev(root: Path, **env: str) -> Iterator[EssenDev]:
    data = root / "data"
    log = root / "essen-dev.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            essen_command("dev", "--bot-port", "0", "--admin-port", "0", "--no-simulator"),
            cwd=root,
            env=clean_env(ESSEN_DATA_DIR=str(data), **env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        printed = ""
        while "Press Ctrl-C to stop." not in printed:
            try:
                line = lines.get(timeout=START_LIMIT)
            except queue.Empty:
                pytest.fail(f"essen dev did not start within {START_LIMIT} s:\n{printed}")
            if line is None:
                pytest.fail(f"essen dev exited ({process.wait()}):\n{printed}{log.read_text()}")
            printed += line
        admin = re.search(r"admin API\s+(http://\S+)/api/", printed)
        login = re.search(r"admin login\s+(\S+) / (\S+)", printed)
        assert admin is not None, printed
        assert login is not None, printed
        secret = json.loads((data / "dev-secrets.json").read_text())["bot_service_secret"]
        yield EssenDev(admin.group(1), login.group(1), login.group(2), secret, log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


@dataclass
class Run:
    code: int
    output: str

    @property
    def lines(self) -> list[str]:
        return self.output.splitlines()

    def index(self, start: str) -> int:
        """The position of the first line starting with ``start``."""
        for i, line in enumerate(self.lines):
            if line.startswith(start):
                return i
        raise AssertionError(f"no line starts with {start!r}:\n{self.output}")


async def run_script(base_url: str, *args: str, **env: str) -> Run:
    with trio.fail_after(RUN_LIMIT):
        result = await trio.run_process(
            [sys.executable, str(SCRIPT), base_url, "--timeout", "15", *args],
            env=clean_env(**env),
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    output = result.stdout.decode() + result.stderr.decode()
    return Run(result.returncode, output)


FULL_RUN = [
    "✅ Connected to admin backend via Socket.io",
    "✅ Upgraded to WebSocket: transport websocket",
    "📊 Sent metrics:update for smoke-test: acknowledged {'ok': True}",
    "✅ Logged in as admin",
    "✅ Dashboard connected",
    "✅ Subscribed to monitoring: snapshot with",
    "💬 Sent message:processed (1 test event",
    "💬 Received message:processed live on the dashboard",
    "✅ All checks passed",
]


def assert_full_run(run: Run) -> None:
    assert run.code == 0, run.output
    positions = [run.index(line) for line in FULL_RUN]
    assert positions == sorted(positions), run.output
    assert "❌" not in run.output
    assert "⚠️" not in run.output


async def test_the_script_passes_against_essen_dev(essen_dev: EssenDev) -> None:
    run = await run_script(
        essen_dev.admin_url,
        BOT_SERVICE_SECRET=essen_dev.secret,
        ADMIN_USERNAME=essen_dev.username,
        ADMIN_PASSWORD=essen_dev.password,
    )
    assert_full_run(run)
    # The admin API logged what the guide tells operators to look for.
    assert "📊 Received metrics:update from bot smoke-test" in essen_dev.log.read_text()


# -- App Platform's ingress, as a TCP proxy that strips /api ---------------------------


@dataclass
class StripProxy:
    """Forwards ``/api/...`` to the upstream with ``/api`` stripped; anything else is 404.

    Every request head on a connection is rewritten (keep-alive included); a
    request asking for a WebSocket upgrade switches the connection to plain
    forwarding.  Responses pass through untouched.
    """

    upstream: tuple[str, int]
    prefix: bytes = b"/api"
    #: (method, path, query) of every request forwarded, as the upstream saw it.
    forwarded: list[tuple[str, str, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    upgrades: int = 0

    async def serve(self, *, task_status: trio.TaskStatus[int]) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            try:
                upstream = await trio.open_tcp_stream(*self.upstream)
            except OSError:
                return
            async with upstream, trio.open_nursery() as nursery:

                async def responses() -> None:
                    await _pipe(upstream, client)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(responses)
                await self._requests(client, upstream)
                nursery.cancel_scope.cancel()

    async def _requests(self, client: trio.SocketStream, upstream: trio.SocketStream) -> None:
        buffer = bytearray()
        while True:
            while b"\r\n\r\n" not in buffer:
                data = await _receive(client)
                if not data:
                    return
                buffer += data
            end = buffer.index(b"\r\n\r\n") + 4
            head = bytes(buffer[:end])
            del buffer[:end]
            request_line, _, rest = head.partition(b"\r\n")
            method, target, version = request_line.split(b" ", 2)
            path, question, query = target.partition(b"?")
            if not (path == self.prefix or path.startswith(self.prefix + b"/")):
                self.refused.append(path.decode())
                await client.send_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                )
                return
            stripped = path[len(self.prefix) :] or b"/"
            self.forwarded.append((method.decode(), stripped.decode(), query.decode()))
            await upstream.send_all(
                b" ".join((method, stripped + question + query, version)) + b"\r\n" + rest
            )
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(b":") for line in rest.split(b"\r\n"))
                if name
            }
            if headers.get(b"upgrade", b"").lower() == b"websocket":
                self.upgrades += 1
                if buffer:
                    await upstream.send_all(bytes(buffer))
                await _pipe(client, upstream)
                return
            assert b"chunked" not in headers.get(b"transfer-encoding", b""), "not supported"
            remaining = int(headers.get(b"content-length", b"0"))
            while remaining:
                if not buffer:
                    data = await _receive(client)
                    if not data:
                        return
                    buffer += data
                chunk = bytes(buffer[:remaining])
                del buffer[: len(chunk)]
                remaining -= len(chunk)
                await upstream.send_all(chunk)


async def _receive(stream: trio.SocketStream) -> bytes:
    try:
        return await stream.receive_some(65536)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return b""


async def _pipe(source: trio.SocketStream, sink: trio.SocketStream) -> None:
    while data := await _receive(source):
        try:
            await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return


async def test_the_script_passes_through_an_ingress_that_strips_api(essen_dev: EssenDev) -> None:
    host, _, port = essen_dev.admin_url.removeprefix("http://").rpartition(":")
    proxy = StripProxy((host, int(port)))
    async with trio.open_nursery() as nursery:
        proxy_port = await nursery.start(proxy.serve)
        run = await run_script(
            f"http://127.0.0.1:{proxy_port}",
            BOT_SERVICE_SECRET=essen_dev.secret,
            ADMIN_USERNAME=essen_dev.username,
            ADMIN_PASSWORD=essen_dev.password,
        )
        nursery.cancel_scope.cancel()
    assert_full_run(run)
    paths = {path for _, path, _ in proxy.forwarded}
    assert paths == {"/socket.io/", "/auth/login"}  # stripped, every one
    assert proxy.refused == []
    # Polling first: the first request is the bot's Engine.IO handshake over polling ...
    method, path, query = proxy.forwarded[0]
    assert (method, path) == ("GET", "/socket.io/")
    assert "transport=polling" in query
    assert "sid=" not in query
    # ... then the bot and the dashboard both upgraded through the proxy.
    upgrades = [q for _, p, q in proxy.forwarded if "transport=websocket" in q]
    assert len(upgrades) == proxy.upgrades >= 2
    assert all("sid=" in q for q in upgrades)  # upgrades of polling sessions


async def test_without_admin_credentials_only_the_bot_checks_run(essen_dev: EssenDev) -> None:
    run = await run_script(essen_dev.admin_url, BOT_SERVICE_SECRET=essen_dev.secret)
    assert run.code == 0, run.output
    assert "⚠️ ADMIN_USERNAME / ADMIN_PASSWORD not set" in run.output
    assert run.index("💬 Sent message:processed") < run.index("✅ All checks passed")
    assert "Logged in" not in run.output


async def test_a_wrong_secret_fails_with_the_admins_reason(essen_dev: EssenDev) -> None:
    run = await run_script(essen_dev.admin_url, BOT_SERVICE_SECRET="not-the-secret-" + "x" * 32)
    assert run.code == 4, run.output
    assert "⚠️ Connection error: refused: invalid service secret" in run.output
    failure = run.lines[run.index("❌")]
    assert "refused the bot: invalid service secret (bad_secret)" in failure
    assert "BOT_SERVICE_SECRET" in failure
    assert "📊" not in run.output


async def test_an_unreachable_backend_fails_with_the_connection_error() -> None:
    port = closed_port()
    run = await run_script(f"http://127.0.0.1:{port}", BOT_SERVICE_SECRET="s" * 40)
    assert run.code == 3, run.output
    assert "⚠️ Connection error:" in run.output
    failure = run.lines[run.index("❌")]
    assert f"Cannot connect to http://127.0.0.1:{port}/api/socket.io/" in failure
    assert "ConnectError" in failure


async def test_an_address_without_the_admin_api_fails_with_404(essen_dev: EssenDev) -> None:
    """A BASE_URL whose /api does not lead to the admin (an ingress rule missing)."""
    run = await run_script(
        essen_dev.admin_url, "--path", "/elsewhere/socket.io/", BOT_SERVICE_SECRET=essen_dev.secret
    )
    assert run.code == 3, run.output
    assert "HTTP 404" in run.lines[run.index("❌")]


async def test_a_missing_secret_is_a_usage_error() -> None:
    run = await run_script("http://127.0.0.1:9")
    assert run.code == 2
    assert "❌ BOT_SERVICE_SECRET is not set" in run.output


async def test_a_refused_login_fails_after_the_bot_checks(essen_dev: EssenDev) -> None:
    # Last in this module: one failed login, far below the lockout threshold.
    run = await run_script(
        essen_dev.admin_url,
        BOT_SERVICE_SECRET=essen_dev.secret,
        ADMIN_USERNAME=essen_dev.username,
        ADMIN_PASSWORD="wrong-password",
    )
    assert run.code == 4, run.output
    assert run.index("📊 Sent metrics:update") < run.index("❌")
    assert "❌ Login refused for 'admin': invalid_credentials" in run.output


# -- a multi-instance deployment: WebSocket only ----------------------------------------


async def test_websocket_only_connects_without_polling(essen_dev: EssenDev) -> None:
    run = await run_script(
        essen_dev.admin_url,
        "--websocket-only",
        BOT_SERVICE_SECRET=essen_dev.secret,
        ADMIN_USERNAME=essen_dev.username,
        ADMIN_PASSWORD=essen_dev.password,
    )
    assert run.code == 0, run.output
    assert "(transport websocket, instance smoke-test)" in run.lines[run.index("✅ Connected")]
    assert "Upgraded" not in run.output
    assert "✅ All checks passed" in run.output


async def test_polling_against_a_websocket_only_admin_says_what_to_do(tmp_path: Path) -> None:
    from functools import partial

    from essen.admin.service import run_admin
    from essen.clock import SystemWallClock
    from essen.testing import MemoryStore
    from tests.harness.admin_rig import admin_settings

    settings = admin_settings(tmp_path, socketio_transports="websocket")
    with trio.fail_after(RUN_LIMIT):
        async with trio.open_nursery() as nursery:
            admin = await nursery.start(
                partial(run_admin, settings, host="127.0.0.1", store=MemoryStore(SystemWallClock()))
            )
            run = await run_script(admin.urls[0], BOT_SERVICE_SECRET="s" * 40)
            nursery.cancel_scope.cancel()
    assert run.code == 3, run.output
    failure = run.lines[run.index("❌")]
    assert "WebSocket only" in failure
    assert "--websocket-only" in failure


async def test_essen_dev_with_redis_is_websocket_only_end_to_end(
    tmp_path: Path, machine_redis: str
) -> None:
    """With REDIS_URL in the environment the dev admin accepts WebSocket only;
    the dev bot must follow it (it would otherwise retry polling forever)."""
    dev = _essen_dev(tmp_path, REDIS_URL=machine_redis, ESSEN_CLUSTER=f"dev-{os.getpid()}")
    running = next(dev)
    try:
        refused = await run_script(running.admin_url, BOT_SERVICE_SECRET=running.secret)
        ok = await run_script(
            running.admin_url, "--websocket-only", BOT_SERVICE_SECRET=running.secret
        )
    finally:
        dev.close()
    assert refused.code == 3, refused.output
    assert ok.code == 0, ok.output
    log = running.log.read_text()
    assert "✅ Connected to admin backend via Socket.io (websocket" in log
    assert "Transport unknown" not in log
