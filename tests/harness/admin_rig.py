"""The admin API in-process under MockClock, with real bots and dashboards, and no sockets.

``admin_rig`` runs :func:`essen.admin.service.run_admin` (``serve=False``,
SQLite in ``tmp_path``) and gives the test:

* bots: :func:`essen.bot.run_bot` in-process (as in :mod:`.bot_rig`: fake
  Graph API over httpx's ASGI transport, webhook through the bot's app), whose
  uplink reaches the admin's full ASGI app over a :class:`MemoryNetwork`; each
  runs in its own cancel scope, so a test can stop one like a dead process;
* dashboards: :class:`essen.realtime.client.SocketIOClient` over another
  memory network, recording every event with the Trio and wall time it
  arrived;
* REST: an ``httpx.AsyncClient`` on the same ASGI app.

One :class:`TrioWallClock` is shared by the admin API and the bots, so every
wall-clock stamp (token expiry, minute buckets, rollup hours) is a function
of Trio's clock.

Worker threads and MockClock: the store (SQLite) and the password hasher run
in ``trio.to_thread``.  While a thread works, every task may be blocked, and
``autojump_clock`` would then jump to the next deadline, again and again, as
long as the thread runs: a 5 ms query could let minutes of mock time pass,
a different number each run.  :class:`ThreadsStopTheClock` keeps one task
runnable while any thread call is in flight, so threads take no mock time and
every time in these tests is exact.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from argon2 import PasswordHasher

from essen.admin.service import AdminHandles, run_admin
from essen.auth.passwords import Passwords
from essen.bot import BotHandles, run_bot
from essen.clock import TrioWallClock, WallClock
from essen.config import AdminSettings, load_admin_settings, load_bot_settings
from essen.messenger.fake_graph import FakeGraph, create_fake_graph
from essen.messenger.send_policy import RetryPolicy
from essen.pseudonym import pseudonymize
from essen.realtime.backoff import BackoffPolicy
from essen.realtime.client import ClientOptions, ClientState, SocketIOClient
from essen.realtime.transports import MemoryNetwork

from .bot_rig import (
    APP_SECRET,
    PAGE_ID,
    PAGE_TOKEN,
    SERVICE_SECRET,
    signed,
    text_event,
    webhook_body,
)

JWT_SECRET = "jwt-secret-" + "j" * 32
PSEUDONYM_KEY = "pseudonym-" + "k" * 32
USERNAME = "ada"
PASSWORD = "correct horse battery staple"
ALLOWED_ORIGIN = "https://dash.essen.test"
#: argon2id at its cheapest: the tests check the login flow, not the hash's cost.
CHEAP_PASSWORDS = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
#: What a dashboard records.
DASHBOARD_EVENTS = ("metrics:update", "message:processed", "health:changed", "auth:expired")


def user_of(psid: str) -> str:
    """The pseudonymous user id the bots publish for ``psid`` (they share the key)."""
    return pseudonymize(psid, PSEUDONYM_KEY.encode())


class ThreadsStopTheClock:
    """``trio.to_thread.run_sync`` that takes no mock time (see the module docstring).

    The real ``run_sync`` still runs the work in a worker thread, with its
    limiter and cancellation semantics; meanwhile :meth:`keeper` checkpoints
    in a loop, so the run loop is never idle and the MockClock never jumps.
    """

    def __init__(self, original: Callable[..., Any]) -> None:
        self._original = original
        self._busy = 0
        self._wake = trio.Event()

    async def run_sync(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self._busy += 1
        self._wake.set()
        try:
            return await self._original(fn, *args, **kwargs)
        finally:
            self._busy -= 1

    async def keeper(self, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        while True:
            if self._busy:
                await trio.lowlevel.checkpoint()
            else:
                await self._wake.wait()
                self._wake = trio.Event()


@dataclass(frozen=True, slots=True)
class Seen:
    """One event as a dashboard received it."""

    at: float  # Trio time
    wall: float
    event: str
    payload: Any


class Dashboard:
    """A dashboard: our Socket.IO client, logged in with a token, recording what arrives."""

    def __init__(self, client: SocketIOClient, wall: WallClock) -> None:
        self.client = client
        self.wall = wall
        self.seen: list[Seen] = []
        self.snapshot: dict[str, Any] | None = None
        self._changed = trio.Event()
        for name in DASHBOARD_EVENTS:
            client.on(name)(partial(self._record, name))

    async def _record(self, event: str, payload: Any = None) -> None:
        self.seen.append(Seen(trio.current_time(), self.wall.now(), event, payload))
        self._changed.set()
        self._changed = trio.Event()

    def events(self, name: str) -> list[Any]:
        return [s.payload for s in self.seen if s.event == name]

    def health(self, component: str) -> list[Seen]:
        return [
            s
            for s in self.seen
            if s.event == "health:changed" and s.payload["component"] == component
        ]

    async def wait_until(self, predicate: Callable[[Dashboard], bool]) -> None:
        while not predicate(self):
            await self._changed.wait()

    async def call(self, event: str, *args: Any) -> list[Any]:
        return await self.client.call(event, *args)


@dataclass
class Bot:
    """One bot process of the fleet, in-process."""

    instance: str
    handles: BotHandles
    fake: FakeGraph
    webhook: httpx.AsyncClient
    scope: trio.CancelScope
    closers: list[Any]
    stopped: bool = False

    async def post(self, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.webhook.post("/webhook", content=body, headers=headers or signed(body))

    async def say(self, psid: str, mid: str, text: str = "opening hours?") -> None:
        """One signed webhook POST with one text message from ``psid``."""
        body = webhook_body(text_event(psid, mid, text, 1_700_000_000_000))
        response = await self.post(body)
        assert response.status_code == 200, response.text

    async def stop(self) -> None:
        """Cancel the bot, like a process that died: no goodbye to the admin API."""
        if self.stopped:
            return
        self.stopped = True
        self.scope.cancel()
        for closer in self.closers:
            await closer.aclose()


@dataclass
class AdminRig:
    nursery: trio.Nursery
    handles: AdminHandles
    settings: AdminSettings
    wall: TrioWallClock
    http: httpx.AsyncClient
    tmp_path: Path
    seed: int
    #: The latest bot started under each name (a restart replaces the entry).
    bots: dict[str, Bot] = field(default_factory=dict)
    started: list[Bot] = field(default_factory=list)
    networks: list[MemoryNetwork] = field(default_factory=list)
    _clients: int = 0

    @property
    def hub_counters(self) -> dict[str, int]:
        return self.handles.hub.counters

    # -- REST ----------------------------------------------------------------

    async def login(self, username: str = USERNAME, password: str = PASSWORD) -> str:
        response = await self.http.post(
            "/api/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token

    @staticmethod
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    # -- Socket.IO clients ---------------------------------------------------

    def network(
        self,
        client_addr: tuple[str, int] = ("10.0.0.2", 50000),
        trace: Callable[[str, str], None] | None = None,
    ) -> MemoryNetwork:
        network = MemoryNetwork(
            self.handles.asgi, client_addr=client_addr, trace=trace, nursery=self.nursery
        )
        self.networks.append(network)
        return network

    def client(
        self,
        auth: dict[str, Any] | None,
        *,
        path: str = "/api/socket.io/",
        trace: Callable[[str, str], None] | None = None,
    ) -> SocketIOClient:
        """A client that gives up at the first refusal (its ``run`` raises it)."""
        self._clients += 1
        return SocketIOClient(
            "http://essen.test",
            ClientOptions(path=path, auth=auth, retry_refused=False),
            network=self.network(("10.0.0.2", 50000 + self._clients), trace),
            rng=random.Random(self.seed * 1000 + self._clients),
        )

    async def dashboard(
        self, token: str, *, path: str = "/api/socket.io/", subscribe: bool = True
    ) -> Dashboard:
        """A connected dashboard; subscribed to ``monitoring`` (its snapshot kept) if asked."""
        dashboard = Dashboard(self.client({"token": token}, path=path), self.wall)
        await self.nursery.start(dashboard.client.run)
        await dashboard.client.wait_connected()
        if subscribe:
            ack = await dashboard.call("subscribe", "monitoring")
            assert ack[0]["ok"] is True, ack
            dashboard.snapshot = ack[0]["snapshot"]
        return dashboard

    # -- bots ----------------------------------------------------------------

    async def start_bot(self, instance: str, *, metrics_interval: float = 5.0) -> Bot:
        seed = self.seed * 100 + len(self.started)
        fake = create_fake_graph(page_token=PAGE_TOKEN, page_id=PAGE_ID, rng=random.Random(seed))
        graph_http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=fake.app), base_url="http://graph.test"
        )
        # The server side of the bot's WebSocket lives in the rig's nursery, as it
        # would in the admin's process: a bot that dies is seen going at once.
        network = MemoryNetwork(
            self.handles.asgi, client_addr=("10.0.1.1", 40000 + len(self.started)),
            nursery=self.nursery,
        )
        config = load_bot_settings(
            essen_data_dir=self.tmp_path / instance,
            admin_backend_url="http://essen.test",
            admin_socket_path="/api/socket.io/",
            bot_service_secret=SERVICE_SECRET,
            bot_instance=instance,
            fb_app_secret=APP_SECRET,
            fb_verify_token="verify-" + "v" * 32,
            fb_page_access_token=PAGE_TOKEN,
            fb_graph_url="http://graph.test",
            debug_token="debug-" + "d" * 32,
            pseudonym_key=PSEUDONYM_KEY,
            metrics_interval=metrics_interval,
        )
        scope = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[BotHandles]) -> None:
            with scope:
                await run_bot(
                    config,
                    serve=False,
                    graph_http=graph_http,
                    uplink_network=network,
                    wall=self.wall,
                    rng=random.Random(seed),
                    retry_policy=RetryPolicy(
                        backoff=BackoffPolicy(initial=0.5, maximum=8.0, jitter=0.5)
                    ),
                    task_status=task_status,
                )

        handles: BotHandles = await self.nursery.start(run)
        webhook = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=handles.app), base_url="http://bot.test"
        )
        bot = Bot(instance, handles, fake, webhook, scope, [webhook, graph_http, network])
        self.bots[instance] = bot
        self.started.append(bot)
        return bot


def admin_settings(tmp_path: Path, **overrides: Any) -> AdminSettings:
    values: dict[str, Any] = {
        "essen_data_dir": tmp_path,
        "admin_instance": "admin-test",
        "bot_service_secret": SERVICE_SECRET,
        "jwt_secret": JWT_SECRET,
        "cors_origins": ALLOWED_ORIGIN,
        "bot_stale_after": 15.0,
        "bot_down_after": 60.0,
        "port": 0,
    }
    values.update(overrides)
    return load_admin_settings(**values)


@asynccontextmanager
async def admin_rig(tmp_path: Path, *, seed: int = 1, **overrides: Any) -> AsyncIterator[AdminRig]:
    """The admin API with one admin account (``USERNAME``/``PASSWORD``), nothing else yet."""
    settings = admin_settings(tmp_path, **overrides)
    wall = TrioWallClock()
    threads = ThreadsStopTheClock(trio.to_thread.run_sync)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trio.to_thread, "run_sync", threads.run_sync)
        # The keeper outlives the admin API: closing the store runs in a thread too.
        async with trio.open_nursery() as keeper:
            await keeper.start(threads.keeper)
            try:
                async with trio.open_nursery() as nursery:
                    handles: AdminHandles = await nursery.start(
                        partial(
                            run_admin,
                            settings,
                            serve=False,
                            wall=wall,
                            rng=random.Random(seed),
                            passwords=CHEAP_PASSWORDS,
                        )
                    )
                    await handles.store.create_admin(USERNAME, CHEAP_PASSWORDS.hash(PASSWORD))
                    http = httpx.AsyncClient(
                        transport=httpx.ASGITransport(app=handles.asgi),
                        base_url="http://admin.test",
                    )
                    rig = AdminRig(nursery, handles, settings, wall, http, tmp_path, seed)
                    try:
                        yield rig
                    finally:
                        for bot in rig.started:
                            await bot.stop()
                        await http.aclose()
                        for network in rig.networks:
                            await network.aclose()
                        nursery.cancel_scope.cancel()
            finally:
                keeper.cancel_scope.cancel()


def closed_by_server(client: SocketIOClient) -> bool:
    status = client.status
    return status.state is ClientState.CLOSED and status.reason == "io server disconnect"
