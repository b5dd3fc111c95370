"""The harness as a product: whole-system scenarios, deterministic to the seed."""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing

from essen.testing import System, system

pytestmark = pytest.mark.harness


async def busy_day(s: System) -> None:
    """Traffic from a few users, a duplicate, Graph API trouble, a bot restart, an admin restart."""
    for n in range(6):
        await s.user(n).say("what are your opening hours?")
    await s.user(1).redeliver_last()
    await s.user(2).postback("MENU")
    await s.user(3).quick_reply("Location", "LOCATION")
    await s.user(4).attachment()
    await s.advance(6)
    s.graph.fail_rate(0.3, status=500, code=2)
    for n in range(6):
        await s.user(n).say("menu please")
    await s.advance(30)
    s.graph.clear_failures()
    await s.stop_bot(0)
    await s.advance(70)  # the admin sees bot-1 go stale, then down
    await s.start_bot(0)
    await s.advance(10)
    await s.stop_admin()
    await s.advance(5)
    await s.start_admin()
    await s.user(5).say("thanks!")
    await s.advance(20)


async def run_busy_day(seed: int) -> tuple[list[dict[str, object]], dict[str, object]]:
    with trio.fail_after(600):
        async with system(seed=seed, bots=2, dashboards=2) as s:
            await busy_day(s)
            outcome = {
                "answered": sorted(
                    (m["user"], m["preview"])
                    for m in s.dashboards[0].messages()
                    if m["direction"] == "in"
                ),
                "bot_1_states": [
                    h["status"] for h in s.dashboards[0].health_changes()
                    if h["component"] == "bot:bot-1"
                ],
                "graph_injected": s.graph.statistics().injected,
            }
            return list(s.trace.entries), outcome


def replay(seed: int) -> tuple[list[dict[str, object]], dict[str, object]]:
    """One scenario in its own Trio run on a fresh MockClock (time starts at 0 each time)."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(run_busy_day, seed, clock=clock)


def test_same_seed_same_trace() -> None:
    first, _ = replay(seed=3)
    second, _ = replay(seed=3)
    assert len(first) > 400  # a real run: hundreds of transport events
    assert first == second


def test_another_seed_changes_timing_not_outcomes() -> None:
    trace_a, outcome_a = replay(seed=3)
    trace_b, outcome_b = replay(seed=4)
    assert trace_a != trace_b  # other jitter, other ids, other interleavings...
    # ...but the same story: every message handled and seen by the dashboard once,
    # bot-1 went stale then down and came back.
    assert outcome_a["answered"] == outcome_b["answered"]
    assert len(outcome_a["answered"]) == 16  # type: ignore[arg-type]
    assert outcome_a["bot_1_states"] == outcome_b["bot_1_states"]
    assert outcome_a["bot_1_states"][:4] == ["healthy", "stale", "down", "healthy"]  # type: ignore[index]


async def test_dashboards_see_what_happened(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(120):
        async with system(seed=9, bots=2, dashboards=3) as s:
            await s.advance(1)
            for n in range(10):
                await s.user(n).say("hello")
            await s.user(0).redeliver_last()
            await s.advance(6)  # past the bots' 5 s metrics interval
            metrics = await s.metrics()
            for dashboard in s.dashboards:
                inbound = [m for m in dashboard.live_messages() if m["direction"] == "in"]
                assert len(inbound) == 10  # each event once, the redelivery not at all
                assert dashboard.snapshots  # subscribed with a snapshot
                assert dashboard.metrics_updates()[-1]["windows"]["1m"]["answered"] == 10
            assert metrics["instances_connected"] == 2
            assert metrics["windows"]["1m"]["received"] == 10


async def test_the_pytest_plugin_and_the_trace_file(essen_system, essen_trace) -> None:
    with trio.fail_after(60):
        async with essen_system(seed=2, bots=1, dashboards=1) as s:
            await s.user(1).say("where are you?")
            await s.advance(2)
            path = essen_trace(s)
            recorded = list(s.trace.entries)
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert entries == recorded
    links = {e["link"] for e in entries}
    assert {"facebook→bot-1", "graph", "bot-1", "dashboard-1"} <= links
    # The answer to the user went to the Graph API, in order after the webhook.
    webhook = next(i for i, e in enumerate(entries) if e["link"] == "facebook→bot-1")
    answer = next(
        i for i, e in enumerate(entries)
        if e["link"] == "graph" and e["kind"] == "http>" and '"text"' in e["detail"]
    )
    assert webhook < answer


async def test_a_silent_bots_parts_follow_it_and_come_back_after_an_admin_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def parts(health: dict, instance: str) -> dict[str, str]:
        return {
            c["component"]: c["status"]
            for c in health["components"]
            if c["component"].startswith(f"{instance}:")
        }

    with trio.fail_after(300):
        async with system(seed=5, bots=2, dashboards=1) as s:
            await s.advance(6)
            assert set(parts(await s.health(), "bot-1").values()) == {"healthy"}
            await s.stop_bot(0)
            await s.advance(70)  # past BOT_DOWN_AFTER
            stopped = parts(await s.health(), "bot-1")
            # A bot that stopped talking cannot say its uplink is fine.
            assert stopped
            assert set(stopped.values()) == {"down"}
            # A new admin hears every component of the live bot again, not only
            # the ones that happen to change later.
            await s.stop_admin()
            await s.start_admin()
            await s.advance(10)
            restarted = parts(await s.health(), "bot-2")
            assert {"bot-2:graph_api", "bot-2:uplink", "bot-2:event_loop"} <= set(restarted)
            assert set(restarted.values()) == {"healthy"}
