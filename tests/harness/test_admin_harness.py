"""The admin API end to end, in-process under MockClock (``admin_rig``): no sockets, exact times.

Two real bots (``run_bot``) report to ``run_admin`` over the memory network;
dashboards are our Socket.IO client logged in with a token; REST goes through
httpx's ASGI transport.  Every wait is on a condition and bounded by
``trio.fail_after``; the only sleeps move the MockClock past a configured
interval (a bot's snapshot period, liveness thresholds, lockout, the rollup
period, the store writer's flush).

The last tests pin bugs found on the way (each docstring says where and why).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from essen.auth.tokens import TokenSettings
from essen.clock import TrioWallClock
from essen.errors import ConnectionRefused
from essen.events import HealthChanged, Histogram, MessageBatch, MessageProcessed, MetricsSnapshot
from essen.realtime._client_engine import GOODBYE_SECONDS
from essen.realtime.client import ClientState

from .admin_rig import (
    ALLOWED_ORIGIN,
    JWT_SECRET,
    PASSWORD,
    USERNAME,
    Dashboard,
    admin_rig,
    closed_by_server,
    user_of,
)
from .bot_rig import SERVICE_SECRET

pytestmark = pytest.mark.harness

#: TrioWallClock's epoch (2026-01-01T00:00:00Z): the admin starts at Trio time 0.
EPOCH = 1_767_225_600.0
#: The ingest actor judges liveness and publishes metrics on this tick.
TICK = 1.0
LIMIT = 120  # seconds of mock time any one test may take


def event_id(mid: str) -> str:
    """The id a bot publishes for an inbound message (a hash of the mid, never the mid)."""
    return hashlib.blake2b(f"mid:{mid}".encode(), digest_size=12).hexdigest()


def keyed(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["instance"], e["id"], e["direction"]) for e in events]


async def wait_events(dashboard: Dashboard, name: str, count: int) -> list[Any]:
    await dashboard.wait_until(lambda d: len(d.events(name)) >= count)
    return dashboard.events(name)


def first_tick_after(moment: float) -> float:
    """The first ingest tick strictly after ``moment`` (ticks at whole seconds from 0)."""
    return math.floor(moment / TICK) * TICK + TICK


def snapshot_for(instance: str, wall: TrioWallClock, received: int = 0) -> dict[str, Any]:
    now = wall.now()
    return MetricsSnapshot(
        instance=instance,
        at=now,
        started_at=now,
        uptime_s=0.0,
        totals={"received": received},
        windows={},
        send_api=Histogram(),
        per_minute=(),
    ).model_dump(mode="json")


def batch_for(instance: str, wall: TrioWallClock, event: str = "e-1") -> dict[str, Any]:
    item = MessageProcessed(
        instance=instance,
        id=event,
        user="u_rogue00001",
        kind="text",
        direction="in",
        preview="hello",
        outcome="answered",
        at=wall.now(),
    )
    return MessageBatch(instance=instance, events=(item,)).model_dump(mode="json")


# -- login, subscribe, snapshot ----------------------------------------------------------


async def test_login_then_a_late_dashboard_gets_the_whole_picture_in_its_snapshot(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(LIMIT):
        async with admin_rig(tmp_path) as rig:
            login = await rig.http.post(
                "/api/auth/login", json={"username": USERNAME, "password": PASSWORD}
            )
            assert login.status_code == 200
            body = login.json()
            assert body["username"] == USERNAME
            assert body["expires_at"] == EPOCH + rig.settings.token_ttl
            token = body["token"]
            # An early dashboard watches everything from the start.
            early = await rig.dashboard(token)
            assert early.snapshot is not None
            assert early.snapshot["feed"] == []
            assert early.snapshot["metrics"]["instances"] == []
            assert {c["component"]: c["status"] for c in early.snapshot["health"]} == {
                "store": "healthy",
                "store:ping": "healthy",
            }
            bot_a = await rig.start_bot("bot-a")
            bot_b = await rig.start_bot("bot-b")
            await bot_a.say("2001", "m_a1")
            await bot_b.say("2002", "m_b1")
            await bot_a.say("2003", "m_a2")
            await wait_events(early, "message:processed", 6)
            await early.wait_until(
                lambda d: any(
                    m["totals"].get("received") == 3 and m["instances_connected"] == 2
                    for m in d.events("metrics:update")
                )
            )
            late = await rig.dashboard(token, path="/socket.io/")
    snapshot = late.snapshot
    assert snapshot is not None
    assert set(snapshot) == {"metrics", "health", "feed"}
    # The feed: every event so far, in the order the early dashboard saw them live.
    assert snapshot["feed"] == early.events("message:processed")
    # The metrics: both bots, the merged totals.
    metrics = snapshot["metrics"]
    assert [row["instance"] for row in metrics["instances"]] == ["bot-a", "bot-b"]
    assert metrics["totals"]["received"] == 3
    assert metrics["windows"]["60m"]["answered"] == 3
    # The health: the latest status of every component the early dashboard saw change,
    # plus the admin's own store.
    latest = {
        s.payload["component"]: s.payload["status"]
        for s in early.seen
        if s.event == "health:changed"
    }
    health = {c["component"]: c["status"] for c in snapshot["health"]}
    assert health == {"store": "healthy", "store:ping": "healthy", **latest}
    assert health["bot:bot-a"] == health["bot:bot-b"] == "healthy"


# -- fan-out from two bots -----------------------------------------------------------------


async def test_every_dashboard_gets_each_event_once_and_metrics_summed_over_the_bots(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    traffic = {
        "bot-a": [("4001", "m_a1"), ("4002", "m_a2"), ("4003", "m_a3"), ("4001", "m_a4")],
        "bot-b": [("4001", "m_b1"), ("4004", "m_b2"), ("4004", "m_b3")],
    }
    total = sum(len(messages) for messages in traffic.values())
    with trio.fail_after(LIMIT):
        async with admin_rig(tmp_path) as rig:
            token = await rig.login()
            watchers = [
                await rig.dashboard(token),
                await rig.dashboard(token, path="/socket.io/"),
                await rig.dashboard(token),
            ]
            # The third also joins a conversation: monitoring + user room must not double.
            joined = await watchers[2].call("conversation:join", user_of("4001"))
            assert joined[0]["ok"] is True
            bots = {name: await rig.start_bot(name) for name in traffic}
            for name, messages in traffic.items():
                for psid, mid in messages:
                    await bots[name].say(psid, mid)
            for watcher in watchers:
                await wait_events(watcher, "message:processed", 2 * total)
            done = trio.current_time()
            # Each bot publishes its snapshot every 5 s: one full period later the
            # admin has the final numbers of both, and publishes them on a tick.
            for watcher in watchers:
                await watcher.wait_until(
                    lambda d: any(
                        s.at >= done + 5 + TICK for s in d.seen if s.event == "metrics:update"
                    )
                )
            own = {name: await bot.handles.metrics.snapshot() for name, bot in bots.items()}
            # Nothing arrives twice, even late.
            await trio.testing.wait_all_tasks_blocked()
    expected_in = {(name, event_id(mid), "in") for name, msgs in traffic.items() for _, mid in msgs}
    expected_out = {(i, e + "-r", "out") for i, e, _ in expected_in}
    for watcher in watchers:
        seen = keyed(watcher.events("message:processed"))
        assert len(seen) == 2 * total
        assert Counter(seen) == Counter(expected_in | expected_out), "each event exactly once"
    # The same order everywhere: one fan-out, one sequence.
    assert keyed(watchers[0].events("message:processed")) == keyed(
        watchers[1].events("message:processed")
    )
    summed: Counter[str] = Counter()
    for snapshot in own.values():
        summed.update(snapshot.totals)
    for watcher in watchers:
        merged = watcher.events("metrics:update")[-1]
        assert merged["totals"] == dict(summed)
        assert merged["totals"]["received"] == total
        assert merged["instances_connected"] == 2
        assert merged["windows"]["60m"]["received"] == sum(
            s.windows["60m"].received for s in own.values()
        )
        assert merged["windows"]["60m"]["answered"] == total
        assert {row["instance"]: row["received"] for row in merged["instances"]} == {
            name: s.windows["1m"].received for name, s in own.items()
        }
        # At most one metrics:update per tick, however many bots report.
        times = [s.at for s in watcher.seen if s.event == "metrics:update"]
        assert all(later - earlier >= TICK for earlier, later in itertools.pairwise(times))


# -- conversations ---------------------------------------------------------------------------


async def test_conversation_join_returns_history_then_only_that_users_live_events(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    alice, bob = "5001", "5002"
    with trio.fail_after(LIMIT):
        async with admin_rig(tmp_path) as rig:
            token = await rig.login()
            monitor = await rig.dashboard(token)
            reader = await rig.dashboard(token, subscribe=False)
            bot_a = await rig.start_bot("bot-a")
            bot_b = await rig.start_bot("bot-b")
            await bot_a.say(alice, "m_1")
            await bot_a.say(bob, "m_2")
            await bot_b.say(alice, "m_3")
            before = await wait_events(monitor, "message:processed", 6)

            refused = await reader.call("conversation:join", "not a user id")
            assert refused == [{"ok": False, "error": "invalid user id"}]
            ack = (await reader.call("conversation:join", user_of(alice)))[0]
            assert ack["ok"] is True
            assert ack["user"] == user_of(alice)
            assert ack["history"] == [e for e in before if e["user"] == user_of(alice)]
            assert len(ack["history"]) == 4

            # Live: bob first (must not reach the reader), then alice (must).
            await bot_b.say(bob, "m_4")
            await wait_events(monitor, "message:processed", 8)
            await bot_a.say(alice, "m_5")
            await wait_events(reader, "message:processed", 2)
            await wait_events(monitor, "message:processed", 10)

            # Leaving stops the stream: alice's next message is not delivered, bob's
            # (whose conversation the reader joins instead) is, and comes after it.
            assert (await reader.call("conversation:leave", user_of(alice))) == [{"ok": True}]
            assert (await reader.call("conversation:join", user_of(bob)))[0]["ok"] is True
            await bot_a.say(alice, "m_6")
            await bot_b.say(bob, "m_7")
            await wait_events(reader, "message:processed", 4)
            await trio.testing.wait_all_tasks_blocked()
    got = keyed(reader.events("message:processed"))
    assert got == [
        ("bot-a", event_id("m_5"), "in"),
        ("bot-a", event_id("m_5") + "-r", "out"),
        ("bot-b", event_id("m_7"), "in"),
        ("bot-b", event_id("m_7") + "-r", "out"),
    ]
    # Not subscribed: no metrics stream for the reader.
    assert reader.events("metrics:update") == []


# -- liveness ----------------------------------------------------------------------------


async def test_a_bot_that_stops_turns_stale_then_down_at_the_configured_times(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    stale_after, down_after = 12.5, 30.0
    with trio.fail_after(LIMIT):
        async with admin_rig(
            tmp_path, bot_stale_after=stale_after, bot_down_after=down_after
        ) as rig:
            token = await rig.login()
            dashboard = await rig.dashboard(token)
            await rig.start_bot("bot-a")
            bot_b = await rig.start_bot("bot-b")
            await dashboard.wait_until(lambda d: len(d.health("bot:bot-b")) == 1)
            await trio.sleep(7.5)  # between two of bot-b's snapshots (every 5 s)
            await bot_b.stop()
            stopped = trio.current_time()
            metrics = await rig.http.get("/api/monitoring/metrics", headers=rig.bearer(token))
            row = next(r for r in metrics.json()["instances"] if r["instance"] == "bot-b")
            last_seen = stopped - row["age_s"]  # when its last snapshot arrived
            await dashboard.wait_until(lambda d: len(d.health("bot:bot-b")) == 3)
            # A restarted process under the same name is healthy again at its first snapshot.
            await rig.start_bot("bot-b")
            await dashboard.wait_until(lambda d: len(d.health("bot:bot-b")) == 4)
            stale_metrics = [
                m for m in dashboard.events("metrics:update") if m["instances_stale"] == 1
            ]
            down_metrics = [
                m for m in dashboard.events("metrics:update") if m["instances_down"] == 1
            ]
    assert last_seen == stopped - 2.5  # bot-b reports at 5, 10, ...; it stopped at 12.5
    healthy, stale, down, back = dashboard.health("bot:bot-b")
    assert healthy.payload["status"] == "healthy"
    assert (stale.payload["status"], stale.payload["previous"]) == ("stale", "healthy")
    assert (down.payload["status"], down.payload["previous"]) == ("down", "stale")
    assert (back.payload["status"], back.payload["previous"]) == ("healthy", "down")
    # Exact under MockClock: the first tick at which the silence exceeds the threshold.
    assert stale.at == first_tick_after(last_seen + stale_after) == 23.0
    assert down.at == first_tick_after(last_seen + down_after) == 41.0
    assert stale.payload["since"] == EPOCH + stale.at
    assert down.payload["since"] == EPOCH + down.at
    assert stale.payload["reason"] == "no metrics for stale threshold"
    assert down.payload["reason"] == "no metrics for down threshold"
    # The other bot never changed; the metrics say the same as the health events.
    assert [s.payload["status"] for s in dashboard.health("bot:bot-a")] == ["healthy"]
    assert stale_metrics
    assert down_metrics
    rows = {r["instance"]: r["status"] for r in down_metrics[0]["instances"]}
    assert rows == {"bot-a": "healthy", "bot-b": "down"}


# -- tokens ------------------------------------------------------------------------------


async def test_an_expired_token_gets_auth_expired_then_the_dashboard_is_disconnected(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(LIMIT):
        async with admin_rig(tmp_path, token_ttl=30.0) as rig:
            token = await rig.login()
            dashboard = await rig.dashboard(token, path="/socket.io/")
            status = await dashboard.client.wait_status(lambda s: s.state is ClientState.CLOSED)
            closed_at = trio.current_time()
            me = await rig.http.get("/auth/me", headers=rig.bearer(token))
            again = rig.client({"token": token})
            with pytest.raises(ConnectionRefused) as refused:
                await again.run()
            rooms = rig.handles.server.statistics()["rooms"]["/"]
            counters = dict(rig.hub_counters)
    assert status.reason == "io server disconnect"
    assert closed_by_server(dashboard.client)
    # Closed once the server's DISCONNECT arrived (plus at most the client's goodbye
    # wait: see test_a_server_disconnect_closes_the_client_at_once).
    assert 30.0 <= closed_at <= 30.0 + GOODBYE_SECONDS
    expired = [s for s in dashboard.seen if s.event == "auth:expired"]
    assert [s.payload for s in expired] == [{"reason": "token expired"}]
    assert expired[0].wall == EPOCH + 30.0
    assert (me.status_code, me.json()) == (401, {"error": "expired"})
    assert refused.value.message == "expired"
    assert "admins" not in rooms
    assert counters["expired_disconnects"] == 1


async def test_refusals_say_why_and_are_counted(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(LIMIT):
        async with admin_rig(tmp_path) as rig:
            now = rig.wall.now()
            ours = TokenSettings(secret=JWT_SECRET, ttl=60)
            cases: list[tuple[dict[str, Any] | None, str]] = [
                (None, "missing"),
                ({"token": ""}, "missing"),
                ({"token": "not.a.jwt"}, "malformed"),
                (
                    {
                        "token": TokenSettings(secret="another-secret-" + "o" * 32)
                        .issue(USERNAME, now_wall=now)
                        .token
                    },
                    "bad_signature",
                ),
                ({"token": ours.issue(USERNAME, now_wall=now - 3600).token}, "expired"),
                (
                    {
                        "token": TokenSettings(secret=JWT_SECRET, audience="someone-else")
                        .issue(USERNAME, now_wall=now)
                        .token
                    },
                    "wrong_audience",
                ),
                (
                    {"service": "bot", "secret": "wrong-" + "w" * 32, "instance": "bot-x"},
                    "invalid service secret",
                ),
                ({"service": "bot", "instance": "bot-x"}, "invalid service secret"),
                (
                    {"service": "metrics", "secret": SERVICE_SECRET, "instance": "bot-x"},
                    "unknown service",
                ),
                (
                    {"service": "bot", "secret": SERVICE_SECRET, "instance": "no spaces!"},
                    "invalid instance name",
                ),
            ]
            reasons = []
            for n, (auth, _) in enumerate(cases):
                client = rig.client(auth, path="/api/socket.io/" if n % 2 else "/socket.io/")
                with pytest.raises(ConnectionRefused) as refused:
                    await client.run()
                reasons.append(refused.value.message)
            counters = dict(rig.hub_counters)
            sockets = rig.handles.server.statistics()["sockets"]["/"]
    assert reasons == [reason for _, reason in cases]
    assert counters["refused"] == len(cases)
    assert counters["admins_connected"] == counters["bots_connected"] == 0
    assert sockets == 0


# -- who may say what ------------------------------------------------------------------------


async def test_roles_and_contracts_nothing_invalid_or_forged_reaches_the_dashboards(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    forbidden = {"ok": False, "error": "forbidden: only bots send metrics:update"}
    mismatch = {"ok": False, "error": "instance does not match the socket"}
    with trio.fail_after(LIMIT):
        async with admin_rig(tmp_path) as rig:
            token = await rig.login()
            dashboard = await rig.dashboard(token)
            wall = rig.wall
            # An admin may not pose as a bot.
            assert await dashboard.call("metrics:update", snapshot_for("bot-a", wall)) == [
                forbidden
            ]
            as_feed = await dashboard.call("message:processed", batch_for("bot-a", wall))
            assert as_feed[0]["ok"] is False
            # A bot may not act as an admin.
            rogue = rig.client(
                {"service": "bot", "secret": SERVICE_SECRET, "instance": "bot-rogue"}
            )
            await rig.nursery.start(rogue.run)
            await rogue.wait_connected()
            assert (await rogue.call("subscribe", "monitoring"))[0]["ok"] is False
            assert (await rogue.call("conversation:join", user_of("6001")))[0]["ok"] is False
            # Invalid payloads: an error ack each.
            invalid = [
                await rogue.call("message:processed", {"instance": "bot-rogue", "events": []}),
                await rogue.call("metrics:update", {"instance": "bot-rogue", "totals": "lots"}),
                await rogue.call(
                    "health:changed",
                    {"instance": "bot-rogue", "component": "x", "status": "great", "since": 0},
                ),
                await rogue.call("metrics:update"),
                await rogue.call("message:processed", {**batch_for("bot-rogue", wall), "v": 2}),
            ]
            # Forged: valid payloads in another instance's name.
            forged = [
                await rogue.call("metrics:update", snapshot_for("bot-victim", wall, received=99)),
                await rogue.call("message:processed", batch_for("bot-victim", wall)),
                await rogue.call(
                    "health:changed",
                    HealthChanged(
                        instance="bot-victim", component="uplink", status="down", since=0
                    ).model_dump(mode="json"),
                ),
            ]
            # Then valid ones: once they are through, anything before would have been too.
            assert await rogue.call("message:processed", batch_for("bot-rogue", wall)) == [
                {"ok": True, "accepted": 1}
            ]
            assert await rogue.call("metrics:update", snapshot_for("bot-rogue", wall, 7)) == [
                {"ok": True}
            ]
            await wait_events(dashboard, "message:processed", 1)
            await dashboard.wait_until(
                lambda d: any(m["instances"] for m in d.events("metrics:update"))
            )
            await trio.testing.wait_all_tasks_blocked()
            health = await rig.http.get(
                "/monitoring/health-comprehensive", headers=rig.bearer(token)
            )
            counters = dict(rig.hub_counters)
    assert as_feed == [{"ok": False, "error": "forbidden: only bots send message:processed"}]
    for ack in invalid:
        assert len(ack) == 1
        assert ack[0]["ok"] is False
        assert "error(s); first at" in ack[0]["error"]
    assert forged == [[mismatch]] * 3
    assert counters["invalid_payloads"] == len(invalid) + len(forged)
    assert counters["forbidden"] == 4
    # The dashboard saw only the valid ones.
    assert keyed(dashboard.events("message:processed")) == [("bot-rogue", "e-1", "in")]
    for metrics in dashboard.events("metrics:update"):
        assert {row["instance"] for row in metrics["instances"]} <= {"bot-rogue"}
        assert metrics["totals"].get("received", 0) in (0, 7)
    assert not [s for s in dashboard.seen if "bot-victim" in str(s.payload)]
    assert health.json()["instances"] == ["bot-rogue"]


# -- REST ----------------------------------------------------------------------------------


async def test_login_failures_are_uniform_and_throttled_with_retry_after(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    def attempt(username: str, password: str) -> Any:
        return rig.http.post("/auth/login", json={"username": username, "password": password})

    with trio.fail_after(LIMIT):
        async with admin_rig(tmp_path) as rig:
            wrong = await attempt(USERNAME, "wrong password")
            unknown = await attempt("nobody", "wrong password")
            bad = await rig.http.post("/auth/login", content=b"username=ada")
            # Four more failures lock the account (five in fifteen minutes).
            for _ in range(4):
                assert (await attempt(USERNAME, "still wrong")).status_code == 401
            locked = await attempt(USERNAME, PASSWORD)  # even the right password
            locked_api = await rig.http.post(
                "/api/auth/login", json={"username": USERNAME, "password": "x"}
            )
            # Unknown accounts lock the same way: a lockout tells nothing about who exists.
            for _ in range(4):
                await attempt("nobody", "wrong password")
            locked_unknown = await attempt("nobody", "wrong password")
            await trio.sleep(59.5)
            still = await attempt(USERNAME, PASSWORD)
            await trio.sleep(0.5)
            after = await attempt(USERNAME, PASSWORD)
    assert (wrong.status_code, wrong.json()) == (401, {"error": "invalid_credentials"})
    assert (unknown.status_code, unknown.json()) == (wrong.status_code, wrong.json())
    assert unknown.headers == wrong.headers
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_request"
    for response in (locked, locked_api, locked_unknown):
        assert response.status_code == 429
        assert response.json() == {"error": "rate_limited", "retry_after": 60}
        assert response.headers["Retry-After"] == "60"
    assert still.status_code == 429
    assert still.headers["Retry-After"] == "1"  # 0.5 s left, never "0"
    assert after.status_code == 200
    assert after.json()["username"] == USERNAME


async def test_retry_after_never_ends_before_the_lockout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A client that waits what the 429 says must not be refused again.

    ``login`` (essen/admin/app.py, the LoginThrottled branch) rounds the
    remaining lockout to the nearest second, half to even: 30.5 s left is
    announced as 30 (header and body), and 0.5 s left as ``retry_after: 0`` in
    the body (the header is floored at 1).  A client honouring it comes back
    early and is locked out again; it should be the ceiling, the same in both.
    """

    def attempt() -> Any:
        return rig.http.post("/auth/login", json={"username": USERNAME, "password": "wrong"})

    with trio.fail_after(LIMIT):
        async with admin_rig(tmp_path) as rig:
            for _ in range(5):
                await attempt()
            await trio.sleep(29.5)
            half_way = await attempt()  # 30.5 s left
            await trio.sleep(30)
            last = await attempt()  # 0.5 s left
            await trio.sleep(float(last.headers["Retry-After"]))  # what the server asked for
            came_back = await rig.http.post(
                "/auth/login", json={"username": USERNAME, "password": PASSWORD}
            )
    assert half_way.status_code == last.status_code == 429
    assert (half_way.headers["Retry-After"], half_way.json()["retry_after"]) == ("31", 31)
    assert (last.headers["Retry-After"], last.json()["retry_after"]) == ("1", 1)
    assert came_back.status_code == 200


async def test_me_and_logout_revokes_the_token_for_rest_and_sockets(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(LIMIT):
        async with admin_rig(tmp_path) as rig:
            token = await rig.login()
            other = await rig.login()
            me = await rig.http.get("/auth/me", headers=rig.bearer(token))
            me_api = await rig.http.get("/api/auth/me", headers=rig.bearer(token))
            anonymous = await rig.http.get("/auth/me")
            no_token = await rig.http.post("/auth/logout")
            logout = await rig.http.post("/api/auth/logout", headers=rig.bearer(token))
            after = await rig.http.get("/auth/me", headers=rig.bearer(token))
            metrics = await rig.http.get("/monitoring/metrics", headers=rig.bearer(token))
            with pytest.raises(ConnectionRefused) as refused:
                await rig.client({"token": token}).run()
            still_ok = await rig.http.get("/auth/me", headers=rig.bearer(other))
    assert me.status_code == me_api.status_code == 200
    assert me.json() == me_api.json() == {"username": USERNAME, "expires_at": EPOCH + 3600}
    assert (anonymous.status_code, anonymous.json()) == (401, {"error": "missing"})
    assert (no_token.status_code, no_token.json()) == (401, {"error": "missing"})
    assert logout.status_code == 204
    assert (after.status_code, after.json()) == (401, {"error": "revoked"})
    assert (metrics.status_code, metrics.json()) == (401, {"error": "revoked"})
    assert refused.value.message == "revoked"
    # Only that token: another login of the same admin still works.
    assert still_ok.status_code == 200


async def test_monitoring_needs_a_token_and_answers_with_and_without_api(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    paths = (
        "/monitoring/metrics",
        "/monitoring/metrics?range=24h",
        "/monitoring/health-comprehensive",
    )
    with trio.fail_after(LIMIT):
        async with admin_rig(tmp_path) as rig:
            unauthenticated = [
                await rig.http.get(prefix + path, headers=headers)
                for prefix in ("", "/api")
                for path in paths
                for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "x"})
            ]
            public = [await rig.http.get(p) for p in ("/health", "/api/health")]
            token = await rig.login()
            bot = await rig.start_bot("bot-a")
            for n in range(5):
                await bot.say(f"700{n % 2}", f"m_{n}")
            dashboard = await rig.dashboard(token)
            await dashboard.wait_until(
                lambda d: any(m["totals"].get("received") == 5 for m in d.events("metrics:update"))
            )
            auth = rig.bearer(token)
            plain = await rig.http.get("/monitoring/metrics", headers=auth)
            prefixed = await rig.http.get("/api/monitoring/metrics", headers=auth)
            bad_range = await rig.http.get("/monitoring/metrics?range=1y", headers=auth)
            before = await rig.http.get("/monitoring/metrics?range=24h", headers=auth)
            # Rollups go to the store once a minute (then the writer's 1 s flush).
            await trio.sleep(61.5 - trio.current_time())
            day = await rig.http.get("/api/monitoring/metrics?range=24h", headers=auth)
            week = await rig.http.get("/monitoring/metrics?range=7d", headers=auth)
    for response in unauthenticated:
        assert response.status_code == 401, response.request.url
        assert response.json()["error"] in ("missing", "malformed")
    assert [r.json() for r in public] == [{"status": "ok"}] * 2
    assert plain.status_code == prefixed.status_code == 200
    assert plain.json() == prefixed.json()  # same Trio time, same numbers
    assert plain.json()["totals"]["received"] == 5
    assert [row["instance"] for row in plain.json()["instances"]] == ["bot-a"]
    assert len(plain.json()["series"]) == 60
    assert (bad_range.status_code, bad_range.json()) == (
        400,
        {"error": "invalid_range", "allowed": ["24h", "7d"]},
    )
    assert before.json() == {"range": "24h", "hours": []}
    hour = {"hour_epoch": int(EPOCH), "received": 5, "answered": 5, "failed": 0}
    assert day.json() == {"range": "24h", "hours": [hour]}
    assert week.json() == {"range": "7d", "hours": [hour]}


async def test_health_comprehensive_lists_bots_store_and_sockets_per_room(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(LIMIT):
        async with admin_rig(tmp_path) as rig:
            token = await rig.login()
            monitor = await rig.dashboard(token)
            reader = await rig.dashboard(token, subscribe=False, path="/socket.io/")
            assert (await reader.call("conversation:join", user_of("8001")))[0]["ok"] is True
            bot_a = await rig.start_bot("bot-a")
            await rig.start_bot("bot-b")
            await bot_a.say("8001", "m_1")
            await monitor.wait_until(
                lambda d: len(d.health("bot:bot-a")) == 1 and len(d.health("bot:bot-b")) == 1
            )
            await trio.sleep(1.0)  # past the store writer's flush interval (1 s)
            response = await rig.http.get(
                "/api/monitoring/health-comprehensive",
                headers={**rig.bearer(token), "Origin": ALLOWED_ORIGIN},
            )
            foreign = await rig.http.get(
                "/monitoring/health-comprehensive",
                headers={**rig.bearer(token), "Origin": "https://evil.example"},
            )
            await reader.client.aclose()
            await trio.testing.wait_all_tasks_blocked()
            after_leaving = dict(rig.hub_counters)
    assert response.status_code == 200
    details = response.json()
    components = {c["component"]: c["status"] for c in details["components"]}
    assert components["bot:bot-a"] == components["bot:bot-b"] == "healthy"
    assert components["store"] == components["store:ping"] == "healthy"
    assert sorted(details["instances"]) == ["bot-a", "bot-b"]
    assert details["store"]["backend"] == "sqlite"
    assert details["store"]["status"] == "healthy"
    assert details["store"]["written_messages"] == 2
    sockets = dict(details["sockets"])
    # How many metrics updates were replaced depends on the scheduling; a count it is.
    coalesced = sockets.pop("coalesced_messages")
    assert isinstance(coalesced, int)
    assert coalesced >= 0
    assert sockets == {
        "rooms": {"services": 2, "admins": 2, "monitoring": 1, f"user-{user_of('8001')}": 1},
        "connected": 4,
        "sessions": 4,
        "dropped_messages": 0,
    }
    assert details["hub"]["bots_connected"] == details["hub"]["bot_connections"] == 2
    assert details["hub"]["admins_connected"] == details["hub"]["admin_connections"] == 2
    # "connected" is now: a dashboard that left is no longer counted.
    assert after_leaving["admins_connected"] == 1
    assert after_leaving["admin_connections"] == 2
    assert details["admin"]["instance"] == "admin-test"
    # CORS for the allowed dashboard origin only.
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Access-Control-Allow-Origin" not in foreign.headers
    assert foreign.status_code == 200  # CORS is the browser's business; the data is the token's


# -- bugs found on the way ---------------------------------------------------------------


async def test_a_client_that_closes_says_goodbye_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A dashboard on WebSocket closing: DISCONNECT, then the Engine.IO CLOSE, at once.

    ``SocketIOClient.aclose`` (essen/realtime/client.py) queues the DISCONNECT
    and cancels the run scope; ``open_engine`` (essen/realtime/_client_engine.py)
    then calls ``engine.close()`` in its ``finally``, but the engine's writer
    task lives in the same, already cancelled, scope: the CLOSE packet is
    queued and never written, and ``close()`` waits out ``GOODBYE_SECONDS``
    (0.2 s) for a drain that cannot happen.  Every WebSocket close costs 0.2 s,
    and over real sockets the server sees "transport close" (recoverable)
    instead of "client namespace disconnect" (the loopback test shows it).
    """
    frames: list[tuple[float, str, str]] = []
    with trio.fail_after(LIMIT):
        async with admin_rig(tmp_path) as rig:
            token = await rig.login()
            client = rig.client(
                {"token": token},
                trace=lambda kind, detail: frames.append((trio.current_time(), kind, detail)),
            )
            await rig.nursery.start(client.run)
            await client.wait_status(lambda s: s.transport == "websocket")
            await trio.testing.wait_all_tasks_blocked()  # the upgrade is over
            before = len(frames)
            start = trio.current_time()
            await client.aclose()
            took = trio.current_time() - start
    # (The memory network traces a frame when the client starts writing it.)
    sent = [detail for _, kind, detail in frames[before:] if kind == "ws>"]
    assert (sent, took) == (["'41'", "'1'"], 0.0)  # DISCONNECT, CLOSE, no wait


async def test_a_server_disconnect_closes_the_client_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The server's DISCONNECT (token expiry): the client writes its CLOSE and is CLOSED at once.

    On a DISCONNECT, ``SocketIOClient._connect_once`` (essen/realtime/client.py)
    cancels the connection's scope; ``open_engine``'s ``finally``
    (essen/realtime/_client_engine.py) then calls ``engine.close()``, whose
    goodbye goes "through the transport's own writer", but that writer was
    cancelled with the scope: the Engine.IO CLOSE is never written and
    ``close()`` waits out ``GOODBYE_SECONDS`` (0.2 s) for a drain that cannot
    happen before the client reports CLOSED.  (``aclose`` had the same cause,
    fixed in 1f232be; this path was not.)
    """
    frames: list[tuple[float, str, str]] = []
    with trio.fail_after(LIMIT):
        async with admin_rig(tmp_path, token_ttl=30.0) as rig:
            token = await rig.login()
            client = rig.client(
                {"token": token},
                trace=lambda kind, detail: frames.append((trio.current_time(), kind, detail)),
            )
            await rig.nursery.start(client.run)
            await client.wait_status(lambda s: s.transport == "websocket")
            status = await client.wait_status(lambda s: s.state is ClientState.CLOSED)
            closed_at = trio.current_time()
    assert status.reason == "io server disconnect"
    received = [
        n for n, (_, kind, detail) in enumerate(frames) if (kind, detail) == ("ws<", "'41'")
    ]
    assert len(received) == 1
    after = [detail for _, kind, detail in frames[received[0] :] if kind == "ws>"]
    # Either the goodbye is written or none is attempted (socket.io-client just
    # closes its WebSocket); either way no time is spent waiting for nothing.
    assert after in ([], ["'1'"])
    assert closed_at == 30.0


async def test_a_bot_that_dies_is_gone_from_the_server_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Over the memory network the server never hears a client die.

    ``MemoryNetwork.connect`` (essen/realtime/transports.py) runs the server's
    ASGI handler for a WebSocket as a task of the *client's* nursery; when the
    client is cancelled without a goodbye (a bot process that dies, which is
    what ``Bot.stop`` simulates) the server's handler is cancelled with it,
    before it can see the end of the socket.  The server keeps the socket in
    ``services``, its Engine.IO session OPEN and the hub's per-socket state
    until the ping timeout, 45 s later.  A real ASGI server delivers
    ``websocket.disconnect`` and the server notices at once (the loopback test
    checks the same scenario: "transport close" within moments).
    """
    departed: list[tuple[float, str]] = []
    gone = trio.Event()

    async def left(socket: Any, reason: str) -> None:
        departed.append((trio.current_time(), reason))
        gone.set()

    with trio.fail_after(LIMIT):
        async with admin_rig(tmp_path) as rig:
            rig.handles.server.on_disconnect(left)
            token = await rig.login()
            dashboard = await rig.dashboard(token)
            bot = await rig.start_bot("bot-a")
            await dashboard.wait_until(lambda d: len(d.health("bot-a:uplink")) == 1)
            await trio.testing.wait_all_tasks_blocked()  # upgraded to WebSocket
            start = trio.current_time()
            await bot.stop()
            with trio.move_on_after(10):
                await gone.wait()
            rooms = rig.handles.server.statistics()["rooms"]["/"]
            seen = list(departed)  # before the rig's teardown closes the dashboard too
    assert seen == [(start, "transport close")]
    assert "services" not in rooms
