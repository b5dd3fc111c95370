"""A simulated day at 50 messages/s: windows stay right and memory stays flat.

The loop drives ``record`` with explicit times, as the metrics actor would
under MockClock, without a Trio run: 24 hours (4.32 million handled messages
and 86,400 webhook observations), then one more hour with every ring full.
Observations are built once and reused (the collector keeps none of them), so
the loop measures the collector.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from types import FunctionType, ModuleType

from essen.events import MetricsSnapshot
from essen.metrics import collector as collector_module
from essen.metrics import histogram as histogram_module
from essen.metrics import unique as unique_module
from essen.metrics.collector import MessageHandled, MetricsCollector, WebhookReceived

EPOCH = 1_767_225_600
RATE = 50
HOURS = 25


class FixedWall:
    def now(self) -> float:
        return float(EPOCH)


def deep_size(root: object) -> int:
    """Bytes reachable from ``root``, not counting classes, modules and functions."""
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type | ModuleType | FunctionType):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def test_a_day_and_an_hour_at_fifty_messages_per_second() -> None:
    collector = MetricsCollector("bot-1", FixedWall(), start=0.0)
    # 50 users, one message each per second; every 10th fails; latencies vary.
    handled = [
        MessageHandled(
            "text",
            "failed" if i % 10 == 9 else "answered",
            f"u_{i:010d}",
            latency_ms=float(4 + i * 13),
        )
        for i in range(RATE)
    ]
    webhook = WebhookReceived({"text": RATE})
    offsets = [i / RATE for i in range(RATE)]
    sizes: dict[int, int] = {}
    own_files = {collector_module.__file__, histogram_module.__file__, unique_module.__file__}

    record = collector.record
    for hour in range(HOURS):
        if hour == HOURS - 2:
            # Trace two hours, compare the second one: every counter alive at
            # its start was allocated under tracing, so its replacement nets out.
            tracemalloc.start()
        for second in range(hour * 3600, (hour + 1) * 3600):
            base = float(second)
            record(webhook, base)
            for offset, observation in zip(offsets, handled, strict=True):
                record(observation, base + offset)
        end_of_hour = (hour + 1) * 3600 - 0.01
        snapshot = collector.snapshot(end_of_hour)
        assert snapshot.windows["1m"].received == 60 * RATE
        assert snapshot.windows["5m"].answered == 5 * 60 * 45
        assert snapshot.windows["60m"].failed == 3600 * 5
        assert snapshot.windows["60m"].unique_users == RATE
        assert snapshot.windows["60m"].latency.count == 3600 * RATE
        assert sum(b.received for b in snapshot.per_minute) == 3600 * RATE
        gc.collect()
        sizes[hour] = deep_size(collector)
        if hour == HOURS - 2:
            before = tracemalloc.take_snapshot()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(
        stat.size_diff
        for stat in after.compare_to(before, "filename")
        if stat.traceback[0].filename in own_files
    )

    end = HOURS * 3600 - 0.01
    snapshot = collector.snapshot(end)
    assert MetricsSnapshot.model_validate_json(snapshot.model_dump_json()) == snapshot
    assert snapshot.totals["received"] == HOURS * 3600 * RATE
    assert snapshot.totals["outcome:failed"] == HOURS * 3600 * 5
    history = collector.hourly(end)
    assert [r.hour_epoch for r in history] == [EPOCH + h * 3600 for h in range(1, HOURS)]
    assert all(r.received == 3600 * RATE and r.unique_users_estimate == RATE for r in history)
    rates = collector.rates(end)
    assert abs(rates.per_second - RATE) < 1
    assert abs(rates.per_minute - 60 * RATE) < 60

    # Memory: every structure is allocated up front, but for the snapshots'
    # caches of settled blocks and windows (19 entries of a 4 KiB sketch and a
    # few integers), which fill during the first two hours.  After that the only
    # change from hour to hour is one hourly slot taking on its first
    # non-cached integers (its hour index and counts) and its sketch noting
    # its first set registers (2 bytes each, at most 128), a few hundred
    # bytes, until all 24 are in use; the 180,000 messages of each hour leave
    # nothing behind.  Once the rings are full, an hour of traffic changes nothing.
    assert 0 <= sizes[2] - sizes[0] <= 19 * 5 * 1024, sizes
    growth_per_hour = [sizes[h] - sizes[h - 1] for h in range(3, HOURS)]
    assert all(0 <= g <= 1024 for g in growth_per_hour), sizes
    assert sizes[23] - sizes[2] <= 21 * 1024, sizes
    assert sizes[24] - sizes[23] <= 64, sizes
    assert growth <= 2048, growth
    stats = collector.statistics()
    assert stats.slots == 60 + 60 + 24
    assert stats.sketch_bytes == stats.slots * 4096
    assert stats.settled_sketches <= 19
