"""Memory soak of the facebook-bot: a simulated day of webhooks in one process, under MockClock.

The whole bot (``essen.bot.run_bot`` with ``serve=False``) runs on
``trio.testing.MockClock(autojump_threshold=0)``: simulated time jumps ahead whenever
every task is waiting, so a day of traffic takes only the CPU the messages cost.  No
sockets: signed webhook POSTs go to the bot's ASGI app through ``httpx.ASGITransport``,
the Send API to the fake Graph API through another ``ASGITransport``, and the uplink to
an in-memory Socket.IO stand-in (``essen.realtime.transports.MemoryNetwork``), as in
``tests/harness/bot_rig.py``.  The stand-in only counts what arrives (it keeps nothing),
and the fake Graph API keeps its last ``--fake-records`` records, so the harness itself
holds bounded memory.

Every ``--sample-minutes`` of simulated time (default 60) it samples the process RSS
(psutil), tracemalloc's traced memory, and the bot's counters, and at the end prints the
curve, the wall time, and the growth from hour 2 (``--flat-from``) to the end, with the
top tracemalloc differences over that span.

    .venv/bin/python bench/bot_soak.py [--hours 24] [--rate 50] [--estimate]
        [--sample-minutes 60] [--no-tracemalloc] [--out PATH]

``--estimate`` runs 2 simulated minutes first and prints the wall time the full run would
take; a day at 50 msg/s is 4.3 M messages, so on a small machine run a lower ``--rate``
for 24 h and a shorter ``--hours`` at 50 msg/s (see bench/README.md).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import hmac
import json
import logging
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import trio
import trio.testing

from essen.bot import BotHandles, run_bot
from essen.clock import TrioWallClock
from essen.config import load_bot_settings
from essen.errors import ConnectionRefused
from essen.messenger.fake_graph import RecordPolicy, create_fake_graph
from essen.messenger.send_policy import RetryPolicy
from essen.realtime import EngineConfig, ServerOptions, Socket, SocketIOMount, SocketIOServer
from essen.realtime._http import json_error, respond
from essen.realtime.backoff import BackoffPolicy
from essen.realtime.transports import MemoryNetwork

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS_DIR = BENCH / "results"

APP_SECRET = "soak-app-secret-" + "a" * 32
PAGE_TOKEN = "soak-page-token-" + "p" * 32
SERVICE_SECRET = "soak-service-secret-" + "s" * 32
PAGE_ID = "100000000000001"
PSID_BASE = 7_200_000_000_000_000
TEXTS = (
    "What are your opening hours?",
    "Can I see the menu please",
    "Where are you located?",
    "Hello!",
    "How can I reserve a table?",
    "blorp quux frobnicate",
)
#: The webhook actor's dedupe cache (essen.actors.webhook.WebhookConfig defaults): the
#: largest buffer that fills with traffic, full at min(entries, rate * ttl) entries.
DEDUPE_ENTRIES = 50_000
DEDUPE_TTL_S = 6 * 3600.0


class Switchboard:
    """The admin stand-in's ASGI app, switchable (copied from tests/harness/conftest.py)."""

    def __init__(self) -> None:
        self.target: SocketIOMount | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.target is not None:
            await self.target(scope, receive, send)
        elif scope["type"] == "http":
            await respond(send, 503, json_error(3, "server down"))
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1011})


class CountingAdmin:
    """A Socket.IO server that accepts the bot's service auth and only counts what arrives."""

    def __init__(self, seed: int) -> None:
        self.server = SocketIOServer(
            ServerOptions(engine=EngineConfig(ping_interval=25.0, ping_timeout=20.0)),
            rng=random.Random(seed),
        )
        self.batches = 0
        self.events_in = 0
        self.events_out = 0
        self.answered_in = 0
        self.snapshots = 0
        self.health = 0
        self.last_totals: dict[str, int] = {}

        @self.server.use
        async def auth(socket: Socket, payload: dict[str, Any] | None) -> None:
            if not payload or payload.get("secret") != SERVICE_SECRET:
                raise ConnectionRefused("unknown service")

        @self.server.on("message:processed")
        async def processed(socket: Socket, batch: dict[str, Any]) -> None:
            self.batches += 1
            for event in batch["events"]:
                if event["direction"] == "in":
                    self.events_in += 1
                    self.answered_in += event["outcome"] == "answered"
                else:
                    self.events_out += 1

        @self.server.on("metrics:update")
        async def metrics(socket: Socket, snapshot: dict[str, Any]) -> None:
            self.snapshots += 1
            self.last_totals = snapshot["totals"]

        @self.server.on("health:changed")
        async def health(socket: Socket, change: dict[str, Any]) -> None:
            self.health += 1


def signed_post(n: int, user: int, at_ms: int) -> tuple[bytes, dict[str, str]]:
    item = {
        "sender": {"id": str(PSID_BASE + user)},
        "recipient": {"id": PAGE_ID},
        "timestamp": at_ms,
        "message": {"mid": f"m_soak_{n}", "text": TEXTS[n % len(TEXTS)]},
    }
    body = json.dumps(
        {"object": "page", "entry": [{"id": PAGE_ID, "time": at_ms, "messaging": [item]}]}
    ).encode()
    digest = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def soak(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    proc = psutil.Process()
    rng = random.Random(args.seed)
    fake = create_fake_graph(
        page_token=PAGE_TOKEN,
        page_id=PAGE_ID,
        rng=random.Random(args.seed),
        record_policy=RecordPolicy(max_records=args.fake_records),
    )
    graph_http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fake.app),  # type: ignore[arg-type]
        base_url="http://graph.test",
    )
    switch = Switchboard()
    network = MemoryNetwork(switch)
    admin = CountingAdmin(args.seed)
    settings = load_bot_settings(
        essen_data_dir=data_dir,
        admin_backend_url="http://essen.test",
        admin_socket_path="/socket.io/",
        bot_service_secret=SERVICE_SECRET,
        bot_instance="bot-soak",
        fb_app_secret=APP_SECRET,
        fb_verify_token="soak-verify-" + "v" * 32,
        fb_page_access_token=PAGE_TOKEN,
        fb_graph_url="http://graph.test",
        debug_token="soak-debug-" + "d" * 32,
        pseudonym_key="soak-pseudonym-" + "k" * 32,
    )
    sim_seconds = args.hours * 3600.0
    n_messages = round(sim_seconds * args.rate)
    sample_every = args.sample_minutes * 60.0
    samples: list[dict[str, Any]] = []
    # Snapshots go to files at once: one held in memory would be counted in the RSS curve.
    tm_paths: dict[str, Path] = {}
    wall0 = time.monotonic()
    cpu0 = cpu_s()
    sent = 0
    statuses: dict[int, int] = {}

    async with trio.open_nursery() as nursery:
        # The admin stand-in first, so that the uplink's first handshake finds it.
        await nursery.start(admin.server.run)
        switch.target = SocketIOMount(None, admin.server)
        handles: BotHandles = await nursery.start(
            lambda task_status: run_bot(
                settings,
                serve=False,
                graph_http=graph_http,
                uplink_network=network,
                wall=TrioWallClock(),
                rng=random.Random(args.seed),
                retry_policy=RetryPolicy(backoff=BackoffPolicy(initial=0.5, maximum=8.0)),
                task_status=task_status,
            )
        )
        webhook = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=handles.app), base_url="http://bot.test"
        )
        t0 = trio.current_time()

        def dump_snapshot(label: str) -> None:
            if tracemalloc.is_tracing():
                tm_paths[label] = data_dir / f"tracemalloc-{label}.snapshot"
                tm = tracemalloc.take_snapshot()
                tm.dump(str(tm_paths[label]))
                del tm

        async def sample(label: str | None = None) -> None:
            sim = trio.current_time() - t0
            # Let the bot finish what is in flight, so that samples compare like with like.
            await trio.sleep(1.0)
            if label == "flat_from":
                # Before the RSS is read: what the snapshot leaves behind (pymalloc keeps
                # arenas) is then in this sample and every later one alike.
                dump_snapshot(label)
            gc.collect()
            snapshot = await handles.metrics.snapshot()
            traced = tracemalloc.get_traced_memory() if tracemalloc.is_tracing() else (0, 0)
            rec = {
                "sim_h": sim / 3600.0,
                "wall_s": time.monotonic() - wall0,
                "cpu_s": cpu_s() - cpu0,
                "rss_mib": proc.memory_info().rss / 2**20,
                "traced_mib": traced[0] / 2**20,
                "traced_peak_mib": traced[1] / 2**20,
                "tracemalloc_overhead_mib": tracemalloc.get_tracemalloc_memory() / 2**20,
                "allocated_blocks": sys.getallocatedblocks(),
                "sent": sent,
                "received": snapshot.totals.get("received", 0),
                "answered": snapshot.totals.get("outcome:answered", 0),
                "failed": snapshot.totals.get("outcome:failed", 0),
                "duplicates": snapshot.totals.get("duplicates", 0),
                "inbox_rejected": snapshot.totals.get("inbox_rejected", 0),
                "send_api_200": snapshot.totals.get("send_api:200", 0),
                "graph_requests": fake.statistics().total,
                "uplink_events": handles.uplink_stats.events,
                "admin_events_in": admin.events_in,
                "metrics_dropped": handles.metrics.dropped,
                "gc_objects": len(gc.get_objects()),
            }
            samples.append(rec)
            del snapshot  # not in the last tracemalloc snapshot: it is the harness's
            if label == "end":
                dump_snapshot(label)  # after the last RSS reading
            print(
                f"  sim {rec['sim_h']:6.2f} h  wall {rec['wall_s']:7.1f} s  "
                f"RSS {rec['rss_mib']:7.1f} MiB  traced {rec['traced_mib']:6.1f} MiB  "
                f"sent {sent:>9}  answered {rec['answered']:>9}  objects {rec['gc_objects']}",
                flush=True,
            )

        await sample("start")
        t0 = trio.current_time()  # message time starts after the first sample
        next_sample = sample_every
        flat_from = args.flat_from * 3600.0
        flat_label_taken = False
        epoch_ms = 1_767_225_600_000

        async def samples_due(until: float) -> None:
            """Take every sample due before simulated time ``until`` (from t0)."""
            nonlocal t0, next_sample, flat_label_taken
            while next_sample <= until and next_sample < sim_seconds - 1e-9:
                await trio.sleep_until(t0 + next_sample)
                label = None
                if not flat_label_taken and next_sample >= flat_from - 1e-9:
                    label, flat_label_taken = "flat_from", True
                await sample(label)
                t0 += 1.0  # the sample's settle second is not message time
                next_sample += sample_every

        for n in range(n_messages):
            at = n / args.rate
            await samples_due(at)
            await trio.sleep_until(t0 + at)
            body, headers = signed_post(n, rng.randrange(args.users), epoch_ms + int(at * 1000))
            response = await webhook.post("/webhook", content=body, headers=headers)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            sent += 1
        await samples_due(sim_seconds)
        await trio.sleep_until(t0 + sim_seconds)
        await sample("end")
        end_stats = {
            "statuses": {str(k): v for k, v in statuses.items()},
            "fake": fake.statistics().total,
            "uplink": vars(handles.uplink_stats),
            "admin": {
                "batches": admin.batches,
                "events_in": admin.events_in,
                "events_out": admin.events_out,
                "answered_in": admin.answered_in,
                "snapshots": admin.snapshots,
                "health": admin.health,
            },
        }
        # Stop the bot first: closing the network under a running uplink makes it reconnect.
        nursery.cancel_scope.cancel()
    await webhook.aclose()
    await graph_http.aclose()
    await network.aclose()
    top: list[str] = []
    if "flat_from" in tm_paths and "end" in tm_paths:
        top = top_growth(
            tracemalloc.Snapshot.load(str(tm_paths["flat_from"])),
            tracemalloc.Snapshot.load(str(tm_paths["end"])),
        )
    return {"samples": samples, "end": end_stats, "tm_top": top, "messages": n_messages}


def git_head() -> str | None:
    """The commit under test, with ``+dirty`` when essen/ has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "essen"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return None
    return f"{head}+dirty" if dirty else head or None


def top_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, n: int = 8) -> list[str]:
    stats = after.compare_to(before, "lineno")
    return [str(s) for s in stats[:n]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument("--hours", type=float, default=24.0, help="simulated hours")
    ap.add_argument("--rate", type=float, default=50.0, help="simulated messages per second")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--sample-minutes", type=float, default=60.0, help="simulated minutes")
    ap.add_argument(
        "--flat-from",
        type=float,
        default=2.0,
        help="simulated hour from which RSS should be flat (growth reported from there)",
    )
    ap.add_argument("--fake-records", type=int, default=1000, help="fake Graph API records kept")
    ap.add_argument("--no-tracemalloc", action="store_true")
    ap.add_argument("--tracemalloc-frames", type=int, default=1)
    ap.add_argument(
        "--estimate",
        action="store_true",
        help="run 2 simulated minutes and print how long the full run would take",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")

    if args.estimate:
        full_run = (args.hours, args.sample_minutes)
        args.hours, args.sample_minutes = 2 / 60, 1.0
    if not args.no_tracemalloc:
        tracemalloc.start(args.tracemalloc_frames)
    n = round(args.hours * 3600 * args.rate)
    print(
        f"soak: {args.hours:g} simulated h at {args.rate:g} msg/s = {n:,} messages, "
        f"{args.users} users, sample every {args.sample_minutes:g} simulated min, "
        f"tracemalloc {'off' if args.no_tracemalloc else f'on ({args.tracemalloc_frames} frame)'}",
        flush=True,
    )
    wall0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="essen-soak-") as tmp:
        result = trio.run(soak, args, Path(tmp), clock=trio.testing.MockClock(autojump_threshold=0))
    wall = time.monotonic() - wall0
    samples = result["samples"]
    last = samples[-1]
    msg_wall = (last["wall_s"] - samples[0]["wall_s"]) or 1e-9
    per_msg_ms = msg_wall / max(1, last["sent"]) * 1000
    per_msg_cpu_ms = (last["cpu_s"] - samples[0]["cpu_s"]) / max(1, last["sent"]) * 1000
    if args.estimate:
        hours, _ = full_run
        total = hours * 3600 * args.rate * per_msg_ms / 1000
        print(
            f"\nestimate: {per_msg_ms:.2f} ms wall ({per_msg_cpu_ms:.2f} ms CPU) per message "
            f"-> {hours:g} h at {args.rate:g} msg/s would take ~{total / 60:.0f} min wall "
            f"({hours * 3600 * args.rate:,.0f} messages); in 10 min: "
            f"~{600 / per_msg_ms * 1000 / args.rate / 3600:.2f} simulated h at this rate, or "
            f"{hours:g} h at ~{600 / per_msg_ms * 1000 / (hours * 3600):.2f} msg/s"
        )
        return 0

    print()
    print(f"== RSS curve ({args.hours:g} simulated h at {args.rate:g} msg/s)")
    print(
        f"{'sim h':>7} {'wall s':>8} {'RSS MiB':>8} {'traced MiB':>11} {'sent':>10} "
        f"{'answered':>10} {'objects':>9}"
    )
    for s in samples:
        print(
            f"{s['sim_h']:7.2f} {s['wall_s']:8.1f} {s['rss_mib']:8.1f} {s['traced_mib']:11.2f} "
            f"{s['sent']:>10} {s['answered']:>10} {s['gc_objects']:>9}"
        )
    flat_start = next((s for s in samples if s["sim_h"] >= args.flat_from - 1e-6), None)
    dedupe_full_h = min(DEDUPE_ENTRIES / args.rate, DEDUPE_TTL_S) / 3600.0
    report: dict[str, Any] = {
        "messages": result["messages"],
        "wall_s": wall,
        "wall_per_message_ms": per_msg_ms,
        "cpu_per_message_ms": per_msg_cpu_ms,
        "rss_start_mib": samples[0]["rss_mib"],
        "rss_end_mib": last["rss_mib"],
        "rss_max_mib": max(s["rss_mib"] for s in samples),
        "dedupe_full_at_h": dedupe_full_h,
    }
    print(
        f"\nwall {wall:.0f} s for {last['sent']:,} messages "
        f"({per_msg_ms:.2f} ms wall, {per_msg_cpu_ms:.2f} ms CPU per message; "
        f"{args.hours * 3600 / wall:.0f}x real time)"
    )
    print(
        f"answered {last['answered']:,}/{last['sent']:,}, failed {last['failed']}, "
        f"duplicates {last['duplicates']}, inbox rejected {last['inbox_rejected']}, "
        f"metrics dropped {last['metrics_dropped']}; webhook statuses {result['end']['statuses']}"
    )
    print(
        f"fake Graph API requests {result['end']['fake']:,} "
        f"(3 per answered message + 1 token check = {3 * last['answered'] + 1:,}); "
        f"admin stream: {result['end']['admin']}"
    )
    print(
        f"dedupe cache (the largest traffic-filled buffer) full after ~{dedupe_full_h:.2f} "
        f"simulated h at this rate ({min(DEDUPE_ENTRIES, args.rate * DEDUPE_TTL_S):,.0f} entries)"
    )
    if flat_start is not None and flat_start is not last:
        span_h = last["sim_h"] - flat_start["sim_h"]
        d_rss = last["rss_mib"] - flat_start["rss_mib"]
        d_tr = last["traced_mib"] - flat_start["traced_mib"]
        report.update(
            flat_from_h=flat_start["sim_h"],
            rss_growth_mib=d_rss,
            traced_growth_mib=d_tr,
            rss_growth_mib_per_h=d_rss / span_h if span_h else None,
            objects_growth=last["gc_objects"] - flat_start["gc_objects"],
        )
        print(
            f"growth from {flat_start['sim_h']:.2f} h to {last['sim_h']:.2f} h: "
            f"RSS {d_rss:+.2f} MiB ({d_rss / span_h:+.3f} MiB/h), tracemalloc {d_tr:+.3f} MiB, "
            f"gc objects {last['gc_objects'] - flat_start['gc_objects']:+,}"
        )
        if result["tm_top"]:
            top = result["tm_top"]
            report["tracemalloc_top_growth"] = top
            print("top tracemalloc differences over that span:")
            for line in top:
                print(f"  {line}")
        full = next((s for s in samples if s["sim_h"] >= dedupe_full_h - 1e-6), None)
        if full is not None and full is not last and full["sim_h"] > flat_start["sim_h"]:
            span_full = last["sim_h"] - full["sim_h"]
            d_full = last["rss_mib"] - full["rss_mib"]
            report.update(
                full_from_h=full["sim_h"],
                rss_growth_full_mib=d_full,
                traced_growth_full_mib=last["traced_mib"] - full["traced_mib"],
            )
            print(
                f"growth from {full['sim_h']:.2f} h (every buffer full) to {last['sim_h']:.2f} h: "
                f"RSS {d_full:+.2f} MiB ({d_full / span_full:+.3f} MiB/h), tracemalloc "
                f"{last['traced_mib'] - full['traced_mib']:+.3f} MiB"
            )
        # A leak goes on; buffers and allocator settle.  So also the second half of the
        # span after the buffers are full (or after --flat-from, if later).
        settled_from = max(flat_start["sim_h"], dedupe_full_h)
        mid = settled_from + (last["sim_h"] - settled_from) / 2
        half = next((s for s in samples if s["sim_h"] >= mid - 1e-6), None)
        if half is not None and half is not last:
            d_half = last["rss_mib"] - half["rss_mib"]
            report.update(
                second_half_from_h=half["sim_h"],
                rss_growth_second_half_mib=d_half,
                traced_growth_second_half_mib=last["traced_mib"] - half["traced_mib"],
                objects_growth_second_half=last["gc_objects"] - half["gc_objects"],
            )
            print(
                f"growth from {half['sim_h']:.2f} h to {last['sim_h']:.2f} h (second half after "
                f"the buffers are full): RSS {d_half:+.2f} MiB, tracemalloc "
                f"{last['traced_mib'] - half['traced_mib']:+.3f} MiB, gc objects "
                f"{last['gc_objects'] - half['gc_objects']:+,}"
            )
        after = [s["rss_mib"] for s in samples if s["sim_h"] >= flat_start["sim_h"]]
        report["rss_range_after_flat_from_mib"] = [min(after), max(after)]
        print(
            f"RSS range from {flat_start['sim_h']:.2f} h on: {min(after):.1f}–{max(after):.1f} MiB"
        )
    else:
        print(f"(the run is shorter than --flat-from {args.flat_from:g} h: no flatness figure)")

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS_DIR / f"bot_soak-{stamp}.json"
    doc = {
        "started": stamp,
        "argv": sys.argv,
        "git": git_head(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "host": {
            "cpu_count": psutil.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_start": os.getloadavg(),
        },
        "report": report,
        "end": result["end"],
        "samples": samples,
    }
    out.write_text(json.dumps(doc, indent=1))
    print(f"\nresults: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
