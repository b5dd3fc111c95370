"""system_stats (psutil, Trio task tree) and the EventLoopLag monitor."""

from __future__ import annotations

import json
import time
from functools import partial

import pytest
import trio
import trio.testing

from essen.metrics.system import EventLoopLag, system_stats, trio_task_count


async def test_system_stats_reads_the_process() -> None:
    with trio.fail_after(5):
        start = trio.current_time()
        stats = system_stats(started=start - 12.5)
        assert stats["rss_bytes"] > 1_000_000
        assert stats["cpu_user_s"] > 0
        assert stats["cpu_system_s"] >= 0
        assert stats["threads"] >= 1
        assert stats["open_fds"] is not None
        assert stats["open_fds"] >= 3
        assert stats["uptime_s"] >= 12.5
        assert json.loads(json.dumps(stats)) == stats
        await trio.lowlevel.checkpoint()


async def test_trio_task_count_follows_the_task_tree() -> None:
    with trio.fail_after(5):
        before = trio_task_count()
        assert before is not None
        assert before >= 2  # at least the init task and this test
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(trio.sleep_forever)
            await trio.testing.wait_all_tasks_blocked()
            assert trio_task_count() == before + 5

            async def parent() -> None:
                async with trio.open_nursery() as inner:
                    inner.start_soon(trio.sleep_forever)
                    inner.start_soon(trio.sleep_forever)

            nursery.start_soon(parent)
            await trio.testing.wait_all_tasks_blocked()
            assert trio_task_count() == before + 5 + 3  # nested nurseries count too
            stats = system_stats(started=trio.current_time())
            assert stats["trio_tasks"] == before + 8
            nursery.cancel_scope.cancel()
        assert trio_task_count() == before


def test_outside_trio() -> None:
    assert trio_task_count() is None
    assert system_stats(started=0.0, now=3.0)["trio_tasks"] is None
    assert system_stats(started=0.0, now=3.0)["uptime_s"] == 3.0


async def test_lag_under_mock_clock(mock_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(60):
        lag = EventLoopLag(window=10.0)
        assert lag.statistics().last_s is None
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(lag.run, interval=1.0))
            # On time: the clock reaches the deadline exactly.
            mock_clock.jump(1.0)
            await trio.testing.wait_all_tasks_blocked()
            assert lag.statistics().last_s == 0.0
            # Late: nothing ran until 1.25 s past the next deadline's start.
            mock_clock.jump(2.25)
            await trio.testing.wait_all_tasks_blocked()
            stats = lag.statistics()
            assert stats.last_s == pytest.approx(1.25)
            assert stats.max_s == pytest.approx(1.25)
            assert stats.samples == 2
            # Twelve on-time wake-ups later the stall has left the 10 s window.
            for _ in range(12):
                mock_clock.jump(1.0)
                await trio.testing.wait_all_tasks_blocked()
            stats = lag.statistics()
            assert stats.last_s == 0.0
            assert stats.max_s == 0.0
            assert stats.samples == 14
            nursery.cancel_scope.cancel()


async def test_lag_sees_a_blocked_loop() -> None:
    # The real clock: a synchronous stall delays the monitor's wake-up.
    with trio.fail_after(10):
        lag = EventLoopLag()
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(lag.run, interval=0.01))
            time.sleep(0.1)  # noqa: ASYNC251 -- blocking the loop is the point
            await trio.sleep(0.05)  # the monitor wakes (late) and samples again
            stats = lag.statistics()
            assert stats.samples >= 1
            assert stats.max_s is not None
            assert stats.max_s >= 0.05
            nursery.cancel_scope.cancel()


async def test_lag_rejects_bad_intervals() -> None:
    with trio.fail_after(5):
        with pytest.raises(ValueError, match="interval"):
            await EventLoopLag().run(interval=0)
    with pytest.raises(ValueError, match="window"):
        EventLoopLag(window=0)
