"""A long simulated day through the whole in-process system (essen.testing.system).

    # 24 simulated hours at 50 msg/s, counted in aggregate, 1 in 10,000 through the system
    .venv/bin/python bench/harness_day.py --mode bulk --hours 24 --rate 50 --repeat 3
    # every message through the whole system (what a day cost before the bulk mode)
    .venv/bin/python bench/harness_day.py --mode full --hours 24 --rate 0.1

Runs bot, admin API, fake Graph API and a dashboard over the memory network under
MockClock (the trace capped at 20k entries).  ``--mode bulk`` drives
``System.traffic``: every ``--sample-every``-th message goes the whole real way,
the others are counted in aggregate by the bot's metrics collector every
``--step`` seconds (counted, not processed).  ``--mode full`` sends every message
as a signed webhook from one of 200 users at exponential intervals, as this
script always did.  Each run is its own process; the report gives per run the
wall and CPU time, messages offered / counted / through the full path, what the
admin API and the dashboard counted, and the process RSS at the start, every
simulated hour and the end, then the medians.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import random
import statistics
import subprocess
import sys
import time
from typing import Any

import psutil
import trio
import trio.testing

from essen.testing import system

MIB = 2**20


async def day(args: argparse.Namespace) -> dict[str, Any]:
    process = psutil.Process()
    rss_start = process.memory_info().rss
    rss_hourly: list[float] = []
    offered = counted = sampled = 0
    async with system(
        seed=args.seed,
        bots=1,
        dashboards=1,
        trace_limit=20_000,
        metrics_interval=args.metrics_interval,
    ) as s:
        if args.gc_freeze:
            # The system's long-lived objects leave the cyclic GC's scans (as
            # tests/harness/test_traffic_day.py does); nothing else changes.
            gc.collect()
            gc.freeze()
        wall_start, cpu_start = time.monotonic(), time.process_time()
        if args.mode == "bulk":
            for _hour in range(args.hours):
                report = await s.traffic(
                    rate=args.rate,
                    duration=3600,
                    sample_every=args.sample_every or None,
                    population=args.population,
                    step=args.step,
                )
                offered += report.offered
                counted += report.counted
                sampled += report.sampled
                rss_hourly.append(process.memory_info().rss / MIB)
        else:
            rng = random.Random(args.seed)
            t_end = trio.current_time() + args.hours * 3600
            next_mark = trio.current_time() + 3600
            while True:
                await s.advance(rng.expovariate(args.rate))
                while trio.current_time() >= next_mark and next_mark <= t_end:
                    next_mark += 3600
                    rss_hourly.append(process.memory_info().rss / MIB)
                if trio.current_time() >= t_end:
                    break
                await s.user(rng.randrange(200)).say(rng.choice(("hi", "menu", "hours", "where?")))
                offered += 1
                sampled += 1
        await s.advance(2 * max(5.0, args.metrics_interval) + 5)
        wall = time.monotonic() - wall_start
        cpu = time.process_time() - cpu_start
        merged = await s.metrics()
        dashboard = s.dashboards[0]
        cards = dashboard.last_metrics or {"totals": {}}
        inbound = [m for m in dashboard.live_messages() if m["direction"] == "in"]
    return {
        "mode": args.mode,
        "hours": args.hours,
        "rate": args.rate,
        "metrics_interval": args.metrics_interval,
        "step": args.step if args.mode == "bulk" else None,
        "sample_every": args.sample_every if args.mode == "bulk" else 1,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "offered": offered,
        "counted": counted,
        "full_path": sampled,
        "admin_received": merged["totals"].get("received", 0),
        "admin_answered": merged["totals"].get("outcome:answered", 0),
        "dashboard_received": cards["totals"].get("received", 0),
        "dashboard_feed_in": len(inbound),
        "rss_start_mib": round(rss_start / MIB, 1),
        "rss_end_mib": round(process.memory_info().rss / MIB, 1),
        "rss_hourly_mib": [round(r, 1) for r in rss_hourly],
    }


def one_run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = trio.run(day, args, clock=trio.testing.MockClock(autojump_threshold=0))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mode", choices=("bulk", "full"), default="bulk")
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--rate", type=float, default=50.0, help="messages per simulated second")
    parser.add_argument(
        "--metrics-interval",
        type=float,
        default=5.0,
        help="seconds between the bot's metrics:update (production: 5)",
    )
    parser.add_argument(
        "--step", type=float, default=1.0, help="bulk: seconds of counted messages applied at once"
    )
    parser.add_argument(
        "--sample-every",
        type=int,
        default=10_000,
        help="bulk: every Nth message goes the whole real way (0: none)",
    )
    parser.add_argument("--population", type=int, default=1_000, help="bulk: distinct users")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="runs, each its own process")
    parser.add_argument(
        "--no-gc-freeze",
        dest="gc_freeze",
        action="store_false",
        help="leave the system's startup objects in the cyclic GC's scans",
    )
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args)))
        return
    forwarded = [arg for arg in sys.argv[1:] if not arg.startswith("--repeat")]
    if "--repeat" in sys.argv:
        index = sys.argv.index("--repeat")
        forwarded = sys.argv[1:index] + sys.argv[index + 2 :]
    runs = []
    for _ in range(args.repeat):
        output = subprocess.run(
            [sys.executable, __file__, *forwarded, "--one"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        run = json.loads(output.strip().splitlines()[-1])
        runs.append(run)
        print(
            f"{run['mode']} {run['hours']} h at {run['rate']:g} msg/s "
            f"(metrics every {run['metrics_interval']:g} s"
            + (f", step {run['step']:g} s, 1 in {run['sample_every']} real" if run["step"] else "")
            + f"): wall {run['wall_s']:.1f} s, CPU {run['cpu_s']:.1f} s; "
            f"{run['offered']:,} offered, {run['counted']:,} counted, "
            f"{run['full_path']:,} through the full path; admin received {run['admin_received']:,} "
            f"answered {run['admin_answered']:,}, dashboard {run['dashboard_received']:,} "
            f"(feed {run['dashboard_feed_in']:,}); RSS {run['rss_start_mib']:.0f} -> "
            f"{max(run['rss_hourly_mib'] or [run['rss_end_mib']]):.0f} (max hourly) -> "
            f"{run['rss_end_mib']:.0f} MiB",
            flush=True,
        )
        print(f"  RSS after each simulated hour (MiB): {run['rss_hourly_mib']}", flush=True)
    if len(runs) > 1:
        walls = [run["wall_s"] for run in runs]
        cpus = [run["cpu_s"] for run in runs]
        print(
            f"median of {len(runs)}: wall {statistics.median(walls):.1f} s "
            f"(runs {', '.join(f'{w:.1f}' for w in walls)}), "
            f"CPU {statistics.median(cpus):.1f} s"
        )


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    main()
