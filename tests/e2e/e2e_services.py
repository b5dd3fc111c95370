"""Real ESSEN service processes for the browser tests and the dashboard benchmark.

Every service is its own process in its own process group, started from the
command line exactly as an operator would (``essen admin``, ``essen bot``,
``bench/servers/fake_graph_server.py``), configured through the environment,
with one temporary ``ESSEN_DATA_DIR`` per system so the generated development
secrets (``dev-secrets.json``) agree between the admin API and the bot.

Readiness is read from each process's output, never guessed: a reader thread
keeps every line (also written to a log file) and wakes whoever waits for a
pattern.  Stopping is SIGTERM to the group, then SIGKILL after a grace period.

Used by ``tests/e2e/conftest.py`` and ``bench/dashboard_memory.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ESSEN = (
    str(VENV_BIN / "essen") if (VENV_BIN / "essen").exists() else shutil.which("essen") or "essen"
)
FAKE_GRAPH = ROOT / "bench" / "servers" / "fake_graph_server.py"
DASHBOARD_DIST = ROOT / "dashboard" / "dist"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

ADMIN_USER = "admin"
ADMIN_PASSWORD = "e2e-admin-password-" + "p" * 16
PAGE_TOKEN = "e2e-page-token-" + "t" * 32
PAGE_ID = "100000000000001"
READY_TIMEOUT_S = 30.0

_ADMIN_READY = re.compile(r"admin-api \S+ listening on (http://\S+)")
_BOT_READY = re.compile(r"facebook-bot \S+ listening on (http://\S+)")
_BOT_UPLINK = re.compile(r"Connected to admin backend")
_GRAPH_READY = re.compile(r"^READY (http://\S+)")


def _loopback(url: str) -> str:
    """``http://0.0.0.0:PORT`` (what a wildcard listener reports) as a loopback URL."""
    return url.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://127.0.0.1:")


class ServiceFailed(RuntimeError):
    """A service exited, or did not say what was awaited in time (the message has its log)."""


class Service:
    """One process in its own group; its output (stdout + stderr) is kept line by line."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._eof = False
        self._reader: threading.Thread | None = None
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Service:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            start_new_session=True,  # its own process group: stopped as a whole
        )
        self._reader = threading.Thread(target=self._read, name=f"{self.name}-output", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        with open(self.log_path, "a", encoding="utf-8") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_for(
        self, pattern: re.Pattern[str], timeout: float = READY_TIMEOUT_S, start: int = 0
    ) -> re.Match[str]:
        """The first line from index ``start`` on that matches; waits for it (no polling)."""
        deadline = time.monotonic() + timeout
        seen = start
        with self._changed:
            while True:
                while seen < len(self.lines):
                    match = pattern.search(self.lines[seen])
                    seen += 1
                    if match:
                        return match
                if self._eof:
                    code = self.proc.wait() if self.proc else None
                    raise ServiceFailed(
                        f"{self.name} exited (code {code}) before printing {pattern.pattern!r}:\n"
                        + self.tail()
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ServiceFailed(
                        f"{self.name} did not print {pattern.pattern!r} within {timeout:.0f} s:\n"
                        + self.tail()
                    )
                self._changed.wait(remaining)

    def mark(self) -> int:
        """The current line count: ``wait_for(..., start=mark)`` looks only at what follows."""
        with self._changed:
            return len(self.lines)

    def tail(self, n: int = 40) -> str:
        with self._changed:
            return "\n".join(self.lines[-n:])

    def stop(self, grace_s: float = 5.0) -> int | None:
        """SIGTERM the group, SIGKILL what is left after ``grace_s``; returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace_s)
        # Whatever is left in the group (the leader may be gone already).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        code = proc.wait(timeout=grace_s)
        if self._reader is not None:
            self._reader.join(timeout=grace_s)
        if proc.stdout is not None:
            proc.stdout.close()
        return code


def _base_env(data_dir: Path, **extra: str | int | float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESSEN_", "FB_"))}
    for name in (
        "PORT",
        "ADMIN_BACKEND_URL",
        "BOT_INSTANCE",
        "DATABASE_URL",
        "REDIS_URL",
        "DASHBOARD_DIR",
        "TOKEN_TTL",
        "JWT_SECRET",
        "BOT_SERVICE_SECRET",
        "CORS_ORIGINS",
        "METRICS_INTERVAL",
    ):
        env.pop(name, None)
    env.update(ESSEN_ENV="development", ESSEN_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def prepare_data_dir(data_dir: Path, log_dir: Path) -> None:
    """Create the admin account (and with it the development secrets) in ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "create-admin.log", "w", encoding="utf-8") as log:
        subprocess.run(
            [ESSEN, "create-admin", ADMIN_USER, "--password-stdin"],
            input=ADMIN_PASSWORD + "\n",
            text=True,
            cwd=ROOT,
            env=_base_env(data_dir),
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=60,
        )


def clone_data_dir(template: Path, data_dir: Path) -> None:
    """A copy of a prepared data folder (same admin account and secrets, fresh store)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in ("dev-secrets.json", "essen.db"):
        shutil.copy2(template / name, data_dir / name)


def sign(body: bytes, app_secret: str) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def text_event(psid: str, mid: str, text: str, timestamp_ms: int) -> dict[str, Any]:
    """One Messenger text message (as ``tests/harness/bot_rig.py`` shapes it)."""
    return {
        "sender": {"id": psid},
        "recipient": {"id": PAGE_ID},
        "timestamp": timestamp_ms,
        "message": {"mid": mid, "text": text},
    }


def webhook_body(*items: dict[str, Any]) -> bytes:
    entry = {"id": PAGE_ID, "time": items[0]["timestamp"] if items else 0, "messaging": list(items)}
    return json.dumps({"object": "page", "entry": [entry]}).encode()


@dataclass
class FakeGraph:
    service: Service
    url: str


def start_fake_graph(log_dir: Path, *args: str, token: str = PAGE_TOKEN) -> FakeGraph:
    """``bench/servers/fake_graph_server.py`` on a free port (``args``: more of its options)."""
    service = Service(
        "fake-graph",
        [sys.executable, str(FAKE_GRAPH), "--port", "0", "--token", token, *args],
        _base_env(log_dir),
        log_dir / "fake-graph.log",
    ).start()
    try:
        url = service.wait_for(_GRAPH_READY).group(1)
    except BaseException:
        service.stop()
        raise
    return FakeGraph(service, url)


@dataclass
class System:
    """One ESSEN deployment: an admin API and its bots, sharing ``data_dir``."""

    data_dir: Path
    log_dir: Path
    graph_url: str
    dashboard_dir: Path = DASHBOARD_DIST
    admin: Service | None = None
    admin_url: str = ""
    admin_port: int = 0
    admin_env: dict[str, str] = field(default_factory=dict)
    bots: dict[str, Service] = field(default_factory=dict)
    bot_urls: dict[str, str] = field(default_factory=dict)
    _starts: int = 0
    _mid: int = 0
    _app_secret: str = ""

    # -- admin API ------------------------------------------------------------------

    def start_admin(self, *, port: int | None = None, **env: str | int | float) -> str:
        """Start ``essen admin`` (same port as before when restarting); returns its URL."""
        if port is None:
            port = self.admin_port
        settings: dict[str, str | int | float] = {
            "PORT": port,
            "DASHBOARD_DIR": str(self.dashboard_dir),
            "TOKEN_TTL": 3600,
            "BOT_STALE_AFTER": 2,
            "BOT_DOWN_AFTER": 5,
            "ADMIN_INSTANCE": "e2e-admin",
        }
        settings.update(env)
        self._starts += 1
        self.admin = Service(
            "admin",
            [ESSEN, "admin"],
            _base_env(self.data_dir, **settings),
            self.log_dir / f"admin-{self._starts}.log",
        ).start()
        try:
            url = _loopback(self.admin.wait_for(_ADMIN_READY).group(1))
        except BaseException:
            self.admin.stop()
            raise
        self.admin_url = url
        self.admin_port = int(url.rsplit(":", 1)[1])
        return url

    def stop_admin(self) -> int | None:
        return self.admin.stop() if self.admin is not None else None

    # -- bots -----------------------------------------------------------------------

    def start_bot(self, instance: str, **env: str | int | float) -> str:
        """Start ``essen bot`` named ``instance``; returns its URL once its uplink is connected."""
        settings: dict[str, str | int | float] = {
            "PORT": 0,
            "BOT_INSTANCE": instance,
            "ADMIN_BACKEND_URL": self.admin_url,
            "FB_GRAPH_URL": self.graph_url,
            "FB_PAGE_ACCESS_TOKEN": PAGE_TOKEN,
            "METRICS_INTERVAL": 1,
        }
        settings.update(env)
        self._starts += 1
        bot = Service(
            f"bot {instance}",
            [ESSEN, "bot"],
            _base_env(self.data_dir, **settings),
            self.log_dir / f"bot-{instance}-{self._starts}.log",
        ).start()
        self.bots[instance] = bot
        try:
            url = _loopback(bot.wait_for(_BOT_READY).group(1))
            bot.wait_for(_BOT_UPLINK)
        except BaseException:
            bot.stop()
            raise
        self.bot_urls[instance] = url
        return url

    def stop_bot(self, instance: str) -> int | None:
        return self.bots[instance].stop()

    def stop(self) -> None:
        for bot in self.bots.values():
            bot.stop()
        self.stop_admin()

    # -- talking to it --------------------------------------------------------------

    @property
    def app_secret(self) -> str:
        """The bot's ``FB_APP_SECRET``: generated in ``dev-secrets.json`` with the data folder."""
        if not self._app_secret:
            secrets = json.loads((self.data_dir / "dev-secrets.json").read_text())
            self._app_secret = str(secrets["fb_app_secret"])
        return self._app_secret

    def next_mid(self) -> str:
        self._mid += 1
        return f"m_e2e_{os.getpid()}_{self._mid}"

    def send_text(
        self,
        instance: str,
        text: str,
        psid: str = "2400000000000001",
        client: httpx.Client | None = None,
    ) -> float:
        """POST one signed text message to the bot; returns the wall time (ms) the 200 came back."""
        body = webhook_body(text_event(psid, self.next_mid(), text, int(time.time() * 1000)))
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign(body, self.app_secret),
        }
        url = f"{self.bot_urls[instance]}/webhook"
        if client is None:
            response = httpx.post(url, content=body, headers=headers, timeout=10)
        else:
            response = client.post(url, content=body, headers=headers, timeout=10)
        returned = time.time() * 1000
        if response.status_code != 200:
            raise AssertionError(f"webhook POST answered {response.status_code}: {response.text}")
        return returned

    def api_token(self) -> str:
        response = httpx.post(
            f"{self.admin_url}/api/auth/login",
            json={"username": ADMIN_USER, "password": ADMIN_PASSWORD},
            timeout=10,
        )
        response.raise_for_status()
        return str(response.json()["token"])

    def api(self, path: str, token: str | None = None) -> Any:
        token = token or self.api_token()
        response = httpx.get(
            f"{self.admin_url}/api/{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        response.raise_for_status()
        return response.json()
