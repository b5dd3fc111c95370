"""A simulated day at 50 messages/s through the whole system, in seconds.

``System.traffic`` offers 4,320,000 messages over 24 simulated hours: one in
20,000 goes the whole real way (signed webhook → bot → fake Graph API →
uplink → admin API → dashboard), the rest are counted in aggregate by the
bot's real metrics collector, and everything downstream of the collector —
``metrics:update``, the admin API's aggregation, hourly rollups in the store,
the 24 h history, the dashboard's numbers — sees the full volume.

The bot publishes metrics every 60 s here, not every 5 s: each update costs
about 3 ms of CPU along the whole path (snapshot, uplink, validation,
aggregation, fan-out, dashboard), 17,280 of them would cost more than the
rest of the day together, and a minute is what the per-minute series and
the hourly rollups are made of.  The admin API's stale/down thresholds
follow the interval (``system(metrics_interval=...)``).  Counted messages
are applied in steps of 5 s.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

import pytest
import trio
import trio.testing

from essen.testing import System, TrafficReport, system

pytestmark = pytest.mark.harness

RATE = 50.0
HOURS = 24
PER_HOUR = int(RATE * 3600)
SAMPLE_EVERY = 20_000
SAMPLED = HOURS * PER_HOUR // SAMPLE_EVERY  # 216, one every 400 s
POPULATION = 1_000
#: Memory blocks a sampled message may leave behind for good (~190 measured):
#: its records in the fake Graph API, the admin API's recent feed and message
#: log, the System's User — all bounded (10,000 records, 256 users, 100,000
#: entries, the population), none reached in a day.
BLOCKS_PER_SAMPLE = 250
#: Anything else over the last 20 hours, where 3.6 million counted messages,
#: 14,400 bulk steps and 1,200 metrics updates must leave nothing behind: a
#: leak of one block per counted message, two per step or fifteen per update
#: does not fit.
BLOCKS_SLACK = 5_000


async def start_on_the_hour(s: System) -> int:
    """Wait for the next whole hour of wall time; returns it (epoch seconds)."""
    behind = s.wall.now() % 3600
    if behind:
        await s.advance(3600 - behind)
    return round(s.wall.now())


async def test_a_day_at_fifty_messages_per_second(autojump_clock: trio.testing.MockClock) -> None:
    # The system's long-lived objects (apps, routes, settings, imports) are set
    # aside from the cyclic GC: a full collection scanned them about once an
    # hour for nothing, a tenth of the CPU of the day.  Nothing else changes.
    gc.collect()
    gc.freeze()
    try:
        await run_the_day()
    finally:
        gc.unfreeze()


async def run_the_day() -> None:
    with trio.fail_after(HOURS * 3600 + 2 * 3600):
        async with system(seed=7, trace_limit=5_000, metrics_interval=60.0) as s:
            start = await start_on_the_hour(s)
            reports: list[TrafficReport] = []
            blocks: dict[int, int] = {}
            for hour in range(HOURS):
                reports.append(
                    await s.traffic(
                        rate=RATE,
                        duration=3600,
                        sample_every=SAMPLE_EVERY,
                        population=POPULATION,
                        step=5.0,
                    )
                )
                blocks[hour + 1] = sys.getallocatedblocks()
            # The last metrics:update, then the admin's next rollup to the store.
            await s.advance(2 * 60 + 5)
            merged = await s.metrics()
            history = (await s.rest("/api/monitoring/metrics", range="24h")).json()
            rollups = await s.store.rollups(start, start + HOURS * 3600)
            dashboard = s.dashboards[0]
            answers = [r for r in s.graph.received if r.message is not None and r.status == 200]
            check_the_day(reports, merged, history, rollups, dashboard.last_metrics, start)
            check_the_sample(dashboard.live_messages(), answers)
            # Memory: from the end of hour 4 (bounded buffers and caches full)
            # to the end of the day, only what the sampled messages keep.
            sampled = sum(r.sampled for r in reports[4:])
            assert blocks[HOURS] - blocks[4] < sampled * BLOCKS_PER_SAMPLE + BLOCKS_SLACK, blocks


def check_the_day(
    reports: list[TrafficReport],
    merged: dict[str, Any],
    history: dict[str, Any],
    rollups: list[Any],
    last_metrics: dict[str, Any] | None,
    start: int,
) -> None:
    offered = HOURS * PER_HOUR
    assert sum(r.offered for r in reports) == offered == 4_320_000
    assert sum(r.sampled for r in reports) == SAMPLED
    assert sum(r.counted for r in reports) == offered - SAMPLED
    assert all(r.undelivered == 0 and r.offered == PER_HOUR for r in reports)

    # The admin API's totals: every message received and answered, none failed.
    totals = merged["totals"]
    assert totals["received"] == totals["outcome:answered"] == offered
    assert totals.get("outcome:failed", 0) == 0
    assert merged["instances_connected"] == 1
    # The dashboard's cards show the same totals.
    assert last_metrics is not None
    assert last_metrics["totals"]["received"] == offered
    assert last_metrics["totals"]["outcome:answered"] == offered
    # Its activity chart and last hour, two minutes after the end of traffic:
    # 57 minutes at 3000 a minute, then quiet; all 1000 users among them
    # (a HyperLogLog estimate: ±3 %).
    end = start + HOURS * 3600
    series = {b["minute"]: b["received"] for b in merged["series"]}
    assert [series[m] for m in sorted(series) if m < end] == [3000] * 57
    assert [series[m] for m in sorted(series) if m >= end] == [0, 0, 0]
    assert merged["windows"]["60m"]["received"] == 57 * 3000
    assert abs(merged["windows"]["60m"]["unique_users"] - POPULATION) <= 30

    # 24 hourly rollups in the store, 180,000 messages each.
    assert [(r.hour_epoch, r.received, r.answered, r.failed) for r in rollups] == [
        (start + h * 3600, PER_HOUR, PER_HOUR, 0) for h in range(HOURS)
    ]
    # The "last 24 h" chart, two minutes after midnight: hours 1-23 of the day,
    # then the new, quiet hour.
    hours = history["hours"]
    assert history["range"] == "24h"
    assert [h["hour_epoch"] for h in hours][:23] == [start + h * 3600 for h in range(1, HOURS)]
    assert [h["received"] for h in hours][:23] == [PER_HOUR] * 23
    assert all(h["received"] == 0 for h in hours[23:])


def check_the_sample(feed: list[dict[str, Any]], answers: list[Any]) -> None:
    """Every sampled message answered exactly once, and on the dashboard's feed."""
    inbound = [m for m in feed if m["direction"] == "in"]
    replies = [m for m in feed if m["direction"] == "out"]
    assert len(inbound) == len({m["id"] for m in inbound}) == SAMPLED
    assert {m["outcome"] for m in inbound} == {"answered"}
    assert len(replies) == SAMPLED
    assert {m["id"] for m in replies} == {f"{m['id']}-r" for m in inbound}
    # The fake Graph API sent one answer per sampled message: users 0..215, once each.
    recipients = [a.recipient_id for a in answers]
    assert len(recipients) == len(set(recipients)) == SAMPLED
