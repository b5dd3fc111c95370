"""``essen.testing.system``: the whole ESSEN system in one Trio run, without sockets.

::

    async with system(seed=1, bots=2, dashboards=3) as s:
        await s.user(7).say("what are your opening hours?")
        await s.advance(2)
        assert s.dashboards[0].messages()[-1]["outcome"] == "answered"
        s.graph.fail_rate(0.3)
        await s.stop_bot(1)

        # A day at 50 messages/s in seconds: counted in aggregate, 1 in 10,000 real.
        report = await s.traffic(rate=50.0, duration=24 * 3600, sample_every=10_000)

Bot instances, the admin API, the fake Graph API and dashboard clients run
as they do in production (the same assemblies: ``run_bot``, ``run_admin``),
joined by the memory network: HTTP through httpx's ASGI transport,
WebSockets through memory channels.  Under ``trio.testing.MockClock`` with
:func:`deterministic_scheduling` there is no OS socket, no thread (the store
is in memory, dashboards get their tokens minted, not logged in) and no wall
clock (:class:`TrioWallClock`), so a seed replays the same run: the
:attr:`System.trace` of everything that crossed a transport, with its Trio
time, is identical from run to run.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import random
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import trio

from essen.admin.ingest import ask
from essen.admin.service import AdminHandles, run_admin
from essen.auth.tokens import TokenSettings
from essen.bot import BotHandles, run_bot
from essen.clock import TrioWallClock
from essen.config import load_admin_settings, load_bot_settings
from essen.messenger.fake_graph import FakeGraph, create_fake_graph
from essen.messenger.send_policy import RetryPolicy
from essen.realtime.backoff import BackoffPolicy
from essen.realtime.client import ClientOptions, ClientState, SocketIOClient
from essen.realtime.transports import MemoryNetwork

from ._determinism import deterministic_scheduling
from ._trace import Trace, TracingTransport
from ._traffic import TrafficReport, TrafficState, drive, psid_of
from .memory_store import MemoryStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

__all__ = ("Dashboard", "System", "TrafficReport", "User", "system")

PAGE_ID = "100000000000001"
_SECRET = "harness-secret-" + "s" * 32
_TOKEN_TTL = 30 * 86_400.0


class _Switch:
    """An ASGI app whose target can be taken away (a stopped service) and put back."""

    def __init__(self) -> None:
        self.target: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.target is not None:
            await self.target(scope, receive, send)
        elif scope["type"] == "http":
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b"down"})
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1011})


@dataclass
class Dashboard:
    """A dashboard: subscribed to ``monitoring``, recording what it receives."""

    name: str
    client: SocketIOClient
    #: Everything that arrived, newest last, as ``(Trio time, event, payload)``
    #: (the last 200: a ``metrics:update`` is ~20 KB of Python objects).
    events: deque[tuple[float, str, Any]] = field(default_factory=lambda: deque(maxlen=200))
    snapshots: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=100))
    #: Each kind on its own, newest last, so that a long run's metrics updates
    #: do not push the feed out: every ``message:processed`` (the last 50 000),
    #: ``metrics:update`` (the last 100) and ``health:changed`` (the last 5 000).
    feed: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=50_000))
    metrics: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=100))
    health: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=5_000))

    @property
    def last_metrics(self) -> dict[str, Any] | None:
        """The newest ``metrics:update``: what the page's cards show now."""
        return self.metrics[-1] if self.metrics else None

    def messages(self) -> list[dict[str, Any]]:
        """Every ``message:processed`` this dashboard knows of, as a page would show them:
        the feeds of its snapshots and the live events, each once, in order of arrival."""
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        for snapshot in self.snapshots:
            for item in snapshot.get("feed", []):
                seen.setdefault((item["instance"], item["id"]), item)
        for payload in self.feed:
            seen.setdefault((payload["instance"], payload["id"]), payload)
        return list(seen.values())

    def live_messages(self) -> list[dict[str, Any]]:
        """Only the ``message:processed`` events that arrived live (duplicates included)."""
        return list(self.feed)

    def metrics_updates(self) -> list[dict[str, Any]]:
        """The ``metrics:update`` events that arrived (the last 100)."""
        return list(self.metrics)

    def health_changes(self) -> list[dict[str, Any]]:
        """The ``health:changed`` events that arrived (the last 5 000)."""
        return list(self.health)


@dataclass
class User:
    """A Messenger user talking to the page (through bot instance ``bot``)."""

    system: System
    psid: str
    bot: int = 0
    _sent: int = 0
    last_body: bytes = b""

    def _next_mid(self) -> str:
        self._sent += 1
        return f"m_{self.psid}_{self._sent}"

    async def _send(self, item: dict[str, Any]) -> None:
        ms = 1_700_000_000_000 + int((trio.current_time() - self.system.trace.t0) * 1000)
        item = {"sender": {"id": self.psid}, "recipient": {"id": PAGE_ID}, "timestamp": ms, **item}
        body = json.dumps(
            {"object": "page", "entry": [{"id": PAGE_ID, "time": ms, "messaging": [item]}]}
        ).encode()
        self.last_body = body
        await self.system.post_webhook(body, bot=self.bot)

    async def say(self, text: str) -> None:
        await self._send({"message": {"mid": self._next_mid(), "text": text}})

    async def quick_reply(self, title: str, payload: str) -> None:
        await self._send(
            {
                "message": {
                    "mid": self._next_mid(),
                    "text": title,
                    "quick_reply": {"payload": payload},
                }
            }
        )

    async def postback(self, payload: str, title: str = "") -> None:
        await self._send(
            {"postback": {"mid": self._next_mid(), "title": title or payload, "payload": payload}}
        )

    async def attachment(self, kind: str = "image") -> None:
        mid = self._next_mid()
        await self._send(
            {
                "message": {
                    "mid": mid,
                    "attachments": [
                        {"type": kind, "payload": {"url": f"https://cdn.example.com/{mid}"}}
                    ],
                }
            }
        )

    async def redeliver_last(self) -> None:
        """Facebook delivers the last webhook again (the bot must not answer twice)."""
        await self.system.post_webhook(self.last_body, bot=self.bot)


@dataclass
class _BotNode:
    index: int
    switch: _Switch
    uplink: MemoryNetwork
    webhook: httpx.AsyncClient
    handles: BotHandles | None = None
    scope: trio.CancelScope | None = None


class System:
    """A running system; see the module docstring.  Made by :func:`system`."""

    def __init__(
        self, seed: int, nursery: trio.Nursery, trace: Trace, metrics_interval: float = 5.0
    ) -> None:
        self.seed = seed
        self.metrics_interval = metrics_interval
        self.nursery = nursery
        self.trace = trace
        self.wall = TrioWallClock()
        self.graph: FakeGraph = create_fake_graph(
            page_token=_SECRET, page_id=PAGE_ID, rng=random.Random(seed)
        )
        self.graph_http = httpx.AsyncClient(
            transport=TracingTransport(
                httpx.ASGITransport(app=self._asgi(self.graph.app)), trace, "graph"
            ),
            base_url="http://graph.test",
        )
        self.store = MemoryStore(self.wall)
        self.admin_switch = _Switch()
        self.admin: AdminHandles | None = None
        self._admin_scope: trio.CancelScope | None = None
        self.bots: list[_BotNode] = []
        self.dashboards: list[Dashboard] = []
        self._users: dict[int, User] = {}
        self._traffic: TrafficState | None = None
        self._admin_http = httpx.AsyncClient(
            transport=TracingTransport(
                httpx.ASGITransport(app=self._asgi(self.admin_switch)), trace, "rest"
            ),
            base_url="http://admin.test",
        )
        # Minted dashboard tokens outlive the longest simulated run (a day of
        # traffic and then some); expiry itself is what test_admin_harness tests.
        self.tokens = TokenSettings(secret=_SECRET, ttl=_TOKEN_TTL)
        self._admin_settings = load_admin_settings(
            essen_data_dir=Path(".essen-harness"),
            admin_instance="admin-1",
            bot_service_secret=_SECRET,
            jwt_secret=_SECRET,
            token_ttl=24 * 3600.0,
            # The thresholds keep their ratio to the bots' metrics interval
            # (15 s and 60 s at the default 5 s), so a slower one is not "stale".
            bot_stale_after=max(15.0, 3 * metrics_interval),
            bot_down_after=max(60.0, 12 * metrics_interval),
        )

    @staticmethod
    def _asgi(app: Any) -> Any:
        # Quart types its ASGI callable with its own TypedDicts; plain ASGI flows at run time.
        return app

    # -- services -------------------------------------------------------------

    async def start_admin(self) -> None:
        async def serve(task_status: trio.TaskStatus[AdminHandles]) -> None:
            with trio.CancelScope() as scope:
                self._admin_scope = scope
                await run_admin(
                    self._admin_settings,
                    serve=False,
                    wall=self.wall,
                    rng=random.Random(self.seed + 1),
                    store=self.store,
                    task_status=task_status,
                )

        self.admin = await self.nursery.start(serve)
        self.admin_switch.target = self.admin.asgi
        self.trace.record("admin", "service", "started")

    async def stop_admin(self) -> None:
        self.admin_switch.target = None
        for node in self.bots:
            node.uplink.sever()
        for dashboard in self.dashboards:
            network = dashboard.client._network
            if isinstance(network, MemoryNetwork):
                network.sever()
        if self._admin_scope is not None:
            self._admin_scope.cancel()
        self.admin = None
        await trio.testing.wait_all_tasks_blocked()
        self.trace.record("admin", "service", "stopped")

    def _bot_settings(self, index: int) -> Any:
        return load_bot_settings(
            essen_data_dir=Path(".essen-harness"),
            bot_instance=f"bot-{index + 1}",
            admin_backend_url="http://admin.test",
            admin_socket_path="/api/socket.io/",
            bot_service_secret=_SECRET,
            fb_app_secret=_SECRET,
            fb_verify_token=_SECRET,
            fb_page_access_token=_SECRET,
            fb_graph_url="http://graph.test",
            debug_token=_SECRET,
            pseudonym_key=_SECRET,
            metrics_interval=self.metrics_interval,
        )

    async def start_bot(self, index: int) -> None:
        node = self.bots[index]

        async def serve(task_status: trio.TaskStatus[BotHandles]) -> None:
            with trio.CancelScope() as scope:
                node.scope = scope
                await run_bot(
                    self._bot_settings(index),
                    serve=False,
                    graph_http=self.graph_http,
                    uplink_network=node.uplink,
                    wall=self.wall,
                    rng=random.Random(self.seed * 1000 + index),
                    retry_policy=RetryPolicy(backoff=BackoffPolicy(0.5, 2.0, 8.0, 0.5)),
                    task_status=task_status,
                )

        node.handles = await self.nursery.start(serve)
        node.switch.target = node.handles.app
        self.trace.record(f"bot-{index + 1}", "service", "started")

    async def stop_bot(self, index: int) -> None:
        node = self.bots[index]
        node.switch.target = None
        node.uplink.sever()
        if node.scope is not None:
            node.scope.cancel()
        node.handles = None
        await trio.testing.wait_all_tasks_blocked()
        self.trace.record(f"bot-{index + 1}", "service", "stopped")

    def partition_bot(self, index: int, *, cut: bool = True) -> None:
        """Cut (or restore) the network between a bot and the admin API."""
        node = self.bots[index]
        node.uplink.partitioned = cut
        if cut:
            node.uplink.sever()
        self.trace.record(f"bot-{index + 1}", "partition", "cut" if cut else "restored")

    # -- traffic and observation ---------------------------------------------

    def user(self, n: int, *, bot: int | None = None) -> User:
        user = self._users.get(n)
        if user is None:
            user = self._users[n] = User(
                self, psid_of(n), bot if bot is not None else n % max(1, len(self.bots))
            )
        return user

    async def post_webhook(self, body: bytes, *, bot: int = 0) -> int:
        """POST a signed webhook as Facebook would, retrying a 503 after a second."""
        digest = hmac.new(_SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}
        while True:
            response = await self.bots[bot].webhook.post("/webhook", content=body, headers=headers)
            if response.status_code != 503:
                return response.status_code
            await trio.sleep(1.0)

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` of simulated time pass."""
        await trio.sleep(seconds)

    async def traffic(
        self,
        *,
        rate: float,
        duration: float,
        sample_every: int | None = 10_000,
        population: int = 1_000,
        step: float = 1.0,
        text: str = "what are your opening hours?",
        latencies_ms: Sequence[float] = (20.0, 45.0, 120.0, 300.0),
    ) -> TrafficReport:
        """Offer a constant ``rate`` of messages for ``duration`` simulated seconds.

        Most messages are **counted, not processed**: every ``step`` seconds the
        messages arriving in that step are applied in aggregate to each bot's
        real metrics collector (through its metrics actor), as answered text
        messages with response times taken in turn from ``latencies_ms``.  No
        reply is sent for them, the fake Graph API never sees them and no
        ``message:processed`` exists for them.  Every ``sample_every``-th
        message (None: none) goes the whole real way instead, as a signed
        webhook from :meth:`user` ``(j % population)`` at the moment it
        arrives.  Everything downstream of the collectors (``metrics:update``,
        the admin API's aggregation, hourly rollups, history, dashboards) sees
        the full volume.  Counted messages come round-robin from users
        ``0 .. population - 1``, each with the bot :meth:`user` gives it.

        Counted messages are recorded at the start of their step, so they land
        in the second, minute and hour they arrive in when the traffic starts
        on a whole second and ``step`` divides 60.  Consecutive calls continue
        one another (the sampling, the users' turns).  See
        :mod:`essen.testing._traffic` for the model.

        Returns at the end of ``duration`` (Trio time), once every sampled
        webhook has been accepted (a stopped bot's are retried every second,
        as Facebook would, until it is back).  Cancelling stops the traffic
        where it is; what was counted stays counted.

        Returns:
            What was offered, counted and sampled (``offered`` is
            ``round(rate * duration)``; ``undelivered`` are counted messages
            for a bot that was stopped, counted nowhere).

        Raises:
            ValueError: a rate, duration or step that is not positive, an
                empty ``latencies_ms``, ``sample_every < 1``, a population
                outside ``[1, 1_000_000]``.
        """
        if self._traffic is None:
            key = self._bot_settings(0).pseudonym_key.get_secret_value().encode()
            self._traffic = TrafficState(key)
        return await drive(
            self,
            self._traffic,
            rate=rate,
            duration=duration,
            sample_every=sample_every,
            population=population,
            step=step,
            text=text,
            latencies_ms=latencies_ms,
        )

    async def rest(self, path: str, **params: str) -> httpx.Response:
        """GET an admin API REST route as a logged-in dashboard does (a bearer token).

        ``path`` is the route as the dashboard calls it, e.g.
        ``/api/monitoring/metrics`` with ``range="24h"``.
        """
        token = self.tokens.issue(
            "admin", now_wall=self.wall.now(), jti=f"harness-rest-{self.seed}"
        ).token
        return await self._admin_http.get(
            path, params=params, headers={"Authorization": f"Bearer {token}"}
        )

    async def metrics(self) -> dict[str, Any]:
        """The admin API's merged metrics now."""
        assert self.admin is not None, "the admin API is stopped"
        send = self.admin.hub.ingest
        result: dict[str, Any] = await ask(send, "metrics")  # type: ignore[arg-type]
        return result

    async def health(self) -> dict[str, Any]:
        assert self.admin is not None, "the admin API is stopped"
        result: dict[str, Any] = await ask(self.admin.hub.ingest, "health")  # type: ignore[arg-type]
        return result

    # -- dashboards -------------------------------------------------------------

    async def add_dashboard(self) -> Dashboard:
        index = len(self.dashboards)
        name = f"dashboard-{index + 1}"
        network = MemoryNetwork(
            self.admin_switch,
            trace=self.trace.recorder(name),
            client_addr=("10.0.1.1", 40000 + index),
            nursery=self.nursery,
        )
        # A fixed jti: a random one would make the trace differ from run to run.
        token = self.tokens.issue(
            "admin", now_wall=self.wall.now(), jti=f"harness-{self.seed}-{index}"
        ).token
        client = SocketIOClient(
            "http://admin.test",
            ClientOptions(
                path="/api/socket.io/",
                auth={"token": token},
                transports=("websocket",),
                backoff=BackoffPolicy(0.5, 2.0, 5.0, 0.5),
            ),
            network=network,
            rng=random.Random(self.seed * 100 + index),
        )
        dashboard = Dashboard(name, client)
        for event in ("message:processed", "metrics:update", "health:changed"):
            client.on(event)(partial(self._record, dashboard, event))
        self.dashboards.append(dashboard)
        await self.nursery.start(client.run)
        self.nursery.start_soon(self._keep_subscribed, dashboard)
        return dashboard

    @staticmethod
    async def _record(dashboard: Dashboard, event: str, payload: Any, *_: Any) -> None:
        dashboard.events.append((trio.current_time(), event, payload))
        match event:
            case "message:processed":
                dashboard.feed.append(payload)
            case "metrics:update":
                dashboard.metrics.append(payload)
            case "health:changed":
                dashboard.health.append(payload)
            case _:
                pass

    async def _keep_subscribed(self, dashboard: Dashboard) -> None:
        """(Re)subscribe on every connection, as the real dashboard does."""
        client = dashboard.client
        while True:
            await client.wait_status(lambda s: s.state is ClientState.CONNECTED)
            with contextlib.suppress(Exception):
                with trio.move_on_after(10):
                    ack = await client.call("subscribe", "monitoring")
                    if ack and isinstance(ack[0], dict) and ack[0].get("ok"):
                        dashboard.snapshots.append(ack[0]["snapshot"])
            await client.wait_status(lambda s: s.state is not ClientState.CONNECTED)

    async def settle(self) -> None:
        """Let everything that is due happen (all tasks blocked at the current time)."""
        await trio.testing.wait_all_tasks_blocked()


@contextlib.asynccontextmanager
async def system(
    *,
    seed: int = 0,
    bots: int = 1,
    dashboards: int = 1,
    trace_limit: int = 1_000_000,
    metrics_interval: float = 5.0,
) -> AsyncIterator[System]:
    """Start a whole system in this Trio run (use it under MockClock); see the module docstring.

    Args:
        seed: fixes every random choice and Trio's scheduling order.
        bots, dashboards: how many of each to start.
        trace_limit: entries the trace keeps (the oldest are dropped beyond it).
        metrics_interval: seconds between a bot's ``metrics:update`` (the
            production default, 5 s, unless given); the admin API's stale and
            down thresholds stay 3 and 12 times it (15 s and 60 s at least).
            Each update costs ~3 ms of CPU along the whole path (snapshot,
            uplink, validation, aggregation, fan-out, dashboard), so a long
            simulated run may choose a longer interval.
    """
    with deterministic_scheduling(seed):
        async with trio.open_nursery() as nursery:
            trace = Trace(t0=trio.current_time(), limit=trace_limit)
            s = System(seed, nursery, trace, metrics_interval)
            await s.start_admin()
            for index in range(bots):
                switch = _Switch()
                webhook = httpx.AsyncClient(
                    transport=TracingTransport(
                        httpx.ASGITransport(app=switch), trace, f"facebook→bot-{index + 1}"
                    ),
                    base_url=f"http://bot-{index + 1}.test",
                )
                uplink = MemoryNetwork(
                    s.admin_switch,
                    trace=trace.recorder(f"bot-{index + 1}"),
                    client_addr=("10.0.0.1", 30000 + index),
                    nursery=nursery,
                )
                s.bots.append(_BotNode(index, switch, uplink, webhook))
                await s.start_bot(index)
            for _ in range(dashboards):
                await s.add_dashboard()
            try:
                yield s
            finally:
                for dashboard in s.dashboards:
                    await dashboard.client.aclose()
                for node in s.bots:
                    await node.webhook.aclose()
                    await node.uplink.aclose()
                await s.graph_http.aclose()
                await s._admin_http.aclose()
                nursery.cancel_scope.cancel()
