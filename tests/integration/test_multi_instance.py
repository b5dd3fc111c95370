"""Several admin instances as one fleet, as real processes behind a load balancer.

The issue's proof of the scale-out design (DESIGN D5), every piece a real
process on loopback, configured only through the environment, as on App
Platform:

* PostgreSQL (the machine's; a fresh database per run) holds the admin
  account, made with ``essen create-admin --password-stdin``;
* a private ``redis-server`` (the test stops and restarts it);
* two ``essen admin`` (``admin-a``, ``admin-b``) sharing that database, that
  Redis (a channel of their own per run: ``ESSEN_CLUSTER``) and the secrets;
* the fake Graph API (``bench/servers/fake_graph_server.py``);
* two ``essen bot`` (``bot-east``, ``bot-west``; WebSocket-only uplinks);
* :class:`~tests.integration._balancer.RoundRobin`, a TCP balancer with no
  stickiness: bots and dashboards reach the admins *only* through it;
* five dashboards: four of our Socket.IO client and one of the page's own
  modules with the official ``socket.io-client`` in Node (see
  :mod:`tests.integration._dashboards`).

Phase 1, normal operation: signed webhooks to both bots reach every
dashboard exactly once whichever instance it is on, and the merged
``totals.received`` equals what the two bots received.  Phase 2, Redis
outage: both instances report ``redis`` degraded, each keeps serving its
own bot's events to its own dashboards (and only those: the partition is
real), and both heal when Redis is back, after which events cross again.
Phase 3, ``kill -9`` of the instance the Node dashboard is on (so the
official client's failover is part of every run): the bot on it and all
its dashboards reconnect through the balancer to the survivor and
resynchronise from its snapshot.  Events sent while the orphaned bot is
cut off (it keeps them until acknowledged) reach every dashboard, live or in the survivor's
snapshot; events sent once everything is back arrive live everywhere; the
merged ``totals.received`` is right again; no dashboard ever got an event
twice, live or in the feed it shows.

Every wait is for a line of output or an event, bounded by ``fail_after``.
PostgreSQL missing: the test fails under ``CI=true`` (CI starts it) and
skips elsewhere; a missing ``redis-server`` or ``node`` fails it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import trio
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from tests.harness.admin_rig import JWT_SECRET, PASSWORD, PSEUDONYM_KEY, USERNAME
from tests.harness.bot_rig import (
    APP_SECRET,
    PAGE_TOKEN,
    SERVICE_SECRET,
    signed,
    text_event,
    webhook_body,
)
from tests.integration._balancer import RoundRobin
from tests.integration._dashboards import DASHBOARD_DIR, Board, Key, NodeDashboard, PyDashboard
from tests.integration._processes import ESSEN, ROOT, Child, explain_timeouts, service_env
from tests.integration._redis import RedisProcess

pytestmark = pytest.mark.integration

#: libpq key/values of the server (as tests/integration/test_store_postgres.py).
POSTGRES = os.environ.get(
    "ESSEN_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres connect_timeout=3"
)
FAKE_GRAPH = ROOT / "bench" / "servers" / "fake_graph_server.py"
DEBUG_TOKEN = "debug-" + "d" * 32
VERIFY_TOKEN = "verify-" + "v" * 32
ADMINS = ("admin-a", "admin-b")
BOTS = ("bot-east", "bot-west")
#: The whole test; each step has a tighter bound of its own.
WHOLE_TEST = 100.0
START = 30.0
STEP = 15.0

_ADMIN_READY = re.compile(r"admin-api (\S+) listening on http://\S+:(\d+)")
_BOT_READY = re.compile(r"facebook-bot (\S+) listening on http://\S+:(\d+)")
_BOT_CONNECTED = "Connected to admin backend"
_GRAPH_READY = re.compile(r"^READY (http://\S+)")


def _received_from(bot: str) -> re.Pattern[str]:
    """The line an admin logs for a snapshot from a bot connected *to it* (not via Redis)."""
    return re.compile(rf"Received metrics:update from bot {re.escape(bot)}$")


def event_id(mid: str) -> str:
    """The id a bot publishes a Messenger message under (``essen.actors.webhook``)."""
    return hashlib.blake2b(f"mid:{mid}".encode(), digest_size=12).hexdigest()


# -- what the machine must provide ----------------------------------------------------


def _postgres_server() -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(f"{POSTGRES} dbname=postgres", autocommit=True)


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL, dropped afterwards (also if in use)."""
    try:
        with _postgres_server() as connection:
            connection.execute("SELECT 1")
    except psycopg.OperationalError as error:
        message = f"PostgreSQL is not reachable ({POSTGRES}): {error}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: the multi-instance test must run)")
        pytest.skip(f"{message}; start it (e.g. `pg_ctlcluster 15 main start`) to run this")
    name = f"essen_test_multi_{uuid.uuid4().hex[:12]}"
    with _postgres_server() as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(POSTGRES)
    user = params.get("user", "postgres")
    host = params.get("host", "127.0.0.1")
    port = params.get("port", "5432")
    try:
        yield f"postgresql://{user}@{host}:{port}/{name}"
    finally:
        with _postgres_server() as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisProcess]:
    (tmp_path / "redis").mkdir()
    server = RedisProcess(tmp_path / "redis")  # fails the test if redis-server is missing
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def node() -> str:
    executable = shutil.which("node")
    if executable is None:
        pytest.fail("node is not on PATH (the Node dashboard needs Node >= 20)")
    if not (DASHBOARD_DIR / "node_modules" / "socket.io-client").is_dir():
        pytest.fail(f"socket.io-client is not installed: run `npm ci` in {DASHBOARD_DIR}")
    return executable


# -- the fleet ----------------------------------------------------------------------------


@dataclass
class Fleet:
    """The processes of one run, and what the test sent through them."""

    nursery: trio.Nursery
    logs: Path
    data: Path
    database_url: str
    redis_url: str
    cluster: str = field(default_factory=lambda: f"multi-{uuid.uuid4().hex[:12]}")
    graph_url: str = ""
    admins: dict[str, Child] = field(default_factory=dict)
    admin_ports: dict[str, int] = field(default_factory=dict)
    bots: dict[str, Child] = field(default_factory=dict)
    bot_urls: dict[str, str] = field(default_factory=dict)
    children: list[Child] = field(default_factory=list)
    #: Every (bot instance, event id) of an incoming message sent, per phase.
    sent: dict[str, set[Key]] = field(default_factory=dict)
    _run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def _child(self, name: str, argv: list[str], **env: str | int | float) -> Child:
        child = Child(
            name,
            argv,
            env=service_env(ESSEN_ENV="development", **env),
            log_path=self.logs / f"{name}.log",
        )
        self.children.append(child)
        return child

    def _admin_env(self, data: str) -> dict[str, str | int | float]:
        return {
            "ESSEN_DATA_DIR": str(self.data / data),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "ESSEN_CLUSTER": self.cluster,
            "JWT_SECRET": JWT_SECRET,
            "BOT_SERVICE_SECRET": SERVICE_SECRET,
        }

    async def create_admin(self) -> None:
        """``essen create-admin NAME --password-stdin``, as an operator makes the account."""
        result = await trio.run_process(
            [*ESSEN, "create-admin", USERNAME, "--password-stdin"],
            stdin=(PASSWORD + "\n").encode(),
            capture_stdout=True,
            stderr=subprocess.STDOUT,
            env=service_env(ESSEN_ENV="development", **self._admin_env("create-admin")),
            cwd=ROOT,
            check=False,
        )
        output = result.stdout.decode()
        (self.logs / "create-admin.log").write_text(output)
        assert result.returncode == 0, output
        assert "created in postgresql" in output, output

    async def start_graph(self) -> None:
        graph = self._child(
            "fake-graph",
            [sys.executable, str(FAKE_GRAPH), "--port", "0", "--token", PAGE_TOKEN],
        )
        await self.nursery.start(graph.run)
        self.graph_url = (await graph.wait_for(_GRAPH_READY)).group(1)

    async def start_admin(self, name: str) -> None:
        admin = self._child(
            name, [*ESSEN, "admin"], PORT=0, ADMIN_INSTANCE=name, **self._admin_env(name)
        )
        self.admins[name] = admin
        await self.nursery.start(admin.run)
        ready = await admin.wait_for(_ADMIN_READY)
        assert ready.group(1) == name
        self.admin_ports[name] = int(ready.group(2))

    async def start_bot(self, name: str, balancer_url: str) -> None:
        bot = self._child(
            name,
            [*ESSEN, "bot"],
            PORT=0,
            BOT_INSTANCE=name,
            ESSEN_DATA_DIR=str(self.data / name),
            ADMIN_BACKEND_URL=balancer_url,
            ADMIN_SOCKET_TRANSPORTS="websocket",
            BOT_SERVICE_SECRET=SERVICE_SECRET,
            FB_GRAPH_URL=self.graph_url,
            FB_PAGE_ACCESS_TOKEN=PAGE_TOKEN,
            FB_APP_SECRET=APP_SECRET,
            FB_VERIFY_TOKEN=VERIFY_TOKEN,
            DEBUG_TOKEN=DEBUG_TOKEN,
            PSEUDONYM_KEY=PSEUDONYM_KEY,
            METRICS_INTERVAL=1,
        )
        self.bots[name] = bot
        await self.nursery.start(bot.run)
        ready = await bot.wait_for(_BOT_READY)
        self.bot_urls[name] = f"http://127.0.0.1:{ready.group(2)}"
        await bot.wait_for(_BOT_CONNECTED)

    async def admin_of(self, bot: str, *, start: dict[str, int] | None = None) -> str:
        """The admin instance ``bot`` is connected to, from the admins' own logs."""
        found: list[str] = []
        async with trio.open_nursery() as nursery:

            async def watch(name: str, admin: Child) -> None:
                await admin.wait_for(_received_from(bot), start=(start or {}).get(name, 0))
                found.append(name)
                nursery.cancel_scope.cancel()

            for name, admin in self.admins.items():
                if admin.running:
                    nursery.start_soon(watch, name, admin)
        return found[0]

    async def send(self, phase: str, bot: str, users: int, per_user: int) -> set[Key]:
        """Signed webhooks from ``users`` people, ``per_user`` messages each, to ``bot``."""
        keys: set[Key] = set()
        async with httpx.AsyncClient(base_url=self.bot_urls[bot]) as http:
            for user in range(users):
                psid = f"{24000 + BOTS.index(bot) * 100 + user:016d}"
                for n in range(per_user):
                    mid = f"m_{self._run}_{phase}_{bot}_{user}_{n}"
                    body = webhook_body(text_event(psid, mid, "opening hours?", 1_700_000_000_000))
                    response = await http.post("/webhook", content=body, headers=signed(body))
                    assert response.status_code == 200, response.text
                    keys.add((bot, event_id(mid)))
        self.sent.setdefault(phase, set()).update(keys)
        return keys

    async def bots_received(self) -> int:
        """What the bots say they received (their own ``/debug/metrics``), summed."""
        total = 0
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {DEBUG_TOKEN}"}) as http:
            for url in self.bot_urls.values():
                response = await http.get(f"{url}/debug/metrics")
                assert response.status_code == 200, response.text
                total += response.json()["totals"]["received"]
        return total


@contextmanager
def step(what: str, seconds: float, fleet: Fleet) -> Iterator[None]:
    """One bounded step; a timeout says which and shows the processes' last lines."""
    with explain_timeouts(what, fleet.children), trio.fail_after(seconds):
        yield


def seeing(keys: set[Key]) -> Callable[[Board], bool]:
    """Until a dashboard has had each of ``keys`` live."""
    return lambda board: board.sees(keys)


def knowing(keys: set[Key]) -> Callable[[Board], bool]:
    """Until a dashboard has had each of ``keys``, live or in a snapshot."""
    return lambda board: board.knows(keys)


def redis_reports(board: Board, status: str) -> set[str]:
    """The admin instances whose ``redis`` component went ``status``, as ``board`` heard it."""
    return {
        change["instance"]
        for change in board.health_changes
        if change["component"] == "redis" and change["status"] == status
    }


def no_duplicates(boards: list[Board]) -> None:
    for board in boards:
        assert board.duplicates() == {}, f"{board.name} got events twice: {board.duplicates()}"
        assert board.snapshot_duplicates == [], f"{board.name}: {board.snapshot_duplicates}"
        assert board.errors == [], f"{board.name}: {board.errors}"


# -- the test -------------------------------------------------------------------------------


async def test_two_admins_share_one_fleet_through_redis_and_survive_a_kill(
    tmp_path: Path, database_url: str, redis: RedisProcess, node: str
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    with trio.fail_after(WHOLE_TEST):
        async with trio.open_nursery() as nursery:
            fleet = Fleet(nursery, logs, tmp_path / "data", database_url, redis.url)

            # -- start: everything that does not depend on anything else at once
            with step("starting PostgreSQL account, fake Graph API, admins", START, fleet):
                async with trio.open_nursery() as starting:
                    starting.start_soon(fleet.create_admin)
                    starting.start_soon(fleet.start_graph)
                    for name in ADMINS:
                        starting.start_soon(fleet.start_admin, name)
            balancer = RoundRobin([("127.0.0.1", fleet.admin_ports[name]) for name in ADMINS])
            admin_at = {("127.0.0.1", port): name for name, port in fleet.admin_ports.items()}
            balancer_url = f"http://127.0.0.1:{await nursery.start(balancer.serve)}"

            with step("starting the bots", START, fleet):
                # Started together, their first connections are consecutive:
                # round robin sends them to different instances.
                async with trio.open_nursery() as starting:
                    for name in BOTS:
                        starting.start_soon(fleet.start_bot, name, balancer_url)
                home = {bot: await fleet.admin_of(bot) for bot in BOTS}
            assert set(home.values()) == set(ADMINS), f"both bots on one instance: {home}"

            # Logins share one keep-alive connection, so the dashboards' own
            # connections alternate between the instances.
            async with httpx.AsyncClient() as login_http:
                boards: list[Board] = [
                    PyDashboard(
                        f"py-{n}",
                        balancer_url,
                        username=USERNAME,
                        password=PASSWORD,
                        http=login_http,
                    )
                    for n in range(1, 5)
                ]
                boards.append(
                    NodeDashboard(
                        "node-1",
                        balancer_url,
                        username=USERNAME,
                        password=PASSWORD,
                        node=node,
                        log_dir=logs,
                    )
                )
                fleet.children += [b.child for b in boards if isinstance(b, NodeDashboard)]
                with step("connecting the dashboards", START, fleet):
                    for board in boards:
                        await nursery.start(board.run)

            def on(board: Board) -> str:
                backend = balancer.backend_of(board.name)
                assert backend is not None, board.name
                return admin_at[backend]

            placement = {board.name: on(board) for board in boards}
            assert set(placement.values()) == set(ADMINS), f"dashboards on one side: {placement}"

            # -- phase 1: every dashboard sees every bot's events once, metrics agree
            with step("phase 1: events and metrics on every dashboard", STEP, fleet):
                expected: set[Key] = set()
                for bot in BOTS:
                    expected |= await fleet.send("normal", bot, users=3, per_user=2)
                for board in boards:
                    await board.wait_until(seeing(expected))
                total = await fleet.bots_received()
                assert total == len(expected) == 12
                for board in boards:
                    await board.wait_until(lambda b: b.latest_received == total)
            no_duplicates(boards)

            # -- phase 2: Redis away, each instance on its own; back, together again
            redis.stop()
            with step("phase 2: redis degraded everywhere", STEP, fleet):
                for board in boards:
                    await board.wait_until(
                        lambda b: (
                            b.components.get("redis") == "degraded"
                            and bool(redis_reports(b, "degraded"))
                        )
                    )
            for board in boards:
                # Each instance's own Redis connection, not the other's (not replicated).
                assert redis_reports(board, "degraded") == {placement[board.name]}, board.name

            with step("phase 2: each instance serves its own bot's events", STEP, fleet):
                during = {bot: await fleet.send("outage", bot, users=1, per_user=2) for bot in BOTS}
                for board in boards:
                    own = next(
                        keys for bot, keys in during.items() if home[bot] == placement[board.name]
                    )
                    await board.wait_until(seeing(own))
            for board in boards:
                for bot in BOTS:
                    if placement[board.name] != home[bot]:
                        crossed = [key for key in during[bot] if board.live[key]]
                        assert crossed == [], f"{board.name} got {bot}'s events without Redis"

            with step("phase 2: redis back, healthy everywhere", STEP, fleet):
                await trio.to_thread.run_sync(redis.start)
                for board in boards:
                    await board.wait_until(lambda b: b.components.get("redis") == "healthy")
            with step("phase 2: events cross instances again", STEP, fleet):
                healed: set[Key] = set()
                for bot in BOTS:
                    healed |= await fleet.send("healed", bot, users=1, per_user=2)
                for board in boards:
                    await board.wait_until(seeing(healed))
            no_duplicates(boards)

            # -- phase 3: kill -9 the Node dashboard's instance; everything on it fails over
            victim = placement["node-1"]
            survivor = next(name for name in ADMINS if name != victim)
            orphan = next(bot for bot in BOTS if home[bot] == victim)
            moved = [board for board in boards if placement[board.name] == victim]
            assert any(isinstance(board, PyDashboard) for board in moved), placement
            syncs_before = {board.name: board.syncs for board in boards}
            placements_before = len(balancer.placements)
            bot_mark = fleet.bots[orphan].mark()
            survivor_mark = {survivor: fleet.admins[survivor].mark()}
            fleet.admins[victim].kill()
            with step("phase 3: events sent while the bot is cut off", STEP, fleet):
                await fleet.admins[victim].wait_ended()
                # The orphaned bot lost its uplink the moment the balancer closed
                # it with the backend: it keeps each batch until an admin
                # acknowledges it, so these reach the survivor once it is back.
                cut_off: set[Key] = set()
                for bot in BOTS:
                    cut_off |= await fleet.send("cut-off", bot, users=1, per_user=2)
            with step("phase 3: bot and dashboards reconnect to the survivor", STEP, fleet):
                await fleet.bots[orphan].wait_for(_BOT_CONNECTED, start=bot_mark)
                assert await fleet.admin_of(orphan, start=survivor_mark) == survivor
                for board in moved:
                    await board.wait_until(lambda b: b.syncs > syncs_before[b.name])
                    placed = await balancer.wait_placed(board.name, after=placements_before)
                    assert admin_at[placed.backend] == survivor
            assert all(
                board.syncs == syncs_before[board.name] for board in boards if board not in moved
            )

            with step("phase 3: events after the kill reach every dashboard", STEP, fleet):
                # Sent while a moved dashboard was resynchronising, an event may
                # come live or in the survivor's snapshot: either way, once.
                for board in boards:
                    await board.wait_until(knowing(cut_off))
                after: set[Key] = set()
                for bot in BOTS:
                    after |= await fleet.send("after-kill", bot, users=2, per_user=2)
                for board in boards:
                    await board.wait_until(seeing(after))
                total = await fleet.bots_received()
                assert total == sum(len(keys) for keys in fleet.sent.values())
                for board in boards:
                    await board.wait_until(lambda b: b.latest_received == total)

            no_duplicates(boards)
            for board in boards:
                view = await board.merged_view()
                assert len(view) == len(set(view)), f"{board.name} shows an event twice"
                missing = (cut_off | after) - set(view)
                assert not missing, (
                    f"{board.name}'s feed lacks {len(missing)} events after the kill"
                )
            nursery.cancel_scope.cancel()
