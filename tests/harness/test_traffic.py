"""System.traffic: what it offers, where it goes, and that a seed replays it."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from essen.testing import system

pytestmark = pytest.mark.harness


async def test_two_bots_share_the_traffic_and_the_admin_counts_all_of_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(3600):
        async with system(seed=5, bots=2, dashboards=1) as s:
            first = await s.traffic(rate=20.0, duration=300, sample_every=500, population=50)
            # A second call continues the first: the sampling keeps its rhythm.
            second = await s.traffic(rate=20.0, duration=300.5, sample_every=500, population=50)
            await s.advance(10)
            merged = await s.metrics()
            inbound = [m for m in s.dashboards[0].live_messages() if m["direction"] == "in"]

    assert first.offered == 6_000
    assert second.offered == 6_010  # round(20 * 300.5)
    assert first.sampled == 12  # messages 0, 500, ... 5,500
    assert second.sampled == 13  # messages 6,000 ... 12,000
    assert sum(second.per_bot) == second.offered
    assert first.counted == 6_000 - 12
    assert first.undelivered == second.undelivered == 0
    # Users n go to bot n % 2, turn by turn: the bots get half each, to the
    # few messages the sample took from its own turn of users.
    assert sum(first.per_bot) == 6_000
    assert all(abs(share - 3_000) <= 12 for share in first.per_bot)
    assert (first.started, first.ended) == (0.0, 300.0)
    assert merged["totals"]["received"] == merged["totals"]["outcome:answered"] == 12_010
    rows = {row["instance"]: row for row in merged["instances"]}
    assert set(rows) == {"bot-1", "bot-2"}
    assert len(inbound) == 25
    assert {m["outcome"] for m in inbound} == {"answered"}
    # Sampled message j comes from user j % 50: both bots took real traffic.
    assert {m["instance"] for m in inbound} == {"bot-1", "bot-2"}


async def test_a_stopped_bot_takes_no_traffic_and_the_report_says_so(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(3600):
        async with system(seed=6, bots=2, dashboards=1) as s:
            await s.stop_bot(1)
            report = await s.traffic(rate=10.0, duration=60, sample_every=None, population=10)
            await s.advance(10)
            merged = await s.metrics()
    assert report.offered == 600
    assert report.sampled == 0
    assert (report.counted, report.undelivered) == (300, 300)
    assert report.per_bot == (300, 300)
    assert merged["totals"]["received"] == 300


async def test_traffic_arguments_are_checked(autojump_clock: trio.testing.MockClock) -> None:
    async with system(seed=1, bots=1, dashboards=0) as s:
        for bad, complaint in (
            ({"rate": 0.0, "duration": 10.0}, "rate"),
            ({"rate": float("inf"), "duration": 10.0}, "rate"),
            ({"rate": 1.0, "duration": -1.0}, "duration"),
            ({"rate": 1.0, "duration": 10.0, "step": 0.0}, "step"),
            ({"rate": 1.0, "duration": 10.0, "sample_every": 0}, "sample_every"),
            ({"rate": 1.0, "duration": 10.0, "latencies_ms": ()}, "latencies_ms"),
            ({"rate": 1.0, "duration": 10.0, "latencies_ms": (-5.0,)}, "latency"),
            ({"rate": 1.0, "duration": 10.0, "population": 0}, "population"),
        ):
            with pytest.raises(ValueError, match=complaint):
                await s.traffic(**bad)  # type: ignore[arg-type]
        assert trio.current_time() == 0.0  # refused before any traffic


async def ten_minutes(seed: int) -> tuple[list[dict[str, object]], list[object]]:
    async with system(seed=seed, bots=2, dashboards=1) as s:
        await s.traffic(rate=50.0, duration=600, sample_every=1_000, population=100)
        await s.advance(10)
        dashboard = s.dashboards[0]
        seen = [(m["instance"], m["id"], m["outcome"]) for m in dashboard.live_messages()]
        metrics = dashboard.last_metrics
        assert metrics is not None
        return list(s.trace.entries), [seen, metrics["totals"], metrics["windows"]]


def replay(seed: int) -> tuple[list[dict[str, object]], list[object]]:
    """Ten simulated minutes in their own Trio run, on a fresh MockClock."""
    return trio.run(ten_minutes, seed, clock=trio.testing.MockClock(autojump_threshold=0))


def test_bulk_traffic_replays_to_the_same_trace() -> None:
    first_trace, first_outcome = replay(seed=11)
    second_trace, second_outcome = replay(seed=11)
    assert len(first_trace) > 300  # 30 sampled messages, 20 metrics updates, pings...
    assert first_trace == second_trace
    assert first_outcome == second_outcome
    totals = first_outcome[1]
    assert isinstance(totals, dict)
    assert totals["received"] == 30_000
