"""Dashboard in a real browser: page load → first live numbers, and JS heap under a steady feed.

Every ESSEN service is a real process on loopback (as in ``tests/e2e``): the fake Graph
API (``bench/servers/fake_graph_server.py``), ``essen admin`` serving ``dashboard/dist``
and one ``essen bot``, with a fresh ``ESSEN_DATA_DIR``.  Debian's chromium
(``/usr/bin/chromium``, headless, driven by Playwright; nothing is downloaded) shows the
dashboard.

1. **Page load → first live numbers.**  Signed in once, the page is reloaded ``--reloads``
   times (the session is in ``sessionStorage``, so a reload opens the dashboard directly);
   for each load, the time from navigation start until the Metrics panel is live
   (``data-live="true"``: the subscribe snapshot applied) and the messages-per-minute card
   shows a number.  Also the time from clicking *Sign in* to the same point.  Measured
   before the feed starts (idle) and again at the end (under the feed).
2. **Heap under the feed.**  A new page, signed in, watches while a load generator POSTs
   signed webhooks to the bot at ``--rate`` messages/s (default 20; open loop) for
   ``--minutes`` (default 30).  Every ``--sample-every`` seconds (default 30) the page's
   garbage is collected through CDP (``HeapProfiler.collectGarbage``) and
   ``Performance.getMetrics`` read: ``JSHeapUsedSize``, ``JSHeapTotalSize``, DOM
   ``Nodes``, ``JSEventListeners``.  Samples in the first ``--warmup`` seconds (default
   60: the feed fills to its limit, the activity window and the trend history fill)
   are left out of the verdict.  The heap is called *flat* when the least-squares slope
   over the rest, times their span, is below ``--flat-mib`` MiB (default 1) and below
   ``--flat-pct`` percent (default 10) of the first post-warm-up sample.

    .venv/bin/python bench/dashboard_memory.py                 # 30 minutes
    .venv/bin/python bench/dashboard_memory.py --minutes 5     # quick run

Prints a table of the samples and the verdict; writes everything to
``bench/results/dashboard-memory-<timestamp>.json``.  Services' logs go next to it in
``bench/results/dashboard-memory-<timestamp>-logs/``.  Exit status 0 when the heap is
flat, 1 when it grew, 2 when the run itself failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import httpx  # noqa: E402
from e2e_services import (  # noqa: E402
    ADMIN_PASSWORD,
    ADMIN_USER,
    CHROMIUM,
    CHROMIUM_ARGS,
    DASHBOARD_DIST,
    System,
    clone_data_dir,
    prepare_data_dir,
    start_fake_graph,
)

os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"

RESULTS = ROOT / "bench" / "results"
INSTANCE = "bench-bot"
MIB = 1024 * 1024

#: Records (performance.now(), ms since navigation start) when the page first shows live
#: numbers, then stops watching; counts feed rows added (one integer, no references kept).
PAGE_PROBE = """
(() => {
  const probe = { firstLive: null, rowsAdded: 0 };
  window.__bench = probe;
  const live = () => {
    const section = document.getElementById("metrics");
    const value = document.querySelector('[data-testid="card-messages-per-minute-value"]');
    return section?.dataset.live === "true" && /\\d/.test(value?.textContent ?? "");
  };
  const watcher = new MutationObserver(() => {
    if (probe.firstLive === null && live()) {
      probe.firstLive = performance.now();
      watcher.disconnect();
    }
  });
  watcher.observe(document, {
    subtree: true, childList: true, characterData: true, attributes: true,
  });
  const attachFeedCounter = () => {
    const list = document.getElementById("feed-list");
    if (!list) return false;
    new MutationObserver((records) => {
      for (const r of records) probe.rowsAdded += r.addedNodes.length;
    }).observe(list, { childList: true });
    return true;
  };
  if (!attachFeedCounter()) document.addEventListener("DOMContentLoaded", attachFeedCounter);
})();
"""

WORDS = ["hello", "opening hours?", "menu please", "where are you", "thanks", "good morning"]


class LoadGenerator(threading.Thread):
    """Open-loop signed webhooks at ``rate``/s, one text message per POST, ``users`` senders."""

    def __init__(self, system: System, rate: float, users: int = 40) -> None:
        super().__init__(name="loadgen", daemon=True)
        self.system = system
        self.rate = rate
        self.users = users
        self.stop_event = threading.Event()
        self.sent = 0
        self.errors = 0
        self.late = 0
        self.max_lag_s = 0.0
        self.error_samples: list[str] = []
        self.started = self.ended = 0.0

    def run(self) -> None:
        start = self.started = time.monotonic()
        i = 0
        with httpx.Client(timeout=10) as client:
            while not self.stop_event.is_set():
                due = start + i / self.rate
                lag = time.monotonic() - due
                if lag < 0:
                    # Pacing: wait for the next send slot (or stop).
                    if self.stop_event.wait(-lag):
                        break
                else:
                    self.max_lag_s = max(self.max_lag_s, lag)
                    if lag > 0.5:
                        self.late += 1
                psid = f"25{i % self.users:014d}"
                text = f"{WORDS[i % len(WORDS)]} #{i}"
                try:
                    self.system.send_text(INSTANCE, text, psid=psid, client=client)
                    self.sent += 1
                except Exception as exc:
                    self.errors += 1
                    if len(self.error_samples) < 5:
                        self.error_samples.append(repr(exc))
                i += 1
        self.ended = time.monotonic()


def sign_in(page: Any, url: str) -> float:
    """Sign in; returns ms (page clock) from the click to live numbers."""
    from playwright.sync_api import expect

    page.goto(f"{url}/")
    page.get_by_label("Username").fill(ADMIN_USER)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    clicked = page.evaluate("performance.now()")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_function("window.__bench.firstLive !== null", timeout=30_000)
    expect(page.locator("#metrics")).to_have_attribute("data-live", "true")
    return float(page.evaluate("window.__bench.firstLive")) - float(clicked)


def load_times(page: Any, reloads: int) -> list[dict[str, float]]:
    """Reload ``reloads`` times; per load: navigation start → DOMContentLoaded, load, live."""
    out = []
    for _ in range(reloads):
        page.reload()
        page.wait_for_function("window.__bench.firstLive !== null", timeout=30_000)
        timing = page.evaluate(
            """() => {
              const nav = performance.getEntriesByType("navigation")[0];
              return {dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
                      live: window.__bench.firstLive};
            }"""
        )
        out.append({k: round(float(v), 1) for k, v in timing.items()})
    return out


def heap_sample(cdp: Any, page: Any, t0: float, load: LoadGenerator) -> dict[str, Any]:
    cdp.send("HeapProfiler.collectGarbage")
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    page_side = page.evaluate(
        """() => ({
          used: performance.memory ? performance.memory.usedJSHeapSize : null,
          rows: document.querySelectorAll('[data-testid="feed-row"]').length,
          added: window.__bench.rowsAdded,
          live: document.getElementById("metrics").dataset.live,
          mpm: document.querySelector('[data-testid="card-messages-per-minute-value"]').textContent,
        })"""
    )
    return {
        "t_s": round(time.monotonic() - t0, 1),
        "heap_used": int(metrics["JSHeapUsedSize"]),
        "heap_total": int(metrics["JSHeapTotalSize"]),
        "nodes": int(metrics["Nodes"]),
        "listeners": int(metrics["JSEventListeners"]),
        "documents": int(metrics["Documents"]),
        "perf_memory_used": page_side["used"],
        "feed_rows": page_side["rows"],
        "rows_added": page_side["added"],
        "live": page_side["live"] == "true",
        "card_mpm": page_side["mpm"],
        "sent": load.sent,
        "errors": load.errors,
    }


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) in value per minute."""
    if len(points) < 2:
        return 0.0
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return 60.0 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def verdict(
    samples: list[dict[str, Any]], warmup_s: float, flat_mib: float, flat_pct: float
) -> dict[str, Any]:
    kept = [s for s in samples if s["t_s"] >= warmup_s]
    if len(kept) < 3:
        return {"flat": None, "reason": "fewer than 3 samples after the warm-up"}
    points = [(s["t_s"], s["heap_used"]) for s in kept]
    slope = slope_per_min(points)
    span_min = (kept[-1]["t_s"] - kept[0]["t_s"]) / 60
    growth = slope * span_min
    first = kept[0]["heap_used"]
    heaps = [s["heap_used"] for s in kept]
    flat = growth < flat_mib * MIB and growth < first * flat_pct / 100
    return {
        "flat": flat,
        "samples_used": len(kept),
        "span_min": round(span_min, 2),
        "slope_kib_per_min": round(slope / 1024, 2),
        "fitted_growth_kib": round(growth / 1024, 1),
        "first_mib": round(first / MIB, 3),
        "last_mib": round(kept[-1]["heap_used"] / MIB, 3),
        "min_mib": round(min(heaps) / MIB, 3),
        "max_mib": round(max(heaps) / MIB, 3),
        "nodes_min_max": [min(s["nodes"] for s in kept), max(s["nodes"] for s in kept)],
        "listeners_min_max": [min(s["listeners"] for s in kept), max(s["listeners"] for s in kept)],
        "criterion": f"fitted growth < {flat_mib} MiB and < {flat_pct}% of the first sample",
    }


def summarize_loads(loads: list[dict[str, float]]) -> dict[str, Any]:
    live = [x["live"] for x in loads]
    return {
        "live_ms_median": round(statistics.median(live), 1),
        "live_ms_min": min(live),
        "live_ms_max": max(live),
        "dcl_ms_median": round(statistics.median(x["dcl"] for x in loads), 1),
        "load_ms_median": round(statistics.median(x["load"] for x in loads), 1),
        "runs": loads,
    }


def rss_mib(pid: int) -> float | None:
    try:
        import psutil

        return round(psutil.Process(pid).memory_info().rss / MIB, 1)
    except Exception:
        return None


def run(args: argparse.Namespace) -> int:
    from playwright.sync_api import sync_playwright

    if not (DASHBOARD_DIST / "index.html").is_file():
        print(
            f"{DASHBOARD_DIST} is not built: cd dashboard && npm ci && npm run build",
            file=sys.stderr,
        )
        return 2
    if not os.access(CHROMIUM, os.X_OK):
        print(f"{CHROMIUM} is missing (apt-get install chromium)", file=sys.stderr)
        return 2
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_path = Path(args.out) if args.out else RESULTS / f"dashboard-memory-{stamp}.json"
    log_dir = out_path.with_name(out_path.stem + "-logs")
    result: dict[str, Any] = {
        "config": {k: v for k, v in vars(args).items()},
        "host": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        },
        "started": stamp,
    }
    chromium_version = subprocess.run(
        [CHROMIUM, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    result["host"]["chromium"] = chromium_version

    with tempfile.TemporaryDirectory(prefix="essen-dashmem-") as tmp:
        template = Path(tmp) / "template"
        prepare_data_dir(template, log_dir)
        clone_data_dir(template, Path(tmp) / "data")
        # Every Send API call of the run is kept, so the fake's count of answers is exact
        # (a message costs a typing indicator and an answer; a margin for the page loads).
        max_records = int(args.rate * (args.minutes * 60 + 600) * 3) + 10_000
        graph = start_fake_graph(log_dir, "--max-records", str(max_records))
        system = System(Path(tmp) / "data", log_dir, graph.url)
        load = LoadGenerator(system, args.rate)
        try:
            system.start_admin(port=0)
            system.start_bot(INSTANCE, METRICS_INTERVAL=args.metrics_interval)
            print(f"admin {system.admin_url}, bot {system.bot_urls[INSTANCE]}, graph {graph.url}")
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
                )

                # 1. page load → first live numbers (idle).
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                context.add_init_script(PAGE_PROBE)
                page = context.new_page()
                login_ms = sign_in(page, system.admin_url)
                idle = summarize_loads(load_times(page, args.reloads))
                result["first_live_idle"] = {"sign_in_click_to_live_ms": round(login_ms, 1), **idle}
                print(
                    f"idle: sign-in click → live numbers {login_ms:.0f} ms; "
                    f"reload → live numbers median {idle['live_ms_median']:.0f} ms "
                    f"(min {idle['live_ms_min']:.0f}, max {idle['live_ms_max']:.0f}; "
                    f"DOMContentLoaded {idle['dcl_ms_median']:.0f} ms)"
                )
                context.close()

                # 2. heap under the feed: one page, never reloaded.
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                context.add_init_script(PAGE_PROBE)
                page = context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                sign_in(page, system.admin_url)
                cdp = context.new_cdp_session(page)
                cdp.send("Performance.enable")
                load.start()
                t0 = time.monotonic()
                samples: list[dict[str, Any]] = []
                duration_s = args.minutes * 60
                header = (
                    f"{'t (s)':>7} {'heap MiB':>9} {'total MiB':>9} {'nodes':>6} {'listen':>6}"
                    f" {'rows':>5} {'added':>7} {'sent':>7} {'err':>4} {'live':>5} {'card':>6}"
                    f" {'admin MiB':>9} {'bot MiB':>8}"
                )
                print(header)
                next_at = 0.0
                while True:
                    wait_ms = (t0 + next_at - time.monotonic()) * 1000
                    if wait_ms > 0:
                        page.wait_for_timeout(wait_ms)  # the sampling interval
                    sample = heap_sample(cdp, page, t0, load)
                    sample["admin_rss_mib"] = rss_mib(system.admin.pid) if system.admin else None
                    sample["bot_rss_mib"] = rss_mib(system.bots[INSTANCE].pid)
                    samples.append(sample)
                    print(
                        f"{sample['t_s']:>7.0f} {sample['heap_used'] / MIB:>9.2f}"
                        f" {sample['heap_total'] / MIB:>9.2f} {sample['nodes']:>6}"
                        f" {sample['listeners']:>6} {sample['feed_rows']:>5}"
                        f" {sample['rows_added']:>7} {sample['sent']:>7} {sample['errors']:>4}"
                        f" {sample['live']!s:>5} {sample['card_mpm']:>6}"
                        f" {sample['admin_rss_mib'] or 0:>9.1f} {sample['bot_rss_mib'] or 0:>8.1f}",
                        flush=True,
                    )
                    result["samples"] = samples
                    out_path.write_text(json.dumps(result, indent=2) + "\n")
                    if next_at >= duration_s:
                        break
                    next_at = min(next_at + args.sample_every, duration_s)

                # 1 again, under the feed.
                context.close()
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                context.add_init_script(PAGE_PROBE)
                page = context.new_page()
                login_ms = sign_in(page, system.admin_url)
                busy = summarize_loads(load_times(page, args.reloads))
                result["first_live_under_feed"] = {
                    "sign_in_click_to_live_ms": round(login_ms, 1),
                    **busy,
                }
                print(
                    f"under the feed: sign-in click → live numbers {login_ms:.0f} ms; "
                    f"reload → live numbers median {busy['live_ms_median']:.0f} ms "
                    f"(min {busy['live_ms_min']:.0f}, max {busy['live_ms_max']:.0f})"
                )
                context.close()
                load.stop_event.set()
                load.join(timeout=15)
                browser.close()
            summary = httpx.get(f"{graph.url}/_bench/summary", timeout=60).json()
        finally:
            load.stop_event.set()
            system.stop()
            graph.service.stop()

    result["load"] = {
        "rate": args.rate,
        "sent": load.sent,
        "errors": load.errors,
        "error_samples": load.error_samples,
        "late_sends": load.late,
        "max_lag_s": round(load.max_lag_s, 3),
        "achieved_rate": round(load.sent / max(load.ended - load.started, 1e-9), 2),
        "graph_answers_total": summary.get("answers_total"),
        "graph_records_dropped": summary.get("dropped"),
    }
    result["page_errors"] = errors
    result["verdict"] = verdict(samples, args.warmup, args.flat_mib, args.flat_pct)
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    v = result["verdict"]
    print(f"load: {result['load']}")
    if errors:
        print(f"uncaught page errors: {errors[:5]}")
    print(
        f"heap after GC, t ≥ {args.warmup:.0f} s: {v.get('first_mib')} → {v.get('last_mib')} MiB "
        f"(min {v.get('min_mib')}, max {v.get('max_mib')}); "
        f"slope {v.get('slope_kib_per_min')} KiB/min "
        f"over {v.get('span_min')} min; DOM nodes {v.get('nodes_min_max')}; "
        f"{'FLAT' if v.get('flat') else 'GROWING' if v.get('flat') is False else 'UNDECIDED'} "
        f"({v.get('criterion', v.get('reason'))})"
    )
    print(f"written to {out_path}")
    if v.get("flat") is None or errors or load.errors:
        return 2
    return 0 if v["flat"] else 1


def _interrupt(signum: int, _frame: Any) -> None:
    """SIGTERM ends the run like Ctrl-C: through the finally blocks (services stopped)."""
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes", type=float, default=30.0, help="length of the feed (default 30)"
    )
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second (default 20)")
    parser.add_argument("--sample-every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument(
        "--warmup", type=float, default=60.0, help="seconds left out of the verdict"
    )
    parser.add_argument("--reloads", type=int, default=5, help="page loads timed, idle and busy")
    parser.add_argument(
        "--metrics-interval", type=float, default=1.0, help="the bot's METRICS_INTERVAL"
    )
    parser.add_argument("--flat-mib", type=float, default=1.0)
    parser.add_argument("--flat-pct", type=float, default=10.0)
    parser.add_argument(
        "--out", help="result JSON (default bench/results/dashboard-memory-<ts>.json)"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
