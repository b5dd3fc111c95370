"""An in-process bot: webhook client, fake Graph API and an admin stand-in, under MockClock."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from essen.bot import BotHandles, run_bot
from essen.clock import TrioWallClock
from essen.config import load_bot_settings
from essen.errors import ConnectionRefused
from essen.messenger.fake_graph import FakeGraph, create_fake_graph
from essen.messenger.send_policy import RetryPolicy
from essen.realtime import ServerOptions, Socket, SocketIOMount, SocketIOServer
from essen.realtime.backoff import BackoffPolicy
from essen.realtime.transports import MemoryNetwork

from .conftest import FAST, Switchboard

APP_SECRET = "app-secret-" + "x" * 32
PAGE_TOKEN = "page-token-" + "y" * 32
SERVICE_SECRET = "service-secret-" + "z" * 32
PAGE_ID = "100000000000001"


def signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def text_event(psid: str, mid: str, text: str, timestamp: int) -> dict[str, Any]:
    return {
        "sender": {"id": psid},
        "recipient": {"id": PAGE_ID},
        "timestamp": timestamp,
        "message": {"mid": mid, "text": text},
    }


def webhook_body(*items: dict[str, Any]) -> bytes:
    entry = {"id": PAGE_ID, "time": items[0]["timestamp"] if items else 0, "messaging": list(items)}
    return json.dumps({"object": "page", "entry": [entry]}).encode()


@dataclass
class AdminStandIn:
    """A Socket.IO server that accepts the bot's service auth and records what arrives."""

    server: SocketIOServer
    batches: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    health: list[dict[str, Any]] = field(default_factory=list)
    changed: trio.Event = field(default_factory=trio.Event)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [event for batch in self.batches for event in batch["events"]]

    def _poke(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def wait_until(self, predicate: Any) -> None:
        while not predicate(self):
            await self.changed.wait()


def make_admin() -> AdminStandIn:
    server = SocketIOServer(ServerOptions(engine=FAST), rng=random.Random(11))
    admin = AdminStandIn(server)

    @server.use
    async def auth(socket: Socket, payload: dict[str, Any] | None) -> None:
        if not payload or payload.get("secret") != SERVICE_SECRET:
            raise ConnectionRefused("unknown service")

    @server.on("message:processed")
    async def processed(socket: Socket, batch: dict[str, Any]) -> None:
        admin.batches.append(batch)
        admin._poke()

    @server.on("metrics:update")
    async def metrics(socket: Socket, snapshot: dict[str, Any]) -> None:
        admin.snapshots.append(snapshot)
        admin._poke()

    @server.on("health:changed")
    async def health(socket: Socket, change: dict[str, Any]) -> None:
        admin.health.append(change)
        admin._poke()

    return admin


@dataclass
class BotRig:
    handles: BotHandles
    fake: FakeGraph
    admin: AdminStandIn
    admin_switch: Switchboard
    webhook: httpx.AsyncClient
    admin_nursery: trio.Nursery
    admin_scope: trio.CancelScope | None = None

    async def post(self, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.webhook.post("/webhook", content=body, headers=headers or signed(body))

    async def deliver(self, body: bytes) -> int:
        """POST as Facebook does: a 503 is retried after a pause; returns the attempts."""
        attempts = 0
        while True:
            attempts += 1
            response = await self.post(body)
            if response.status_code != 503:
                assert response.status_code == 200, response.text
                return attempts
            await trio.sleep(1.0)

    async def start_admin(self) -> None:
        async def serve(task_status: trio.TaskStatus[None]) -> None:
            with trio.CancelScope() as scope:
                self.admin_scope = scope
                await self.admin.server.run(task_status=task_status)

        await self.admin_nursery.start(serve)
        self.admin_switch.target = SocketIOMount(None, self.admin.server)

    def stop_admin(self) -> None:
        self.admin_switch.target = None
        if self.admin_scope is not None:
            self.admin_scope.cancel()


@asynccontextmanager
async def bot_rig(
    tmp_path: Path,
    *,
    seed: int = 1,
    admin_up: bool = True,
    retry: RetryPolicy | None = None,
    **settings: Any,
) -> AsyncIterator[BotRig]:
    fake = create_fake_graph(page_token=PAGE_TOKEN, page_id=PAGE_ID, rng=random.Random(seed))
    graph_http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fake.app), base_url="http://graph.test"
    )
    switch = Switchboard()
    network = MemoryNetwork(switch)
    admin = make_admin()
    config = load_bot_settings(
        essen_data_dir=tmp_path,
        admin_backend_url="http://essen.test",
        admin_socket_path="/socket.io/",
        bot_service_secret=SERVICE_SECRET,
        bot_instance="bot-1",
        fb_app_secret=APP_SECRET,
        fb_verify_token="verify-" + "v" * 32,
        fb_page_access_token=PAGE_TOKEN,
        fb_graph_url="http://graph.test",
        debug_token="debug-" + "d" * 32,
        pseudonym_key="pseudonym-" + "k" * 32,
        metrics_interval=5.0,
        **settings,
    )
    async with trio.open_nursery() as nursery:
        handles: BotHandles = await nursery.start(
            lambda task_status: run_bot(
                config,
                serve=False,
                graph_http=graph_http,
                uplink_network=network,
                wall=TrioWallClock(),
                rng=random.Random(seed),
                retry_policy=retry
                or RetryPolicy(backoff=BackoffPolicy(initial=0.5, maximum=8.0, jitter=0.5)),
                task_status=task_status,
            )
        )
        webhook = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=handles.app), base_url="http://bot.test"
        )
        rig = BotRig(handles, fake, admin, switch, webhook, nursery)
        if admin_up:
            await rig.start_admin()
        try:
            yield rig
        finally:
            await webhook.aclose()
            await graph_http.aclose()
            await network.aclose()
            nursery.cancel_scope.cancel()
