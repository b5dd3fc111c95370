#!/usr/bin/env python3
"""Smoke-test a deployed ESSEN over Socket.IO (the deployment guide's test-production-socket).

    BOT_SERVICE_SECRET=... python scripts/test_production_socket.py BASE_URL
    BOT_SERVICE_SECRET=... ADMIN_USERNAME=... ADMIN_PASSWORD=... \\
        python scripts/test_production_socket.py https://essen-messenger-bot-zxxtw.ondigitalocean.app

What it does, printing one line per step:

1. connects to BASE_URL/api/socket.io/ as a bot would (service auth
   ``{service: "bot", secret, instance: "smoke-test"}``), polling first, and
   reports the transport after the upgrade to WebSocket (``--websocket-only``:
   WebSocket from the start, for a multi-instance deployment);
2. sends a test ``metrics:update`` (a valid MetricsSnapshot for instance
   ``smoke-test``) and checks the ack is ``{ok: true}``;
3. with ADMIN_USERNAME and ADMIN_PASSWORD: logs in (POST BASE_URL/api/auth/login),
   connects as a dashboard (auth ``{token}``) and subscribes to ``monitoring``
   (the ack carries the snapshot);
4. sends a test ``message:processed`` (a valid MessageBatch of one event) and
   checks the ack, and with a dashboard, that the event arrives there live.

The test instance ``smoke-test`` then shows on the dashboard, turns stale after
15 s and down after 60 s without metrics, and stays listed until the admin API
restarts; the test event (preview "[smoke test] ...") stays in the feed and the
message log like any other.

Exit codes: 0 every check passed; 1 a check failed; 2 usage (missing
BOT_SERVICE_SECRET, bad BASE_URL); 3 the admin API could not be reached;
4 refused (wrong BOT_SERVICE_SECRET, or the admin login was refused).

Run it with the project's environment (``.venv/bin/python``), which has ESSEN
installed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

try:
    import httpx
    import trio

    from essen.errors import ConnectionRefused, DisconnectedError
    from essen.events import (
        Histogram,
        MessageBatch,
        MessageProcessed,
        MetricsSnapshot,
        WindowStats,
    )
    from essen.realtime.client import ClientOptions, ClientState, ClientStatus, SocketIOClient
except ImportError as missing:  # pragma: no cover - depends on how it is run
    sys.stderr.write(
        f"❌ {missing}: run this with the project's environment "
        "(.venv/bin/python scripts/test_production_socket.py ...) or `pip install -e .` first\n"
    )
    sys.exit(2)

OK, FAILED, USAGE, UNREACHABLE, REFUSED = 0, 1, 2, 3, 4


class SmokeFailure(Exception):
    """A step failed; ``code`` is the exit code, the message says why."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Config:
    base_url: str
    secret: str
    username: str | None
    password: str | None
    path: str
    api_prefix: str
    instance: str
    timeout: float
    require_websocket: bool
    #: Several instances behind a load balancer: WebSocket from the first request.
    websocket_only: bool = False


def say(line: str) -> None:
    print(line, flush=True)


# -- payloads ---------------------------------------------------------------------------


def metrics_snapshot(instance: str, started_at: float) -> dict[str, Any]:
    """A valid MetricsSnapshot with all-zero counters (it changes no totals)."""
    now = time.time()
    windows = {
        key: WindowStats(
            seconds=seconds, received=0, answered=0, failed=0, unique_users=0, latency=Histogram()
        )
        for key, seconds in (("1m", 60), ("5m", 300), ("60m", 3600))
    }
    snapshot = MetricsSnapshot(
        instance=instance,
        at=now,
        started_at=started_at,
        uptime_s=max(0.0, now - started_at),
        totals={"received": 0, "answered": 0, "failed": 0},
        windows=windows,
        send_api=Histogram(),
        per_minute=(),
    )
    return snapshot.model_dump(mode="json")


def message_batch(instance: str, event_id: str) -> dict[str, Any]:
    """A valid MessageBatch of one test event, recognisable in the feed."""
    event = MessageProcessed(
        instance=instance,
        id=event_id,
        user="u_smoketest",
        kind="text",
        direction="in",
        preview="[smoke test] scripts/test_production_socket.py",
        outcome="ignored",
        at=time.time(),
    )
    return MessageBatch(instance=instance, events=(event,)).model_dump(mode="json")


# -- Socket.IO --------------------------------------------------------------------------


class Connection:
    """One SocketIOClient running in the caller's nursery, without reconnection."""

    def __init__(self, config: Config, role: str, auth: dict[str, Any]) -> None:
        self.config = config
        self.role = role
        self.client = SocketIOClient(
            config.base_url,
            ClientOptions(
                path=config.path,
                transports=("websocket",) if config.websocket_only else ("polling", "websocket"),
                auth=auth,
                reconnection=False,
                retry_refused=False,
                connect_timeout=config.timeout,
            ),
        )
        self.refusal: ConnectionRefused | None = None
        #: The status when the connection was made (before any upgrade).
        self.connected_as: ClientStatus | None = None
        self._finished = trio.Event()
        self.client.on_status(self._on_status)

    def _on_status(self, status: ClientStatus) -> None:
        if status.state is ClientState.CONNECTED and self.connected_as is None:
            self.connected_as = status

    async def _run(self, *, task_status: trio.TaskStatus[None]) -> None:
        try:
            await self.client.run(task_status=task_status)
        except ConnectionRefused as refused:
            self.refusal = refused
        except DisconnectedError:
            pass
        finally:
            self._finished.set()

    async def open(self, nursery: trio.Nursery) -> ClientStatus:
        """Connect; raises SmokeFailure saying why it could not."""
        target = f"{self.config.base_url}{self.config.path}"
        await nursery.start(self._run)
        with trio.move_on_after(self.config.timeout) as waited:
            try:
                await self.client.wait_connected()
                return self.connected_as or self.client.status
            except DisconnectedError:
                pass
        if waited.cancelled_caught:
            raise SmokeFailure(
                UNREACHABLE,
                f"Connection timeout: no Socket.IO connection to {target} within "
                f"{self.config.timeout:g} s (is the admin-api service deployed and healthy?)",
            )
        with trio.move_on_after(2):
            await self._finished.wait()
        reason = (self.client.status.reason or "closed")[:240]
        say(f"⚠️ Connection error: {reason}")
        if self.refusal is not None:
            data = self.refusal.data
            code = data.get("reason") if isinstance(data, dict) else None
            hint = {
                "bad_secret": "BOT_SERVICE_SECRET differs from the admin-api's",
                "bad_instance": "the instance name is not acceptable",
                "expired": "the login token expired",
                "missing": "no credentials were sent",
            }.get(str(code), "")
            detail = f" ({code})" if code else ""
            raise SmokeFailure(
                REFUSED,
                f"The admin backend refused the {self.role}: {self.refusal.message}{detail}"
                + (f": {hint}" if hint else ""),
            )
        if "HTTP 404" in reason:
            hint = (
                f"nothing answers at {self.config.path}: is BASE_URL the app's URL, "
                "and does the ingress route /api to admin-api?"
            )
        elif "HTTP 400" in reason and not self.config.websocket_only:
            hint = (
                "polling refused: a multi-instance deployment (REDIS_URL set) accepts "
                "WebSocket only; run again with --websocket-only"
            )
        elif "HTTP 403" in reason:
            hint = "forbidden (a CORS or proxy rule?)"
        else:
            hint = "is the URL right, and is the admin-api service deployed and healthy?"
        raise SmokeFailure(UNREACHABLE, f"Cannot connect to {target}: {reason} ({hint})")

    async def wait_for_websocket(self, seconds: float) -> str:
        """The transport after the upgrade (or "polling" if it did not happen in time)."""
        with trio.move_on_after(seconds):
            await self.client.wait_status(
                lambda s: s.transport == "websocket" or s.state is not ClientState.CONNECTED
            )
        status = self.client.status
        if status.state is not ClientState.CONNECTED:
            raise SmokeFailure(FAILED, f"Disconnected from admin: {status.reason}")
        return status.transport or "polling"

    async def call(self, event: str, *args: Any) -> Any:
        """Emit with an ack; the ack's first argument."""
        try:
            with trio.fail_after(self.config.timeout):
                ack = await self.client.call(event, *args)
        except trio.TooSlowError:
            raise SmokeFailure(
                FAILED, f"No ack for {event} within {self.config.timeout:g} s"
            ) from None
        except DisconnectedError as lost:
            raise SmokeFailure(FAILED, f"Disconnected from admin during {event}: {lost}") from None
        return ack[0] if ack else None

    async def close(self) -> None:
        with trio.move_on_after(5):
            await self.client.aclose()


def expect_ok(event: str, ack: Any) -> dict[str, Any]:
    if not isinstance(ack, dict) or ack.get("ok") is not True:
        error = ack.get("error") if isinstance(ack, dict) else ack
        raise SmokeFailure(FAILED, f"The admin backend rejected {event}: {error!r}")
    return ack


# -- REST -------------------------------------------------------------------------------


async def login(config: Config) -> str:
    assert config.username is not None
    assert config.password is not None
    url = f"{config.base_url}{config.api_prefix}/auth/login"
    try:
        async with httpx.AsyncClient(timeout=config.timeout) as http:
            response = await http.post(
                url, json={"username": config.username, "password": config.password}
            )
    except httpx.HTTPError as exc:
        raise SmokeFailure(UNREACHABLE, f"Cannot reach {url}: {exc!r}") from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code == 200 and isinstance(body, dict) and "token" in body:
        say(f"✅ Logged in as {config.username}")
        return str(body["token"])
    if response.status_code == 401:
        raise SmokeFailure(
            REFUSED, f"Login refused for {config.username!r}: {body.get('error', 'unauthorized')}"
        )
    if response.status_code == 429:
        raise SmokeFailure(
            REFUSED, f"Login throttled: retry after {body.get('retry_after', '?')} s"
        )
    excerpt = response.text[:120].replace("\n", " ")
    raise SmokeFailure(FAILED, f"Login failed: HTTP {response.status_code} {excerpt}")


# -- the run ----------------------------------------------------------------------------


async def check_upgrade(bot: Connection, config: Config) -> None:
    """Report the upgrade from polling to WebSocket; fail without it if required."""
    if await bot.wait_for_websocket(config.timeout) == "websocket":
        say("✅ Upgraded to WebSocket: transport websocket")
    elif config.require_websocket:
        raise SmokeFailure(
            FAILED,
            f"No WebSocket upgrade within {config.timeout:g} s: still on polling "
            "(a proxy that does not pass WebSockets?)",
        )
    else:
        say(
            f"⚠️ Still on polling after {config.timeout:g} s: the WebSocket upgrade did "
            "not happen (a proxy that does not pass WebSockets?)"
        )


async def smoke(config: Config) -> None:
    started_at = time.time()
    async with trio.open_nursery() as nursery:
        bot = Connection(
            config,
            "bot",
            {"service": "bot", "secret": config.secret, "instance": config.instance},
        )
        status = await bot.open(nursery)
        say(
            f"✅ Connected to admin backend via Socket.io at {config.base_url}{config.path} "
            f"(transport {status.transport}, instance {config.instance})"
        )
        # --websocket-only connected over WebSocket from the start: no upgrade to check.
        if not config.websocket_only:
            await check_upgrade(bot, config)

        ack = expect_ok(
            "metrics:update",
            await bot.call("metrics:update", metrics_snapshot(config.instance, started_at)),
        )
        say(f"📊 Sent metrics:update for {config.instance}: acknowledged {ack}")

        dashboard: Connection | None = None
        live: list[dict[str, Any]] = []
        arrived = trio.Event()
        event_id = f"smoke-{uuid.uuid4().hex[:16]}"
        if config.username and config.password:
            token = await login(config)
            dashboard = Connection(config, "dashboard", {"token": token})

            @dashboard.client.on("message:processed")
            async def on_message(payload: Any = None) -> None:
                if isinstance(payload, dict) and payload.get("id") == event_id:
                    live.append(payload)
                    arrived.set()

            status = await dashboard.open(nursery)
            say(f"✅ Dashboard connected (transport {status.transport})")
            subscribed = expect_ok("subscribe", await dashboard.call("subscribe", "monitoring"))
            snapshot = subscribed.get("snapshot") or {}
            instances = (snapshot.get("metrics") or {}).get("instances") or []
            say(
                "✅ Subscribed to monitoring: snapshot with "
                f"{len(instances)} bot instance(s), {len(snapshot.get('health') or [])} "
                f"health component(s), {len(snapshot.get('feed') or [])} feed item(s)"
            )
        else:
            say(
                "⚠️ ADMIN_USERNAME / ADMIN_PASSWORD not set: skipping the dashboard checks "
                "(login, subscribe, live message)"
            )

        sent = time.monotonic()
        ack = expect_ok(
            "message:processed",
            await bot.call("message:processed", message_batch(config.instance, event_id)),
        )
        say(f"💬 Sent message:processed (1 test event, id {event_id}): acknowledged {ack}")
        if dashboard is not None:
            with trio.move_on_after(config.timeout):
                await arrived.wait()
            if not live:
                raise SmokeFailure(
                    FAILED,
                    "The test message was acknowledged but did not reach the dashboard "
                    f"within {config.timeout:g} s",
                )
            elapsed = (time.monotonic() - sent) * 1000
            say(
                f"💬 Received message:processed live on the dashboard "
                f"(id {event_id}, {elapsed:.0f} ms after sending)"
            )
            await dashboard.close()
        await bot.close()
        nursery.cancel_scope.cancel()


def parse(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        description="Smoke-test a deployed ESSEN admin API over Socket.IO.",
        epilog="Environment: BOT_SERVICE_SECRET (required), ADMIN_USERNAME and "
        "ADMIN_PASSWORD (optional: the dashboard checks).",
    )
    parser.add_argument("base_url", help="the app's URL, e.g. https://NAME.ondigitalocean.app")
    parser.add_argument("--path", default="/api/socket.io/", help="Socket.IO path")
    parser.add_argument("--api-prefix", default="/api", help="prefix of the admin REST API")
    parser.add_argument("--instance", default="smoke-test", help="bot instance name to use")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds allowed per step")
    parser.add_argument(
        "--require-websocket",
        action="store_true",
        help="fail (instead of warning) when the connection stays on polling",
    )
    parser.add_argument(
        "--websocket-only",
        action="store_true",
        help="connect over WebSocket from the start, as bots and dashboards do when "
        "several instances run behind App Platform's load balancer (no sticky sessions)",
    )
    args = parser.parse_args(argv)
    parts = urlsplit(args.base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        parser.exit(USAGE, f"❌ BASE_URL must be an http:// or https:// URL: {args.base_url!r}\n")
    secret = os.environ.get("BOT_SERVICE_SECRET", "")
    if not secret:
        parser.exit(USAGE, "❌ BOT_SERVICE_SECRET is not set (the admin-api's value)\n")
    username = os.environ.get("ADMIN_USERNAME") or None
    password = os.environ.get("ADMIN_PASSWORD") or None
    if bool(username) != bool(password):
        parser.exit(USAGE, "❌ set both ADMIN_USERNAME and ADMIN_PASSWORD, or neither\n")
    return Config(
        base_url=args.base_url.rstrip("/"),
        secret=secret,
        username=username,
        password=password,
        path="/" + args.path.strip("/") + "/",
        api_prefix="/" + args.api_prefix.strip("/") if args.api_prefix.strip("/") else "",
        instance=args.instance,
        timeout=args.timeout,
        require_websocket=args.require_websocket,
        websocket_only=args.websocket_only,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse(argv)
    try:
        trio.run(smoke, config)
    except SmokeFailure as failure:
        say(f"❌ {failure.message}")
        return failure.code
    except BaseExceptionGroup as group:  # a failure inside the nursery
        failures = group.subgroup(SmokeFailure)
        if failures is None:
            raise
        first = failures
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        assert isinstance(first, SmokeFailure)
        say(f"❌ {first.message}")
        return first.code
    except KeyboardInterrupt:
        say("❌ Interrupted")
        return FAILED
    say("✅ All checks passed")
    return OK


if __name__ == "__main__":
    sys.exit(main())
