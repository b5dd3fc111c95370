"""Two admin API instances sharing one fleet through real Redis pub/sub.

Both instances listen on loopback (WebSocket-only, as when ``REDIS_URL`` is
set), share one store (as two App Platform instances share PostgreSQL), and a
"bot" — our Socket.IO client authenticated as the service, sending the
contract payloads — connects to one of them.  Dashboards on the *other*
instance must see its events exactly once, the merged metrics must be the
same on both, a logout on one must refuse the token on the other, and losing
Redis must degrade health, keep each instance serving its own clients, and
heal when Redis is back.

The first test uses the machine's Redis (127.0.0.1:6379; under ``CI=true`` a
missing Redis fails the test).  The outage test stops and restarts a private
``redis-server`` on a free port instead: stopping the machine's own would
pull it from under everything else running here.  Every wait is on an event
or a line, bounded.
"""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from essen.admin.service import AdminHandles, run_admin
from essen.clock import SystemWallClock
from essen.events import Histogram, MessageBatch, MessageProcessed, MetricsSnapshot
from essen.realtime.client import ClientOptions, SocketIOClient
from essen.testing import MemoryStore
from tests.harness.admin_rig import (
    CHEAP_PASSWORDS,
    PASSWORD,
    USERNAME,
    Dashboard,
    admin_settings,
    closed_by_server,
)
from tests.harness.bot_rig import SERVICE_SECRET
from tests.integration._redis import RedisProcess

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

DEADLINE = 20.0


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- a small fleet ------------------------------------------------------------------


def snapshot(instance: str, received: int) -> dict[str, Any]:
    now = SystemWallClock().now()
    return MetricsSnapshot(
        instance=instance,
        at=now,
        started_at=now - 60,
        uptime_s=60.0,
        totals={"received": received, "answered": received},
        windows={},
        send_api=Histogram(),
        per_minute=(),
    ).model_dump(mode="json")


def batch(instance: str, *ids: str, user: str = "u_cluster0001") -> dict[str, Any]:
    events = tuple(
        MessageProcessed(
            instance=instance,
            id=event_id,
            user=user,
            kind="text",
            direction="in",
            preview="hello",
            outcome="answered",
            at=SystemWallClock().now(),
        )
        for event_id in ids
    )
    return MessageBatch(instance=instance, events=events).model_dump(mode="json")


class Fleet:
    def __init__(self, nursery: trio.Nursery, tmp_path: Path, redis_url: str) -> None:
        self.nursery = nursery
        self.tmp_path = tmp_path
        self.redis_url = redis_url
        self.cluster = f"test-{uuid.uuid4().hex[:12]}"  # channels of its own on a shared Redis
        self.store = MemoryStore(SystemWallClock())

    async def admin(self, name: str) -> AdminHandles:
        settings = admin_settings(
            self.tmp_path / name,
            admin_instance=name,
            redis_url=self.redis_url,
            essen_cluster=self.cluster,
        )
        assert settings.transports == ("websocket",)
        handles: AdminHandles = await self.nursery.start(
            partial(
                run_admin,
                settings,
                host="127.0.0.1",
                passwords=CHEAP_PASSWORDS,
                store=self.store,
            )
        )
        return handles

    async def login(self, admin: AdminHandles) -> str:
        async with httpx.AsyncClient(base_url=admin.urls[0]) as http:
            response = await http.post(
                "/api/auth/login", json={"username": USERNAME, "password": PASSWORD}
            )
            assert response.status_code == 200, response.text
            token: str = response.json()["token"]
            return token

    async def dashboard(
        self, admin: AdminHandles, token: str, *, subscribe: bool = True
    ) -> Dashboard:
        client = SocketIOClient(
            admin.urls[0],
            ClientOptions(path="/api/socket.io/", transports=("websocket",), auth={"token": token}),
        )
        board = Dashboard(client, SystemWallClock())
        await self.nursery.start(client.run)
        await client.wait_connected()
        if subscribe:
            ack = (await board.call("subscribe", "monitoring"))[0]
            assert ack["ok"] is True, ack
            board.snapshot = ack["snapshot"]
        return board

    async def bot(self, admin: AdminHandles, instance: str) -> SocketIOClient:
        client = SocketIOClient(
            admin.urls[0],
            ClientOptions(
                path="/api/socket.io/",
                transports=("websocket",),
                auth={"service": "bot", "secret": SERVICE_SECRET, "instance": instance},
            ),
        )
        await self.nursery.start(client.run)
        await client.wait_connected()
        return client


def status_of(board: Dashboard, component: str) -> str | None:
    """What the dashboard shows for ``component``: its snapshot, then what changed since."""
    status = None
    for entry in (board.snapshot or {}).get("health", []):
        if entry["component"] == component:
            status = entry["status"]
    for seen in board.health(component):
        status = seen.payload["status"]
    return status


def feed_ids(board: Dashboard) -> list[str]:
    return [event["id"] for event in board.events("message:processed")]


def received_total(board: Dashboard) -> int | None:
    updates = board.events("metrics:update")
    return updates[-1]["totals"].get("received") if updates else None


@asynccontextmanager
async def running(tmp_path: Path, redis_url: str) -> AsyncIterator[Fleet]:
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            fleet = Fleet(nursery, tmp_path, redis_url)
            await fleet.store.create_admin(USERNAME, CHEAP_PASSWORDS.hash(PASSWORD))
            yield fleet
            nursery.cancel_scope.cancel()


# -- tests ------------------------------------------------------------------------------


async def test_events_cross_instances_once_and_metrics_agree(
    tmp_path: Path, machine_redis: str
) -> None:
    async with running(tmp_path, machine_redis) as fleet:
        a, b = await fleet.admin("admin-a"), await fleet.admin("admin-b")
        token = await fleet.login(a)
        on_a, on_b = await fleet.dashboard(a, token), await fleet.dashboard(b, token)
        for board in (on_a, on_b):
            await board.wait_until(lambda d: status_of(d, "redis") == "healthy")

        bot_a = await fleet.bot(a, "bot-east")
        bot_b = await fleet.bot(b, "bot-west")
        assert (await bot_a.call("message:processed", batch("bot-east", "e-1", "e-2")))[0]["ok"]
        assert (await bot_b.call("message:processed", batch("bot-west", "w-1")))[0]["ok"]
        # A bot resending a batch (its ack was lost) must not show twice anywhere.
        assert (await bot_a.call("message:processed", batch("bot-east", "e-2")))[0]["ok"]
        assert (await bot_a.call("metrics:update", snapshot("bot-east", 7)))[0]["ok"]
        assert (await bot_b.call("metrics:update", snapshot("bot-west", 5)))[0]["ok"]

        for board in (on_a, on_b):
            await board.wait_until(lambda d: len(feed_ids(d)) >= 3 and received_total(d) == 12)
            assert sorted(feed_ids(board)) == ["e-1", "e-2", "w-1"]
            assert status_of(board, "bot:bot-east") == "healthy"
            assert status_of(board, "bot:bot-west") == "healthy"

        # Rooms across instances: a conversation watched on B (by a socket not
        # in "monitoring") gets A's bot's events for that user, and no others.
        watcher = await fleet.dashboard(b, token, subscribe=False)
        joined = (await watcher.call("conversation:join", "u_cluster0001"))[0]
        assert joined["ok"] is True
        assert {e["id"] for e in joined["history"]} == {"e-1", "e-2", "w-1"}
        assert (await bot_a.call("message:processed", batch("bot-east", "x-1", user="u_other")))[0][
            "ok"
        ]
        assert (await bot_a.call("message:processed", batch("bot-east", "e-3")))[0]["ok"]
        await watcher.wait_until(lambda d: "e-3" in feed_ids(d))
        assert feed_ids(watcher) == ["e-3"]
        for board in (on_a, on_b):
            await board.wait_until(lambda d: "e-3" in feed_ids(d))
            assert sorted(feed_ids(board)) == ["e-1", "e-2", "e-3", "w-1", "x-1"]

        # The REST view agrees, whichever instance answers.
        async with httpx.AsyncClient() as http:
            polling = await http.get(f"{b.urls[0]}/api/socket.io/?EIO=4&transport=polling")
            assert polling.status_code == 400  # WebSocket only: no sticky sessions
            assert polling.json()["code"] == 0  # "Transport unknown", as socket.io says
            bearer = {"Authorization": f"Bearer {token}"}
            views = [
                (await http.get(f"{admin.urls[0]}/api/monitoring/metrics", headers=bearer)).json()
                for admin in (a, b)
            ]
        assert views[0]["totals"] == views[1]["totals"]
        assert views[0]["totals"]["received"] == 12

        # Logging out on A drops the token's dashboards on both instances and
        # refuses the token on B too, with the reason.
        async with httpx.AsyncClient(base_url=a.urls[0]) as http:
            response = await http.post(
                "/api/auth/logout", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code in (200, 204)
        for board in (on_a, on_b, watcher):
            await board.wait_until(lambda d: bool(d.events("auth:expired")))
            assert board.events("auth:expired") == [{"reason": "token revoked"}]
            await board.client.wait_status(lambda _, c=board.client: closed_by_server(c))
        async with httpx.AsyncClient(base_url=b.urls[0]) as http:
            refused = await http.get(
                "/api/monitoring/metrics", headers={"Authorization": f"Bearer {token}"}
            )
        assert refused.status_code == 401
        assert "revoked" in refused.text


async def test_losing_redis_degrades_health_and_heals_when_it_returns(
    tmp_path: Path, private_redis: RedisProcess
) -> None:
    async with running(tmp_path, private_redis.url) as fleet:
        a, b = await fleet.admin("admin-a"), await fleet.admin("admin-b")
        token = await fleet.login(a)
        on_a, on_b = await fleet.dashboard(a, token), await fleet.dashboard(b, token)
        for board in (on_a, on_b):
            await board.wait_until(lambda d: status_of(d, "redis") == "healthy")
        bot_a = await fleet.bot(a, "bot-east")

        private_redis.stop()
        for board in (on_a, on_b):
            await board.wait_until(lambda d: status_of(d, "redis") == "degraded")
        reason = on_a.health("redis")[-1].payload["reason"]
        assert "Redis unreachable" in reason
        assert "ExceptionGroup" not in reason  # the cause itself, not its wrapping
        assert "ConnectionError" in reason
        assert "retrying in" in reason

        # Each instance keeps serving its own clients.
        assert (await bot_a.call("message:processed", batch("bot-east", "during")))[0]["ok"]
        await on_a.wait_until(lambda d: "during" in feed_ids(d))

        private_redis.start()
        for board in (on_a, on_b):
            await board.wait_until(lambda d: status_of(d, "redis") == "healthy")
        assert (await bot_a.call("message:processed", batch("bot-east", "after")))[0]["ok"]
        await on_b.wait_until(lambda d: "after" in feed_ids(d))
        await on_a.wait_until(lambda d: "after" in feed_ids(d))
        for board in (on_a, on_b):
            ids = feed_ids(board)
            assert len(ids) == len(set(ids)), f"duplicates on a dashboard: {ids}"
        assert feed_ids(on_a).count("after") == 1
