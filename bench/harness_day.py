"""A long simulated day through the whole in-process system (essen.testing.system).

    .venv/bin/python bench/harness_day.py --hours 24 --rate 0.5

Runs users talking to the bot at ``rate`` messages/s for ``hours`` simulated
hours under MockClock (bot, admin API, fake Graph API and a dashboard over the
memory network, the trace capped at 100k entries) and reports the wall time,
the wall time per simulated message, and the process RSS at the start and the end.
"""

from __future__ import annotations

import argparse
import random
import time

import psutil
import trio
import trio.testing

from essen.testing import system


async def day(hours: float, rate: float, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    process = psutil.Process()
    rss_start = process.memory_info().rss
    sent = 0
    async with system(seed=seed, bots=1, dashboards=1, trace_limit=20_000) as s:
        t_end = trio.current_time() + hours * 3600
        rss_marks = []
        next_mark = trio.current_time() + 3600
        while trio.current_time() < t_end:
            await s.advance(rng.expovariate(rate))
            await s.user(rng.randrange(200)).say(rng.choice(("hi", "menu", "hours", "where?")))
            sent += 1
            if trio.current_time() >= next_mark:
                next_mark += 3600
                rss_marks.append(process.memory_info().rss)
        await s.advance(5)
        answered = sum(1 for m in s.dashboards[0].live_messages() if m["direction"] == "in")
    return {"sent": sent, "seen_by_dashboard": answered, "rss_start_mib": rss_start / 2**20,
            "rss_end_mib": process.memory_info().rss / 2**20,
            "rss_hourly_mib": [round(r / 2**20, 1) for r in rss_marks]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--rate", type=float, default=0.5, help="messages per simulated second")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.monotonic()
    result = trio.run(day, args.hours, args.rate, args.seed,
                      clock=trio.testing.MockClock(autojump_threshold=0))
    wall = time.monotonic() - started
    print(f"{args.hours:g} simulated h at {args.rate:g} msg/s: {result['sent']} messages, "
          f"{result['seen_by_dashboard']} seen by the dashboard, wall {wall:.1f} s "
          f"({wall / max(1, result['sent']) * 1e3:.2f} ms per message)")
    print(f"RSS {result['rss_start_mib']:.0f} MiB -> {result['rss_end_mib']:.0f} MiB; "
          f"hourly {result['rss_hourly_mib']}")


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.ERROR)
    main()
