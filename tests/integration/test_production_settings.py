"""Production settings, as an operator meets them: ``essen bot`` / ``essen admin`` as processes.

With ``ESSEN_ENV=production`` nothing is generated.  A secret that is missing,
a known default or shorter than 32 characters, or a ``CORS_ORIGINS`` entry
that is not ``https://``, stops the service before it listens: exit code 2 and
a log line on stderr naming the variable (never echoing the secret).  With good
values both services start on ``$PORT``, answer their health checks, and stop
cleanly on SIGTERM (what App Platform sends).
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio

from essen.config import (
    AdminSettings,
    BotSettings,
    ConfigError,
    load_admin_settings,
    load_bot_settings,
)

pytestmark = pytest.mark.integration

#: Every variable the settings read; stripped from the inherited environment.
SETTINGS_VARIABLES = {name.upper() for name in BotSettings.model_fields} | {
    name.upper() for name in AdminSettings.model_fields
}
BOT_SECRETS = tuple(name.upper() for name in BotSettings.SECRETS)
ADMIN_SECRETS = tuple(name.upper() for name in AdminSettings.SECRETS)
#: ``essen`` exits with this code on a configuration error (essen/cli.py).
CONFIG_ERROR = 2
#: Generous: the refusals run all at once, and CI machines are shared.
START_LIMIT = 90.0


def essen_command(*args: str) -> list[str]:
    """The installed ``essen`` console script of this interpreter (else ``-m essen.cli``)."""
    script = Path(sys.executable).with_name("essen")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "essen.cli", *args]


def clean_env(tmp_path: Path, values: dict[str, str]) -> dict[str, str]:
    """This process's environment without any ESSEN setting, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS_VARIABLES}
    env["ESSEN_DATA_DIR"] = str(tmp_path / "data")
    env.update(values)
    return env


def good_bot_values() -> dict[str, str]:
    return {"ESSEN_ENV": "production"} | {name: secrets.token_urlsafe(32) for name in BOT_SECRETS}


def good_admin_values() -> dict[str, str]:
    return {"ESSEN_ENV": "production", "CORS_ORIGINS": "https://essen.example"} | {
        name: secrets.token_urlsafe(32) for name in ADMIN_SECRETS
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Refusal:
    """One bad configuration and what the refusal must say."""

    service: str
    values: dict[str, str]
    variable: str
    message: str
    #: Text that must appear (the offending origin) or never appear (a secret).
    shown: str | None = None
    hidden: str | None = None


# (case, value or None for "unset", what the message says)
BAD_SECRETS = [
    ("missing", None, "is required in production"),
    ("empty", "", "is required in production"),
    ("known-default", "bot-service", "is a known default value"),
    ("known-default-any-case", "ChangeMe", "is a known default value"),
    ("short", "x" * 31, "must be at least 32 characters"),
]


def _refusals() -> dict[str, Refusal]:
    cases: dict[str, Refusal] = {}
    for service, names, good in (
        ("bot", BOT_SECRETS, good_bot_values),
        ("admin", ADMIN_SECRETS, good_admin_values),
    ):
        for name in names:
            for case, value, message in BAD_SECRETS:
                values = good()
                if value is None:
                    del values[name]
                else:
                    values[name] = value
                hidden = value if value and len(value) > 12 else None
                cases[f"{service}-{name}-{case}"] = Refusal(
                    service, values, name, message, hidden=hidden
                )
    for case, origins, offender in (
        ("http", "http://essen.example", "http://essen.example"),
        ("wildcard", "*", "*"),
        ("one-of-several", "https://essen.example, http://localhost:5173", "http://localhost:5173"),
    ):
        values = good_admin_values() | {"CORS_ORIGINS": origins}
        cases[f"admin-CORS_ORIGINS-{case}"] = Refusal(
            "admin", values, "CORS_ORIGINS", "must list https:// origins", shown=offender
        )
    return cases


#: Every bad value of every variable: checked in-process (fast).
ALL_REFUSALS = _refusals()
#: As processes (about a second of CPU each): every variable missing, every kind
#: of bad value on the first secret of each service, every bad CORS_ORIGINS.
REFUSALS = {
    case: refusal
    for case, refusal in ALL_REFUSALS.items()
    if case.endswith("-missing")
    or refusal.variable in (BOT_SECRETS[0], ADMIN_SECRETS[0], "CORS_ORIGINS")
}


@pytest.mark.parametrize("case", list(ALL_REFUSALS))
def test_the_settings_refuse_every_bad_production_value(
    case: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    refusal = ALL_REFUSALS[case]
    for key in list(os.environ):
        if key.upper() in SETTINGS_VARIABLES:
            monkeypatch.delenv(key)
    for key, value in (refusal.values | {"ESSEN_DATA_DIR": str(tmp_path)}).items():
        monkeypatch.setenv(key, value)
    load = load_bot_settings if refusal.service == "bot" else load_admin_settings
    with pytest.raises(ConfigError) as refused:
        load()
    message = str(refused.value)
    assert refusal.variable in message
    assert refusal.message in message
    if refusal.hidden is not None:
        assert refusal.hidden not in message
    assert list(tmp_path.iterdir()) == []  # nothing generated in production


@pytest.fixture(scope="module")
def refused_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Every bad configuration started at once (they only import and exit: ~1 s each)."""
    root = tmp_path_factory.mktemp("refused")
    runs: dict[str, subprocess.Popen[str]] = {}
    try:
        for case, refusal in REFUSALS.items():
            # A port nobody listens on: a service that wrongly started would
            # have to be killed by the timeout, which fails its test.
            env = clean_env(root / case, {"PORT": str(free_port()), **refusal.values})
            runs[case] = subprocess.Popen(
                essen_command(refusal.service),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        yield runs
    finally:
        for process in runs.values():
            if process.poll() is None:
                process.kill()
            process.communicate()


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_service_refuses_to_start_with_a_bad_production_setting(
    refused_runs: dict[str, subprocess.Popen[str]], case: str
) -> None:
    refusal = REFUSALS[case]
    process = refused_runs[case]
    _, stderr = process.communicate(timeout=START_LIMIT)
    assert process.returncode == CONFIG_ERROR, (process.returncode, stderr)
    lines = [line for line in stderr.splitlines() if "configuration error" in line]
    assert len(lines) == 1, stderr
    assert refusal.variable in lines[0], lines[0]
    assert refusal.message in lines[0], lines[0]
    assert "listening on" not in stderr
    if refusal.shown is not None:
        assert refusal.shown in lines[0]
    if refusal.hidden is not None:
        assert refusal.hidden not in stderr  # a secret is never logged


def test_every_secret_the_spec_lists_is_checked_in_production() -> None:
    """The parametrized cases above cover exactly the settings' secrets."""
    assert set(BOT_SECRETS) == {
        "BOT_SERVICE_SECRET",
        "FB_APP_SECRET",
        "FB_VERIFY_TOKEN",
        "FB_PAGE_ACCESS_TOKEN",
        "DEBUG_TOKEN",
        "PSEUDONYM_KEY",
    }
    assert set(ADMIN_SECRETS) == {"BOT_SERVICE_SECRET", "JWT_SECRET"}


# -- good values: the services start on $PORT and stop on SIGTERM ---------------------


class Service:
    """A running ``essen`` process whose stderr (the log) is collected as it comes."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.log = ""
        self._grew = trio.Event()
        self._eof = trio.Event()

    async def collect(self) -> None:
        assert self.process.stderr is not None
        try:
            async for chunk in self.process.stderr:
                self.log += chunk.decode("utf-8", "replace")
                self._grew.set()
                self._grew = trio.Event()
        finally:
            self._eof.set()
            self._grew.set()

    async def wait_for(self, pattern: str) -> re.Match[str]:
        """Until the log matches ``pattern`` (fails if the process ends first)."""
        while (match := re.search(pattern, self.log)) is None and not self._eof.is_set():
            await self._grew.wait()
        assert match is not None, f"{pattern!r} never appeared in the log:\n{self.log}"
        return match

    async def stop(self) -> int:
        """SIGTERM, as the platform sends it; the exit code.  Never leaves the process behind."""
        with trio.CancelScope(shield=True):
            if self.process.returncode is None:
                self.process.send_signal(signal.SIGTERM)
            with trio.move_on_after(15):
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
                self.log += "\n[killed: did not stop within 15 s of SIGTERM]"
            with trio.move_on_after(5):
                await self._eof.wait()
            if self.process.stderr is not None:
                await self.process.stderr.aclose()
        code = self.process.returncode
        assert code is not None
        return code


async def start_service(nursery: trio.Nursery, service: str, env: dict[str, str]) -> Service:
    process = await trio.lowlevel.open_process(
        essen_command(service),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    running = Service(process)
    nursery.start_soon(running.collect)
    return running


async def test_the_admin_starts_with_good_production_values_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = clean_env(
        tmp_path,
        good_admin_values()
        | {"PORT": str(port), "DATABASE_URL": f"sqlite:///{tmp_path / 'essen.db'}"},
    )
    with trio.fail_after(START_LIMIT + 20):
        async with trio.open_nursery() as nursery:
            admin = await start_service(nursery, "admin", env)
            try:
                await admin.wait_for(rf"admin-api \S+ listening on http://\S+:{port}\b")
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                    # The platform's health check (the admin's own path) ...
                    health = await http.get("/health")
                    assert health.status_code == 200
                    assert health.json() == {"status": "ok"}
                    # ... and what the ingress forwards for /api/monitoring/metrics.
                    assert (await http.get("/monitoring/metrics")).status_code == 401
                    # The CORS allowlist is in force: the allowed origin gets its header.
                    allowed = await http.get("/health", headers={"Origin": "https://essen.example"})
                    assert allowed.headers["access-control-allow-origin"] == "https://essen.example"
                    other = await http.get("/health", headers={"Origin": "https://evil.example"})
                    assert "access-control-allow-origin" not in other.headers
            finally:
                code = await admin.stop()
            assert code == 0, admin.log
    assert "received SIGTERM, shutting down" in admin.log
    assert "configuration error" not in admin.log
    assert (tmp_path / "essen.db").exists()


async def test_the_bot_starts_with_good_production_values_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    port = free_port()
    closed = free_port()  # nothing listens: the admin and the Graph API are unreachable
    env = clean_env(
        tmp_path,
        good_bot_values()
        | {
            "PORT": str(port),
            "ADMIN_BACKEND_URL": f"https://127.0.0.1:{closed}",
            "FB_GRAPH_URL": f"http://127.0.0.1:{closed}",
        },
    )
    with trio.fail_after(START_LIMIT + 20):
        async with trio.open_nursery() as nursery:
            bot = await start_service(nursery, "bot", env)
            try:
                await bot.wait_for(rf"facebook-bot \S+ listening on http://\S+:{port}\b")
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                    quick = await http.get("/debug/health-quick")
                    # Unreachable admin and Graph API degrade the bot; it still serves.
                    assert quick.status_code == 200
                    assert quick.json()["status"] in ("healthy", "degraded")
                    assert (await http.get("/debug/metrics")).status_code == 401
                # The uplink says why it cannot reach the admin, in the guide's words.
                await bot.wait_for(r"⚠️ Connection error: .*socket\.io")
            finally:
                code = await bot.stop()
            assert code == 0, bot.log
    assert "received SIGTERM, shutting down" in bot.log


def test_production_bot_needs_an_https_admin_backend(tmp_path: Path) -> None:
    values = {k.lower(): v for k, v in good_bot_values().items()}
    values |= {"essen_env": "production", "admin_backend_url": "http://127.0.0.1:4000"}
    with pytest.raises(ConfigError, match="ADMIN_BACKEND_URL"):
        load_bot_settings(**values, essen_data_dir=tmp_path)


def test_production_admin_needs_a_database_url(tmp_path: Path) -> None:
    values = {k.lower(): v for k, v in good_admin_values().items()}
    values |= {"essen_env": "production", "database_url": ""}
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_admin_settings(**values, essen_data_dir=tmp_path)


def test_the_admin_is_websocket_only_when_instances_share_redis(tmp_path: Path) -> None:
    """No sticky sessions behind App Platform's balancer: a polling session's
    next request could land on another instance, so with Redis (several
    instances) the admin accepts WebSocket only, unless told otherwise."""
    alone = load_admin_settings(essen_data_dir=tmp_path)
    shared = load_admin_settings(essen_data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/0")
    chosen = load_admin_settings(
        essen_data_dir=tmp_path,
        redis_url="redis://127.0.0.1:6379/0",
        socketio_transports="polling, websocket",
    )
    assert alone.transports == ("polling", "websocket")
    assert shared.transports == ("websocket",)
    assert chosen.transports == ("polling", "websocket")


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"socketio_transports": "websocket,carrier-pigeon"}, "SOCKETIO_TRANSPORTS"),
        ({"redis_url": "http://127.0.0.1:6379"}, "REDIS_URL"),
        ({"essen_cluster": "two words"}, "essen_cluster"),
    ],
)
def test_bad_scale_out_settings_are_refused_naming_the_variable(
    tmp_path: Path, overrides: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_admin_settings(essen_data_dir=tmp_path, **overrides)


def test_the_bot_uplink_transports_are_a_setting(tmp_path: Path) -> None:
    assert load_bot_settings(essen_data_dir=tmp_path).uplink_transports == (
        "polling",
        "websocket",
    )
    websocket = load_bot_settings(essen_data_dir=tmp_path, admin_socket_transports="websocket")
    assert websocket.uplink_transports == ("websocket",)
    with pytest.raises(ConfigError, match="ADMIN_SOCKET_TRANSPORTS"):
        load_bot_settings(essen_data_dir=tmp_path, admin_socket_transports="grpc")
