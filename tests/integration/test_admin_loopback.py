"""The admin API as it runs in production, over real loopback sockets.

``run_admin`` listens on a free port (SQLite in ``tmp_path``); one real bot
(``run_bot``, its own port, the fake Graph API served beside it) reports to it
through ``/api/socket.io/`` (polling, then WebSocket); two dashboards watch:
the official ``socket.io-client`` in Node (``node_dashboard.mjs``: login with
fetch, ``/api/socket.io/``) and our client on ``/socket.io/``.  Signed
webhook POSTs to the bot must reach both.  Browser-origin rules: a
cross-site WebSocket is refused with 403, REST from the allowed origin gets
CORS headers.  Every wait is on an event or a line, bounded.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from essen.admin.service import run_admin
from essen.bot import run_bot
from essen.clock import SystemWallClock
from essen.config import load_bot_settings
from essen.messenger.fake_graph import create_fake_graph
from essen.realtime.client import ClientOptions, SocketIOClient
from essen.web.serving import serve_app
from tests.harness.admin_rig import (
    ALLOWED_ORIGIN,
    CHEAP_PASSWORDS,
    PASSWORD,
    PSEUDONYM_KEY,
    USERNAME,
    Dashboard,
    admin_settings,
    user_of,
)
from tests.harness.bot_rig import (
    APP_SECRET,
    PAGE_ID,
    PAGE_TOKEN,
    SERVICE_SECRET,
    signed,
    text_event,
    webhook_body,
)
from tests.interop._peer import Peer, run_peer
from tests.interop._raw import websocket_rejection

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
EVIL = "https://evil.example"
FORBIDDEN = {"code": 4, "message": "Forbidden"}
INSTANCE = "bot-loop"
NODE_WAIT = 10.0  # seconds for the Node dashboard to show what the test waits for
MESSAGES = [("9001", "m_1"), ("9002", "m_2"), ("9001", "m_3"), ("9003", "m_4"), ("9002", "m_5")]


def event_id(mid: str) -> str:
    return hashlib.blake2b(f"mid:{mid}".encode(), digest_size=12).hexdigest()


def node_executable() -> str:
    executable = shutil.which("node")
    if executable is None:
        pytest.fail("node is not on PATH (this test needs Node >= 20)")
    if not (HERE.parent / "interop" / "node" / "node_modules" / "socket.io-client").is_dir():
        pytest.fail("socket.io-client is not installed: run `npm ci` in tests/interop/node")
    return executable


class NodeDashboard:
    """The Node dashboard's JSON lines, read as the test needs them."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.events: list[tuple[str, Any]] = []

    async def step(self, name: str) -> dict[str, Any]:
        while (line := await self.peer.next()) is not None:
            if "event" in line:
                self.events.append((line["event"], line["payload"]))
            elif line.get("step") == name:
                return line
            elif line.get("result") == "fail":
                raise AssertionError(f"node dashboard failed: {line.get('error')}")
        raise AssertionError(f"node dashboard ended before {name!r}\n{self.peer.transcript()}")

    async def until(self, predicate: Any) -> None:
        """Read lines until ``predicate(self)``; fails with a transcript after ``NODE_WAIT``."""
        with trio.move_on_after(NODE_WAIT):
            await self._until(predicate)
        if not predicate(self):
            summary = [(name, _summary(payload)) for name, payload in self.events[-30:]]
            raise AssertionError(
                f"node dashboard: condition not met in {NODE_WAIT} s; last events {summary}\n"
                + self.peer.transcript()[-3000:]
            )

    async def _until(self, predicate: Any) -> None:
        while not predicate(self):
            line = await self.peer.next()
            if line is None:
                raise AssertionError(f"node dashboard ended\n{self.peer.transcript()}")
            if "event" in line:
                self.events.append((line["event"], line["payload"]))
            elif line.get("result") == "fail":
                raise AssertionError(f"node dashboard failed: {line.get('error')}")

    def named(self, name: str) -> list[Any]:
        return [payload for event, payload in self.events if event == name]


def _summary(payload: Any) -> Any:
    if isinstance(payload, dict) and "totals" in payload:
        return {"received": payload["totals"].get("received"), "v": payload.get("v")}
    if isinstance(payload, dict):
        keys = ("instance", "id", "component", "status")
        return {k: payload[k] for k in keys if k in payload}
    return payload


def keyed(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["instance"], e["id"], e["direction"]) for e in events]


class Departures:
    """Every socket the server lets go, with its role and the reason."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self._changed = trio.Event()

    async def __call__(self, socket: Any, reason: str) -> None:
        who = socket.data.get("instance") or socket.data.get("user") or "?"
        self.seen.append((f"{socket.data.get('role')}:{who}", reason))
        self._changed.set()
        self._changed = trio.Event()

    def reasons(self, who: str) -> list[str]:
        return [reason for departed, reason in self.seen if departed == who]

    async def wait_for(self, who: str, count: int = 1) -> list[str]:
        while len(self.reasons(who)) < count:
            await self._changed.wait()
        return self.reasons(who)


async def test_bot_and_two_dashboards_over_loopback(tmp_path: Path) -> None:
    node = node_executable()
    fake = create_fake_graph(page_token=PAGE_TOKEN, page_id=PAGE_ID, rng=random.Random(4))
    departures = Departures()
    with trio.fail_after(25):
        async with trio.open_nursery() as nursery:
            graph_urls = await nursery.start(partial(serve_app, fake.app, "127.0.0.1", 0))
            settings = admin_settings(tmp_path / "admin")
            admin = await nursery.start(
                partial(run_admin, settings, host="127.0.0.1", passwords=CHEAP_PASSWORDS)
            )
            await admin.store.create_admin(USERNAME, CHEAP_PASSWORDS.hash(PASSWORD))
            admin.server.on_disconnect(departures)
            url = admin.urls[0]
            bot_settings = load_bot_settings(
                essen_data_dir=tmp_path / "bot",
                port=0,
                admin_backend_url=url,
                admin_socket_path="/api/socket.io/",
                bot_service_secret=SERVICE_SECRET,
                bot_instance=INSTANCE,
                fb_app_secret=APP_SECRET,
                fb_page_access_token=PAGE_TOKEN,
                fb_graph_url=graph_urls[0],
                pseudonym_key=PSEUDONYM_KEY,
                metrics_interval=0.5,
            )
            bot_scope = trio.CancelScope()

            async def bot_process(task_status: trio.TaskStatus[Any]) -> None:
                with bot_scope:
                    await run_bot(bot_settings, host="127.0.0.1", task_status=task_status)

            bot = await nursery.start(bot_process)

            async with httpx.AsyncClient(base_url=url) as http:
                token = (
                    await http.post(
                        "/auth/login", json={"username": USERNAME, "password": PASSWORD}
                    )
                ).json()["token"]
                # Our client, as a dashboard on /socket.io/.
                ours = Dashboard(
                    SocketIOClient(url, ClientOptions(path="/socket.io/", auth={"token": token})),
                    SystemWallClock(),
                )
                await nursery.start(ours.client.run)
                await ours.client.wait_connected()
                subscribed = (await ours.call("subscribe", "monitoring"))[0]
                assert subscribed["ok"] is True
                assert set(subscribed["snapshot"]) == {"metrics", "health", "feed"}
                await ours.client.wait_status(lambda s: s.transport == "websocket")

                env = {**os.environ, "ESSEN_PASSWORD": PASSWORD}
                command = [node, "node_dashboard.mjs", url, USERNAME, ALLOWED_ORIGIN]
                async with run_peer(command, cwd=HERE, name="node dashboard", env=env) as peer:
                    browser = NodeDashboard(peer)
                    logged_in = await browser.step("logged_in")
                    assert (logged_in["status"], logged_in["cors"]) == (200, ALLOWED_ORIGIN)
                    await browser.step("connected")
                    assert (await browser.step("upgraded"))["transport"] == "websocket"
                    ack = (await browser.step("subscribed"))["ack"]
                    assert ack["ok"] is True
                    assert set(ack["snapshot"]) == {"metrics", "health", "feed"}
                    await peer.send(f"join {user_of('9001')}")
                    joined = (await browser.step("joined"))["ack"]
                    assert (joined["ok"], joined["user"]) == (True, user_of("9001"))

                    # Facebook's signed webhook POSTs to the real bot.
                    async with httpx.AsyncClient(base_url=bot.urls[0]) as webhook:
                        for n, (psid, mid) in enumerate(MESSAGES):
                            body = webhook_body(text_event(psid, mid, "opening hours?", 1 + n))
                            response = await webhook.post(
                                "/webhook", content=body, headers=signed(body)
                            )
                            assert response.status_code == 200
                    total = 2 * len(MESSAGES)
                    await ours.wait_until(lambda d: len(d.events("message:processed")) >= total)
                    await browser.until(lambda b: len(b.named("message:processed")) >= total)

                    def received_all(metrics: dict[str, Any]) -> bool:
                        return metrics["totals"].get("received") == len(MESSAGES)

                    await ours.wait_until(
                        lambda d: any(received_all(m) for m in d.events("metrics:update"))
                    )
                    await browser.until(
                        lambda b: any(received_all(m) for m in b.named("metrics:update"))
                    )
                    # The bot's liveness: in the snapshot, or announced after it.
                    known = {h["component"]: h["status"] for h in ack["snapshot"]["health"]}
                    known.update(
                        {h["component"]: h["status"] for h in browser.named("health:changed")}
                    )
                    assert known[f"bot:{INSTANCE}"] == "healthy"

                    # Browser-origin rules, on the same running service.
                    rejections = [
                        await websocket_rejection(url, path, origin=EVIL)
                        for path in ("/api/socket.io/", "/socket.io/")
                    ]
                    cors = await http.get(
                        "/api/monitoring/metrics",
                        headers={"Authorization": f"Bearer {token}", "Origin": ALLOWED_ORIGIN},
                    )
                    preflight = await http.options(
                        "/api/monitoring/metrics",
                        headers={
                            "Origin": ALLOWED_ORIGIN,
                            "Access-Control-Request-Method": "GET",
                            "Access-Control-Request-Headers": "authorization",
                        },
                    )
                    foreign = await http.get(
                        "/api/monitoring/metrics",
                        headers={"Authorization": f"Bearer {token}", "Origin": EVIL},
                    )

                    # Goodbyes: the Node dashboard leaves, then ours, then the bot dies.
                    await peer.send("disconnect")
                    assert (await browser.step("disconnected"))["reason"] == "io client disconnect"
                    await peer.finish()
                node_left = await departures.wait_for(f"admin:{USERNAME}")
                await ours.client.aclose()
                admins_left = await departures.wait_for(f"admin:{USERNAME}", 2)
                bot_scope.cancel()
                bot_left = await departures.wait_for(f"bot:{INSTANCE}")
            nursery.cancel_scope.cancel()

    expected_in = [(INSTANCE, event_id(mid), "in") for _, mid in MESSAGES]
    expected = sorted(expected_in + [(i, e + "-r", "out") for i, e, _ in expected_in])
    assert sorted(keyed(ours.events("message:processed"))) == expected
    # The Node dashboard is subscribed and in one user's room: still each event once.
    assert sorted(keyed(browser.named("message:processed"))) == expected
    assert keyed(browser.named("message:processed")) == keyed(ours.events("message:processed"))
    assert rejections == [(403, FORBIDDEN)] * 2
    assert cors.status_code == 200
    assert cors.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert cors.headers["access-control-allow-credentials"] == "true"
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in foreign.headers
    assert node_left == ["client namespace disconnect"]
    # Our client's goodbye reaches the server like Node's does.
    assert admins_left == ["client namespace disconnect"] * 2
    # A dead bot is noticed at once over real sockets (compare the memory harness).
    assert bot_left == ["transport close"]
