"""Webhook throughput benchmark: the facebook-bot as a real process, over loopback.

For every (repeat, rate) this starts a fresh bot (``.venv/bin/essen bot``, configured
from the environment as in production) against two long-lived helper processes:

* the fake Graph API (``bench/servers/fake_graph_server.py``), which answers the Send
  API and counts what it answered per recipient;
* an admin stand-in: by default this file's own Socket.IO hub (``_admin-hub``, built on
  ``essen.realtime``; it checks the bot's service secret and records every
  ``message:processed`` event it streams), or the realtime demo hub (``essen demo``,
  which accepts any client) with ``--admin demo``.

A load generator process (``_loadgen``, Trio + httpx) then POSTs signed Messenger
webhooks at R events/s for D seconds (open loop: POST i leaves at t0 + i/rate whatever
happened to the others), one text message per event from one of ``--users`` users.
The driver waits until the fake Graph API has answered every accepted message (or the
drain timeout), reads the bot's ``/debug/metrics``, and stops the bot. Medians over
``--repeat`` runs are printed per rate, and everything goes to
``bench/results/webhook-<timestamp>.json``.

    .venv/bin/python bench/webhook.py [--rates 50,100,200,400] [--duration 10]
        [--repeat 3] [--events-per-post 1] [--users 200] [--graph-latency 0]
        [--retry-503] [--pin]

See bench/README.md ("Webhook") for what every row means.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import hmac
import json
import math
import os
import platform
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS_DIR = BENCH / "results"
FAKE_GRAPH = BENCH / "servers" / "fake_graph_server.py"
VENV_BIN = Path(sys.executable).parent
ESSEN = VENV_BIN / "essen"

# Secrets of the benchmark's bot (production rules: >= 32 characters, no known default).
APP_SECRET = "bench-app-secret-" + "a" * 32
PAGE_TOKEN = "bench-page-token-" + "p" * 32
SERVICE_SECRET = "bench-service-secret-" + "s" * 32
VERIFY_TOKEN = "bench-verify-token-" + "v" * 32
DEBUG_TOKEN = "bench-debug-token-" + "d" * 32
PSEUDONYM_KEY = "bench-pseudonym-key-" + "k" * 32
PAGE_ID = "100000000000001"
INSTANCE = "bench-bot"
PSID_BASE = 7_100_000_000_000_000

#: What the users write: every one gets an answer (a rule or the fallback), none asks for
#: a person (a handoff would pause that user and leave later messages unanswered).
TEXTS = (
    "What are your opening hours?",
    "Can I see the menu please",
    "Where are you located?",
    "Hello!",
    "How can I reserve a table?",
    "blorp quux frobnicate",
)

READY_TIMEOUT_S = 30.0
RSS_POLL_S = 0.1


def psid(user: int) -> str:
    return str(PSID_BASE + user)


def event_id(mid: str) -> str:
    """The id the bot gives a message's ``message:processed`` event (webhook actor)."""
    return hashlib.blake2b(f"mid:{mid}".encode(), digest_size=12).hexdigest()


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of raw values (exact, no interpolation)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


# =================================================================== load generator ===


def loadgen_main(argv: list[str]) -> int:
    """``webhook.py _loadgen``: signed POSTs at a fixed rate; one JSON line on stdout."""
    ap = argparse.ArgumentParser(prog="webhook.py _loadgen")
    ap.add_argument("--url", required=True)
    ap.add_argument("--rate", type=float, required=True, help="events per second")
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--events-per-post", type=int, default=1)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--retry-503", action="store_true")
    ap.add_argument("--retry-deadline", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tag", default="run")
    args = ap.parse_args(argv)

    import httpx
    import trio

    rng = random.Random(args.seed)
    k = args.events_per_post
    n_posts = max(1, round(args.rate * args.duration / k))
    post_interval = k / args.rate
    now_ms = int(time.time() * 1000)

    # Everything is built and signed before the clock starts.
    posts: list[tuple[bytes, dict[str, str], list[tuple[int, str]]]] = []
    for i in range(n_posts):
        items, meta = [], []
        for j in range(k):
            user = rng.randrange(args.users)
            mid = f"m_{args.tag}_{i}_{j}"
            items.append(
                {
                    "sender": {"id": psid(user)},
                    "recipient": {"id": PAGE_ID},
                    "timestamp": now_ms + i,
                    "message": {"mid": mid, "text": TEXTS[(i * k + j) % len(TEXTS)]},
                }
            )
            meta.append((user, mid))
        entry = {"id": PAGE_ID, "time": now_ms + i, "messaging": items}
        body = json.dumps({"object": "page", "entry": [entry]}).encode()
        digest = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}
        posts.append((body, headers, meta))

    status: list[int | None] = [None] * n_posts  # final status (None: transport error)
    first_status: list[int | None] = [None] * n_posts
    latency_ms: list[float] = []  # 200 responses: from the scheduled send time
    service_ms: list[float] = []  # 200 responses: from the moment the request started
    error_kinds: dict[str, int] = {}
    attempts = [0] * n_posts
    lag_max = 0.0
    in_flight = 0
    in_flight_max = 0

    async def run() -> dict[str, Any]:
        nonlocal lag_max, in_flight, in_flight_max
        limits = httpx.Limits(
            max_connections=args.connections, max_keepalive_connections=args.connections
        )
        async with httpx.AsyncClient(
            base_url=args.url, limits=limits, timeout=args.timeout
        ) as client:
            # One warm-up request opens a connection; it is not a webhook event.
            await client.get("/debug/health-quick")
            ru0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = trio.current_time() + 0.05
            wall0 = time.monotonic() + 0.05
            retry_until = t0 + args.duration + args.retry_deadline
            sys.stderr.write("PHASE send_start\n")
            sys.stderr.flush()

            async def one(i: int, scheduled: float) -> None:
                nonlocal in_flight, in_flight_max
                body, headers, _ = posts[i]
                while True:
                    attempts[i] += 1
                    started = trio.current_time()
                    in_flight += 1
                    in_flight_max = max(in_flight_max, in_flight)
                    try:
                        response = await client.post("/webhook", content=body, headers=headers)
                        code: int | None = response.status_code
                    except httpx.HTTPError as exc:
                        code = None
                        name = type(exc).__name__
                        error_kinds[name] = error_kinds.get(name, 0) + 1
                    finally:
                        in_flight -= 1
                    done = trio.current_time()
                    if attempts[i] == 1:
                        first_status[i] = code
                    status[i] = code
                    if code == 200:
                        latency_ms.append((done - scheduled) * 1000)
                        service_ms.append((done - started) * 1000)
                    if code == 503 and args.retry_503 and done + 1.0 < retry_until:
                        await trio.sleep(1.0)  # Retry-After: 1, as Facebook would honour
                        scheduled = trio.current_time()
                        continue
                    return

            async with trio.open_nursery() as nursery:
                for i in range(n_posts):
                    at = t0 + i * post_interval
                    await trio.sleep_until(at)
                    lag_max = max(lag_max, trio.current_time() - at)
                    nursery.start_soon(one, i, at)
                send_end = trio.current_time()
            last_response = trio.current_time()
            sys.stderr.write("PHASE send_end\n")
            sys.stderr.flush()
            ru1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
            return {
                "send_s": send_end - t0,
                "window_s": last_response - t0,
                "wall_window_s": time.monotonic() - wall0,
                "cpu_s": cpu,
            }

    timing = trio.run(run)
    accepted_per_user: dict[str, int] = {}
    accepted_mids: list[str] = []
    unknown_mids: list[str] = []
    rejected_events = 0
    statuses: dict[str, int] = {}
    for i, (_, _, meta) in enumerate(posts):
        key = "error" if status[i] is None else str(status[i])
        statuses[key] = statuses.get(key, 0) + 1
        if status[i] == 200:
            for user, mid in meta:
                accepted_per_user[psid(user)] = accepted_per_user.get(psid(user), 0) + 1
                accepted_mids.append(mid)
        elif status[i] == 503:
            rejected_events += len(meta)
        else:
            unknown_mids.extend(mid for _, mid in meta)
    result = {
        "posts": n_posts,
        "events": n_posts * k,
        "events_per_post": k,
        "statuses": statuses,
        "first_503_posts": sum(1 for s in first_status if s == 503),
        "retries": sum(attempts) - n_posts,
        "accepted_events": len(accepted_mids),
        "rejected_events": rejected_events,
        "unknown_events": len(unknown_mids),
        "errors": sum(1 for s in status if s is None or s not in (200, 503)),
        "error_kinds": error_kinds,
        "latency_ms": {
            "p50": percentile(latency_ms, 0.50),
            "p99": percentile(latency_ms, 0.99),
            "max": max(latency_ms) if latency_ms else None,
        },
        "service_ms": {
            "p50": percentile(service_ms, 0.50),
            "p99": percentile(service_ms, 0.99),
        },
        "send_lag_max_ms": lag_max * 1000,
        "in_flight_max": in_flight_max,
        **timing,
        "accepted_per_user": accepted_per_user,
        "accepted_mids": accepted_mids,
        "unknown_mids": unknown_mids,
    }
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


# ====================================================================== admin hub ===


def admin_hub_main(argv: list[str]) -> int:
    """``webhook.py _admin-hub``: a Socket.IO stand-in for the admin API that records.

    Accepts a client only with the bot's service secret (as the admin API does), and
    counts every ``message:processed`` batch, ``metrics:update`` and ``health:changed``.
    ``GET /_hub/stats`` returns the counts (``?ids=1`` adds the ids and latencies of the
    answered inbound events), ``POST /_hub/reset`` forgets them.
    """
    ap = argparse.ArgumentParser(prog="webhook.py _admin-hub")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--secret", required=True)
    args = ap.parse_args(argv)

    import logging

    import trio
    from quart import Response, request
    from quart_trio import QuartTrio

    from essen.errors import ConnectionRefused
    from essen.realtime import ServerOptions, Socket, SocketIOServer
    from essen.web.mount import mount_socketio
    from essen.web.serving import serve_app

    logging.basicConfig(level=logging.WARNING)
    state: dict[str, Any] = {}

    def reset() -> None:
        state.update(
            connects=0,
            refused=0,
            batches=0,
            events_in=0,
            events_out=0,
            outcomes={},
            ids={},  # inbound event id -> times seen
            latency_ms=[],  # answered inbound events
            snapshots=0,
            health=[],
        )

    reset()
    server = SocketIOServer(ServerOptions(cors_origins=("*",)))
    app = QuartTrio("bench-admin-hub")

    @server.use
    async def auth(socket: Socket, payload: dict[str, Any] | None) -> None:
        if not isinstance(payload, dict) or payload.get("secret") != args.secret:
            state["refused"] += 1
            raise ConnectionRefused("unknown service")
        state["connects"] += 1

    @server.on("message:processed")
    async def processed(socket: Socket, batch: dict[str, Any]) -> None:
        state["batches"] += 1
        for event in batch.get("events", ()):
            if event.get("direction") == "in":
                state["events_in"] += 1
                outcome = event.get("outcome")
                state["outcomes"][outcome] = state["outcomes"].get(outcome, 0) + 1
                state["ids"][event["id"]] = state["ids"].get(event["id"], 0) + 1
                if event.get("latency_ms") is not None:
                    state["latency_ms"].append(event["latency_ms"])
            else:
                state["events_out"] += 1

    @server.on("metrics:update")
    async def metrics(socket: Socket, snapshot: dict[str, Any]) -> None:
        state["snapshots"] += 1

    @server.on("health:changed")
    async def health(socket: Socket, change: dict[str, Any]) -> None:
        state["health"].append(
            {k: change.get(k) for k in ("component", "status", "previous", "reason")}
        )

    @app.get("/_hub/stats")
    async def stats() -> Response:
        body = {k: v for k, v in state.items() if k not in ("ids", "latency_ms")}
        body["distinct_ids"] = len(state["ids"])
        body["duplicate_ids"] = sum(n - 1 for n in state["ids"].values() if n > 1)
        if request.args.get("ids"):
            body["ids"] = list(state["ids"])
            body["latency_ms"] = state["latency_ms"]
        return Response(json.dumps(body), 200, content_type="application/json")

    @app.post("/_hub/reset")
    async def reset_route() -> Response:
        reset()
        return Response("{}", 200, content_type="application/json")

    mount = mount_socketio(app, server, ("/api/socket.io/", "/socket.io/"))

    async def main() -> None:
        async with trio.open_nursery() as nursery:

            async def stop() -> None:
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()
                        return

            nursery.start_soon(stop)
            await nursery.start(server.run)
            await nursery.start(partial(serve_app, app, args.host, args.port, socketio=mount))
            print("READY", flush=True)

    trio.run(main)
    return 0


# ====================================================================== processes ===

from _procs import _kill_all, _kill_group, _on_signal, _spawn  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin_prefix(cpus: str | None) -> list[str]:
    if not cpus:
        return []
    taskset = shutil.which("taskset")
    if not taskset:
        raise RuntimeError("--pin needs taskset (util-linux)")
    return [taskset, "-c", cpus]


def cpu_s(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def rss_bytes(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).memory_info().rss)


def vm_hwm_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def system_busy() -> tuple[float, float]:
    """(busy CPU seconds summed over all cores, steal seconds) since boot."""
    import psutil

    t = psutil.cpu_times()
    busy = t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0)
    busy += getattr(t, "softirq", 0.0) + getattr(t, "steal", 0.0)
    return float(busy), float(getattr(t, "steal", 0.0))


def wait_for_quiet(max_wait_s: float, threshold_cores: float) -> dict[str, float]:
    """Wait (up to max_wait_s) until the host's busy CPU over 1 s is below threshold_cores."""
    t0 = time.monotonic()
    while True:
        b0, _ = system_busy()
        time.sleep(1.0)
        b1, _ = system_busy()
        busy = b1 - b0
        waited = time.monotonic() - t0
        if busy < threshold_cores or waited >= max_wait_s:
            return {"busy_cores_before": busy, "waited_s": waited}


def http_json(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as response:
        return json.loads(response.read())


class Child:
    """A helper process: its output goes to a log file; READY on stdout is awaited."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        log_path: Path,
        env: dict[str, str],
        ready: str | None = "READY",
        on_mark: Any = None,
    ) -> None:
        self.name = name
        self.log = open(log_path, "a", buffering=1)  # noqa: SIM115 - closed in stop()
        self.log.write(f"# {name}: {' '.join(cmd)}\n")
        self.proc = _spawn(
            cmd,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.ready = threading.Event()
        self.stdout_lines: list[str] = []
        self.stderr_tail: list[str] = []
        self._lock = threading.Lock()
        self._marker = ready
        self.on_mark = on_mark  # called as on_mark(name, child) for a "PHASE name" line
        self.threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, "out"), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, "err"), daemon=True),
        ]
        for t in self.threads:
            t.start()
        if ready is None:
            self.ready.set()

    def _pump(self, stream: Any, kind: str) -> None:
        for line in stream:
            s = line.rstrip("\n")
            with self._lock:
                self.log.write(
                    f"{self.name}.{kind} {s}\n"
                    if len(s) < 4000
                    else f"{self.name}.{kind} <{len(s)} chars>\n"
                )
                if kind == "out":
                    self.stdout_lines.append(s)
                else:
                    self.stderr_tail = [*self.stderr_tail[-19:], s]
            if self._marker and kind == "out" and s.startswith(self._marker):
                self.ready.set()
            if kind == "err" and s.startswith("PHASE ") and self.on_mark is not None:
                self.on_mark(s.split()[1], self)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.05):
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.proc.returncode} before READY: "
                    + " | ".join(self.stderr_tail[-5:])
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} was not READY within {timeout:.0f} s")

    def stop(self) -> None:
        _kill_group(self.proc)
        for t in self.threads:
            t.join(timeout=2)
        self.log.close()


# ========================================================================= one run ===


def bot_env(
    port: int, graph_url: str, admin_url: str, data_dir: str, admin_path: str
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONUNBUFFERED="1",
        # Development mode only because production refuses an http:// ADMIN_BACKEND_URL
        # (the stand-in is plain loopback). Every secret is set explicitly (>= 32
        # characters), so nothing is generated; the bot behaves the same in both modes.
        ESSEN_ENV="development",
        ESSEN_DATA_DIR=data_dir,
        PORT=str(port),
        ADMIN_BACKEND_URL=admin_url,
        ADMIN_SOCKET_PATH=admin_path,
        BOT_SERVICE_SECRET=SERVICE_SECRET,
        BOT_INSTANCE=INSTANCE,
        FB_APP_SECRET=APP_SECRET,
        FB_VERIFY_TOKEN=VERIFY_TOKEN,
        FB_PAGE_ACCESS_TOKEN=PAGE_TOKEN,
        FB_GRAPH_URL=graph_url,
        DEBUG_TOKEN=DEBUG_TOKEN,
        PSEUDONYM_KEY=PSEUDONYM_KEY,
    )
    return env


def wait_bot_ready(bot: Child, url: str, timeout: float) -> dict[str, Any]:
    """Until the bot answers, its uplink is connected and its token check passed."""
    deadline = time.monotonic() + timeout
    auth = {"Authorization": f"Bearer {DEBUG_TOKEN}"}
    last: Any = None
    while time.monotonic() < deadline:
        if bot.proc.poll() is not None:
            raise RuntimeError(
                f"bot exited with code {bot.proc.returncode}: " + " | ".join(bot.stderr_tail[-5:])
            )
        with contextlib.suppress(OSError, ValueError):
            stats: dict[str, Any] = http_json(
                "GET", f"{url}/debug/system-stats", headers=auth, timeout=2
            )
            health = stats.get("health", {})
            last = {k: v.get("status") for k, v in health.items()}
            if last.get("uplink") == "healthy" and last.get("graph_api") == "healthy":
                return stats
        time.sleep(0.1)
    raise RuntimeError(f"bot not ready within {timeout:.0f} s (health: {last})")


def histogram_percentiles(window: dict[str, Any]) -> dict[str, Any]:
    from essen.events import Histogram

    h = Histogram(**window["latency"])
    return {
        "count": h.count,
        "p50": h.percentile(0.50),
        "p99": h.percentile(0.99),
        "mean": (h.sum_ms / h.count) if h.count else None,
    }


def run_once(
    rate: float,
    rep: int,
    args: argparse.Namespace,
    helpers: dict[str, Any],
    log_dir: Path,
    tag: str,
) -> dict[str, Any]:
    rec: dict[str, Any] = {"rate": rate, "repeat": rep, "tag": tag, "ok": False}
    fake_url, hub_url = helpers["fake_url"], helpers["hub_url"]
    http_json("POST", f"{fake_url}/_fake/reset", {})
    if args.graph_latency:
        http_json("POST", f"{fake_url}/_fake/latency", {"seconds": args.graph_latency})
    if helpers["hub"]:
        http_json("POST", f"{hub_url}/_hub/reset", {})

    port = free_port()
    bot_url = f"http://127.0.0.1:{port}"
    data_dir = tempfile.mkdtemp(prefix="essen-bench-bot-")
    log_path = log_dir / f"{tag}.log"
    rec["log"] = str(log_path.relative_to(ROOT))
    env = bot_env(port, fake_url, hub_url, data_dir, args.admin_path)
    bot = Child("bot", [*pin_prefix(args.pin_bot), str(ESSEN), "bot"], log_path, env, ready=None)
    lg: Child | None = None
    try:
        import psutil

        ready_stats = wait_bot_ready(bot, bot_url, READY_TIMEOUT_S)
        bot_pid = bot.proc.pid
        rec["bot_rss_ready_mib"] = rss_bytes(bot_pid) / 2**20
        rec["bot_rss_ready_reported_mib"] = ready_stats.get("rss_bytes", 0) / 2**20

        others = {"fake": helpers["fake"].proc.pid, "hub": helpers["admin"].proc.pid}
        marks: dict[str, dict[str, float]] = {}

        def snapshot(loadgen: Child | None = None) -> dict[str, float]:
            loadgen = loadgen or lg
            busy, steal = system_busy()
            snap = {"t": time.monotonic(), "sys_busy": busy, "steal": steal}
            snap["driver_cpu"] = cpu_s(os.getpid())
            with contextlib.suppress(psutil.Error):
                snap["bot_cpu"] = cpu_s(bot_pid)
            for name, pid in others.items():
                with contextlib.suppress(psutil.Error):
                    snap[f"{name}_cpu"] = cpu_s(pid)
            if loadgen is not None:
                with contextlib.suppress(psutil.Error):
                    snap["loadgen_cpu"] = cpu_s(loadgen.proc.pid)
            return snap

        lg_cmd = [
            *pin_prefix(args.pin_loadgen),
            sys.executable,
            str(Path(__file__).resolve()),
            "_loadgen",
            "--url",
            bot_url,
            "--rate",
            str(rate),
            "--duration",
            str(args.duration),
            "--events-per-post",
            str(args.events_per_post),
            "--users",
            str(args.users),
            "--connections",
            str(args.connections),
            "--seed",
            str(1000 * rep + int(rate)),
            "--tag",
            tag,
            "--retry-deadline",
            str(args.drain_timeout),
        ]
        if args.retry_503:
            lg_cmd.append("--retry-503")
        lg = Child(
            "loadgen",
            lg_cmd,
            log_path,
            dict(os.environ),
            ready=None,
            on_mark=lambda name, child: marks.__setitem__(name, snapshot(child)),
        )
        hard_timeout = args.duration + args.drain_timeout + 90
        try:
            lg.proc.wait(timeout=hard_timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"load generator exceeded {hard_timeout:.0f} s") from None
        for t in lg.threads:
            t.join(timeout=5)
        result = next((json.loads(s) for s in reversed(lg.stdout_lines) if s.startswith("{")), None)
        if result is None:
            raise RuntimeError(
                f"load generator printed no result (exit {lg.proc.returncode}): "
                + " | ".join(lg.stderr_tail[-5:])
            )
        if "send_start" not in marks or "send_end" not in marks:
            raise RuntimeError("missing PHASE markers from the load generator")
        accepted = result["accepted_events"]
        expected_answers = accepted  # + the unknown ones, if the bot took them after all

        # Drain: until the fake has answered every accepted message (and nothing more
        # arrives), or the drain timeout.
        t_send_end = marks["send_end"]["t"]
        deadline = t_send_end + args.drain_timeout
        quick = f"{fake_url}/_bench/summary?quick=1"
        summary = http_json("GET", quick)
        drained_at = None
        while time.monotonic() < deadline:
            if summary["answers_total"] >= expected_answers:
                drained_at = drained_at or time.monotonic()
                if summary["answers_total"] >= expected_answers + result["unknown_events"]:
                    break
                if time.monotonic() - drained_at > 1.0:
                    break
            if bot.proc.poll() is not None:
                raise RuntimeError(f"bot died during the run (exit {bot.proc.returncode})")
            time.sleep(0.2)
            summary = http_json("GET", quick)
        drained = summary["answers_total"] >= expected_answers
        end = snapshot()
        drained_at = drained_at or end["t"]
        time.sleep(0.5)  # a duplicate answer would arrive now
        summary = http_json("GET", f"{fake_url}/_bench/summary")

        metrics = http_json(
            "GET",
            f"{bot_url}/debug/metrics",
            headers={"Authorization": f"Bearer {DEBUG_TOKEN}"},
        )
        bot_rss = rss_bytes(bot_pid)
        hwm = vm_hwm_bytes(bot_pid)

        # What each user got vs what was accepted for them.
        per_user = result["accepted_per_user"]
        answers = summary["answers"]
        lost = sum(max(0, n - answers.get(u, 0)) for u, n in per_user.items())
        extra = sum(max(0, n - per_user.get(u, 0)) for u, n in answers.items())

        hub_check: dict[str, Any] = {}
        if helpers["hub"]:
            want = {event_id(mid) for mid in result["accepted_mids"]}
            hub_deadline = time.monotonic() + 5
            while True:
                hub = http_json("GET", f"{hub_url}/_hub/stats?ids=1")
                got = set(hub["ids"])
                if want <= got or time.monotonic() > hub_deadline:
                    break
                time.sleep(0.25)
            hub_check = {
                "hub_events_in": hub["events_in"],
                "hub_missing_ids": len(want - got),
                "hub_unexpected_ids": len(
                    got - want - {event_id(m) for m in result["unknown_mids"]}
                ),
                "hub_duplicate_ids": hub["duplicate_ids"],
                "hub_outcomes": hub["outcomes"],
                "hub_batches": hub["batches"],
                "hub_snapshots": hub["snapshots"],
                "hub_refused": hub["refused"],
                "stream_latency_p50_ms": percentile(hub["latency_ms"], 0.50),
                "stream_latency_p99_ms": percentile(hub["latency_ms"], 0.99),
                "stream_latency_max_ms": max(hub["latency_ms"]) if hub["latency_ms"] else None,
            }

        a, b = marks["send_start"], marks["send_end"]
        window = end["t"] - a["t"]
        bot_cpu = end["bot_cpu"] - a["bot_cpu"]
        lg_cpu = b["loadgen_cpu"] - a["loadgen_cpu"]
        send_window = b["t"] - a["t"]
        sys_busy = end["sys_busy"] - a["sys_busy"]
        fake_cpu = end.get("fake_cpu", 0.0) - a.get("fake_cpu", 0.0)
        hub_cpu = end.get("hub_cpu", 0.0) - a.get("hub_cpu", 0.0)
        driver_cpu = end["driver_cpu"] - a["driver_cpu"]
        lg_cpu_window = end.get("loadgen_cpu", b["loadgen_cpu"]) - a["loadgen_cpu"]
        w5 = histogram_percentiles(metrics["windows"]["5m"])
        totals = metrics["totals"]
        rec.update(
            ok=True,
            sent_events=result["events"],
            sent_posts=result["posts"],
            accepted_events=accepted,
            # over the nominal duration (the last POST leaves one interval before its end),
            # or longer if the responses took longer
            accepted_per_s=accepted / max(args.duration, result["window_s"]),
            posts_503=result["statuses"].get("503", 0),
            first_503_posts=result["first_503_posts"],
            events_503=result["rejected_events"],
            retries=result["retries"],
            errors=result["errors"],
            error_kinds=result["error_kinds"],
            statuses=result["statuses"],
            post_p50_ms=result["latency_ms"]["p50"],
            post_p99_ms=result["latency_ms"]["p99"],
            post_max_ms=result["latency_ms"]["max"],
            post_service_p50_ms=result["service_ms"]["p50"],
            post_service_p99_ms=result["service_ms"]["p99"],
            send_lag_max_ms=result["send_lag_max_ms"],
            in_flight_max=result["in_flight_max"],
            answer_p50_ms=w5["p50"],
            answer_p99_ms=w5["p99"],
            answer_mean_ms=w5["mean"],
            histogram_count=w5["count"],
            answers=summary["answers_total"],
            answers_lost=lost,
            answers_extra=extra,
            answers_match=(lost == 0 and extra == 0 and summary["dropped"] == 0),
            drained=drained,
            drain_s=max(0.0, drained_at - t_send_end),
            answered_per_s=summary["answers_total"] / max(1e-9, drained_at - a["t"]),
            sender_actions=summary["sender_actions"],
            graph_errors=summary["errors"],
            graph_requests=summary["total"],
            fake_dropped_records=summary["dropped"],
            bot_totals={k: v for k, v in totals.items() if v},
            bot_cpu_s=bot_cpu,
            bot_cpu_util=bot_cpu / window if window > 0 else None,
            bot_cpu_us_per_event=(bot_cpu / accepted * 1e6) if accepted else None,
            bot_rss_after_mib=bot_rss / 2**20,
            bot_peak_rss_mib=(hwm or 0) / 2**20,
            loadgen_cpu_s=lg_cpu,
            loadgen_cpu_self_s=result["cpu_s"],
            loadgen_util=lg_cpu / send_window if send_window > 0 else None,
            loadgen_cpu_window_s=lg_cpu_window,
            fake_cpu_s=fake_cpu,
            hub_cpu_s=hub_cpu,
            driver_cpu_s=driver_cpu,
            other_cpu_s=max(
                0.0, sys_busy - bot_cpu - lg_cpu_window - fake_cpu - hub_cpu - driver_cpu
            ),
            window_s=window,
            send_window_s=send_window,
            steal_s=end["steal"] - a["steal"],
            **hub_check,
        )
        if not drained:
            rec["note"] = (
                f"not drained within {args.drain_timeout:.0f} s: "
                f"{summary['answers_total']}/{expected_answers} answered"
            )
    except Exception as e:  # a failed run is recorded, the sweep goes on
        rec["error"] = f"{type(e).__name__}: {e}"
        if any("received SIGTERM" in line for line in bot.stderr_tail):
            rec["error"] += " (the bot logged a SIGTERM that this driver did not send)"
        rec["bot_stderr_tail"] = bot.stderr_tail[-10:]
    finally:
        if lg is not None:
            lg.stop()
        bot.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return rec


# ========================================================================== report ===

# (key, label, format)
METRICS: list[tuple[str, str, str]] = [
    ("sent_events", "sent events", "{:.0f}"),
    ("accepted_per_s", "accepted events/s", "{:.1f}"),
    ("events_503", "events refused (503)", "{:.0f}"),
    ("posts_503", "POSTs answered 503", "{:.0f}"),
    ("errors", "POST errors", "{:.0f}"),
    ("post_p50_ms", "200 latency p50 ms", "{:.2f}"),
    ("post_p99_ms", "200 latency p99 ms", "{:.2f}"),
    ("answer_p50_ms", "recv→answer p50 ms", "{:.1f}"),
    ("answer_p99_ms", "recv→answer p99 ms", "{:.1f}"),
    ("stream_latency_p50_ms", "  exact (stream) p50", "{:.1f}"),
    ("stream_latency_p99_ms", "  exact (stream) p99", "{:.1f}"),
    ("answered_per_s", "answered events/s", "{:.1f}"),
    ("drain_s", "drain after send s", "{:.1f}"),
    ("accepted_events", "accepted events", "{:.0f}"),
    ("answers", "answers at fake Graph", "{:.0f}"),
    ("answers_lost", "answers missing", "{:.0f}"),
    ("answers_extra", "answers extra (dup)", "{:.0f}"),
    ("hub_missing_ids", "admin stream missing", "{:.0f}"),
    ("hub_duplicate_ids", "admin stream dup", "{:.0f}"),
    ("bot_cpu_s", "bot CPU s", "{:.2f}"),
    ("bot_cpu_util", "bot CPU util", "{:.0%}"),
    ("bot_cpu_us_per_event", "bot CPU µs/event", "{:.0f}"),
    ("bot_rss_after_mib", "bot RSS after MiB", "{:.1f}"),
    ("bot_peak_rss_mib", "bot peak RSS MiB", "{:.1f}"),
    ("fake_cpu_s", "fake Graph CPU s", "{:.2f}"),
    ("loadgen_cpu_s", "loadgen CPU s (send)", "{:.2f}"),
    ("loadgen_util", "loadgen CPU util", "{:.0%}"),
    ("send_lag_max_ms", "loadgen send lag max ms", "{:.1f}"),
    ("driver_cpu_s", "driver CPU s", "{:.2f}"),
    ("other_cpu_s", "other CPU s (noise)", "{:.2f}"),
]


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [float(r[key]) for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def run_cell(
    run: Callable[[str], dict[str, Any]],
    tag: str,
    args: argparse.Namespace,
    failed_attempts: list[dict[str, Any]],
) -> dict[str, Any]:
    """One cell of a sweep: wait for a quiet host (``--idle-wait``), run, and run
    again up to ``--retry-failed`` times, keeping the failed attempts aside."""
    quiet = wait_for_quiet(args.idle_wait, args.idle_threshold) if args.idle_wait > 0 else {}
    rec = run(tag)
    for attempt in range(2, args.retry_failed + 2):
        if rec["ok"]:
            break
        print(f"FAILED ({rec.get('error')}); again ...", end=" ", flush=True)
        rec["discarded"] = True
        failed_attempts.append(rec)
        time.sleep(args.pause)
        rec = run(f"{tag}-try{attempt}")
    rec.update(quiet)
    return rec


def fmt(v: float | None, f: str) -> str:
    return "—" if v is None else f.format(v)


def print_cells(
    summary: dict[str, Any],
    metrics: list[tuple[str, str, str]],
    *,
    header: str,
    widths: tuple[int, int],
    extra: tuple[tuple[str, Callable[[str], str]], ...] = (),
    note_label: Callable[[str], str] = str,
) -> None:
    """One column per cell of ``summary``: each metric's median, ``extra`` rows,
    the runs that went through, then each cell's notes (the drivers' tables)."""
    columns = list(summary)
    w0, wc = widths
    print(header.ljust(w0) + "".join(c.rjust(wc) for c in columns))
    for key, label, f in metrics:
        print(label.ljust(w0) + "".join(fmt(summary[c].get(key), f).rjust(wc) for c in columns))
    for label, cell in extra:
        print(label.ljust(w0) + "".join(cell(c).rjust(wc) for c in columns))
    print(
        "runs ok".ljust(w0)
        + "".join(f"{summary[c]['runs_ok']}/{summary[c]['runs']}".rjust(wc) for c in columns)
    )
    for c in columns:
        for note in summary[c]["notes"]:
            print(f"  ! {note_label(c)}: {note}")


def summarize(runs: list[dict[str, Any]], rates: list[float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rate in rates:
        mine = [r for r in runs if r["rate"] == rate]
        ok = [r for r in mine if r["ok"]]
        cell: dict[str, Any] = {"runs": len(mine), "runs_ok": len(ok)}
        for key, *_ in METRICS:
            cell[key] = median_of(ok, key)
        notes = [f"run {r['tag']} failed: {r.get('error')}" for r in mine if not r["ok"]]
        notes += [f"run {r['tag']}: {r['note']}" for r in ok if r.get("note")]
        bad = [r["tag"] for r in ok if not r["answers_match"]]
        if bad:
            notes.append(f"answers did not match the accepted messages in {', '.join(bad)}")
        if any(r.get("hub_missing_ids") or r.get("hub_duplicate_ids") for r in ok):
            notes.append("the admin stream missed or repeated events (see the JSON)")
        lu = cell["loadgen_util"]
        if lu is not None and lu > 0.7:
            notes.append(f"load generator at {lu:.0%} of a core: it may be the bottleneck")
        lag = cell["send_lag_max_ms"]
        if lag is not None and lag > 50:
            notes.append(f"load generator sent up to {lag:.0f} ms late")
        other = cell["other_cpu_s"]
        win = median_of(ok, "window_s") or 1.0
        if other is not None and other > 0.25 * win:
            notes.append(
                f"other processes used {other:.1f} CPU s ({other / win:.0%} of a core) in the "
                "window: host was busy"
            )
        cell["notes"] = notes
        out[f"{rate:g}"] = cell
    return out


def print_table(summary: dict[str, Any], args: argparse.Namespace) -> None:
    print()
    print(
        f"== webhook: {args.duration:g} s per rate, {args.events_per_post} event(s)/POST, "
        f"{args.users} users, graph latency {args.graph_latency * 1000:g} ms, "
        f"503 {'retried' if args.retry_503 else 'not retried'}; median of {args.repeat}"
    )
    print_cells(
        summary,
        METRICS,
        header="offered events/s",
        widths=(26, 11),
        note_label=lambda r: f"{r}/s",
    )


# ============================================================================ main ===


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="facebook-bot webhook benchmark (see bench/README.md)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--rates", default="50,100,200,400", help="offered events/s (comma list)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of POSTs per rate")
    ap.add_argument("--repeat", type=int, default=3, help="runs per rate; medians reported")
    ap.add_argument("--events-per-post", type=int, default=1, help="Messenger items per POST")
    ap.add_argument("--users", type=int, default=200, help="distinct senders")
    ap.add_argument("--connections", type=int, default=64, help="load generator's HTTP pool")
    ap.add_argument(
        "--drain-timeout",
        type=float,
        default=120.0,
        help="seconds after the last POST allowed for the bot to answer everything",
    )
    ap.add_argument(
        "--graph-latency",
        type=float,
        default=0.0,
        help="seconds the fake Graph API waits before each answer",
    )
    ap.add_argument(
        "--retry-503",
        action="store_true",
        help="re-POST a 503'd batch after 1 s as Facebook does (then answers must equal sent)",
    )
    ap.add_argument(
        "--admin",
        choices=("hub", "demo"),
        default="hub",
        help="admin stand-in: this file's recording hub, or the realtime demo hub (`essen demo`)",
    )
    ap.add_argument("--admin-path", default="/api/socket.io/", help="ADMIN_SOCKET_PATH")
    ap.add_argument("--idle-wait", type=float, default=15.0)
    ap.add_argument("--idle-threshold", type=float, default=0.3)
    ap.add_argument(
        "--pin",
        action="store_true",
        help="taskset: bot on CPU 0; load generator, fake Graph API and hub on CPU 1",
    )
    ap.add_argument("--pause", type=float, default=1.0, help="seconds of rest between runs")
    ap.add_argument(
        "--retry-failed",
        type=int,
        default=1,
        help="run a failed run again (up to this many times); failed attempts stay in the JSON",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    rates = [float(x) for x in args.rates.split(",") if x.strip()]
    if not rates or args.repeat < 1 or args.events_per_post < 1 or args.users < 1:
        ap.error("need rates, --repeat >= 1, --events-per-post >= 1, --users >= 1")
    args.pin_bot = "0" if args.pin else None
    args.pin_loadgen = "1" if args.pin else None
    if not ESSEN.exists():
        print(f"{ESSEN} not found: run with the project venv's python", file=sys.stderr)
        return 2

    atexit.register(_kill_all)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    import psutil

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out_path = args.out or RESULTS_DIR / f"webhook-{stamp}.json"
    log_dir = RESULTS_DIR / "logs" / f"webhook-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    fake_port, hub_port = free_port(), free_port()
    helpers_log = log_dir / "helpers.log"
    fake = Child(
        "fake",
        [
            *pin_prefix(args.pin_loadgen),
            sys.executable,
            str(FAKE_GRAPH),
            "--port",
            str(fake_port),
            "--token",
            PAGE_TOKEN,
            "--page-id",
            PAGE_ID,
        ],
        helpers_log,
        env,
    )
    if args.admin == "hub":
        admin = Child(
            "hub",
            [
                *pin_prefix(args.pin_loadgen),
                sys.executable,
                str(Path(__file__).resolve()),
                "_admin-hub",
                "--port",
                str(hub_port),
                "--secret",
                SERVICE_SECRET,
            ],
            helpers_log,
            env,
        )
    else:
        admin = Child(
            "demo",
            [*pin_prefix(args.pin_loadgen), str(ESSEN), "demo", "--port", str(hub_port)],
            helpers_log,
            dict(env, PORT=str(hub_port)),
            ready="ESSEN realtime demo",
        )
    fake.wait_ready(READY_TIMEOUT_S)
    admin.wait_ready(READY_TIMEOUT_S)
    helpers = {
        "fake": fake,
        "admin": admin,
        "hub": args.admin == "hub",
        "fake_url": f"http://127.0.0.1:{fake_port}",
        "hub_url": f"http://127.0.0.1:{hub_port}",
    }
    meta = {
        "started": datetime.now().isoformat(timespec="seconds"),
        "argv": sys.argv,
        "git": git_head(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "host": {
            "cpu_count": psutil.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_start": os.getloadavg(),
        },
    }
    runs: list[dict[str, Any]] = []
    failed_attempts: list[dict[str, Any]] = []

    def save(summary: dict[str, Any] | None) -> None:
        doc = dict(meta, runs=runs, failed_attempts=failed_attempts, summary=summary)
        tmp = out_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(out_path)

    total = len(rates) * args.repeat
    i = 0
    try:
        # rates inside each repeat, so that a noisy period on the host hits all of them
        for rep in range(1, args.repeat + 1):
            for rate in rates:
                i += 1
                tag = f"r{rate:g}-{rep}"
                print(f"[{i}/{total}] {rate:g} events/s, repeat {rep} ...", end=" ", flush=True)
                rec = run_cell(
                    partial(run_once, rate, rep, args, helpers, log_dir),
                    tag,
                    args,
                    failed_attempts,
                )
                runs.append(rec)
                if rec["ok"]:
                    print(
                        f"accepted {rec['accepted_per_s']:.0f}/s, 503 {rec['events_503']}, "
                        f"err {rec['errors']}, POST p50/p99 {rec['post_p50_ms']:.1f}/"
                        f"{rec['post_p99_ms']:.1f} ms, answer p50/p99 "
                        f"{fmt(rec['answer_p50_ms'], '{:.0f}')}/"
                        f"{fmt(rec['answer_p99_ms'], '{:.0f}')} ms, answers "
                        f"{rec['answers']}/{rec['accepted_events']} "
                        f"({'ok' if rec['answers_match'] else 'MISMATCH'}), bot "
                        f"{rec['bot_cpu_s']:.1f} CPU s, {rec['bot_rss_after_mib']:.0f} MiB, "
                        f"loadgen {rec['loadgen_util']:.0%}",
                        flush=True,
                    )
                else:
                    print(f"FAILED: {rec.get('error')} (log: {rec['log']})", flush=True)
                save(None)
                for helper in (fake, admin):
                    if helper.proc.poll() is not None:
                        raise RuntimeError(f"{helper.name} exited ({helper.proc.returncode})")
                time.sleep(args.pause)
    finally:
        fake.stop()
        admin.stop()

    summary = summarize(runs, rates)
    save(summary)
    print_table(summary, args)
    print(f"\nresults: {out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path}")
    print(f"logs:    {log_dir.relative_to(ROOT)}")
    return 0 if all(r["ok"] and r.get("answers_match") for r in runs) else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_loadgen":
        sys.exit(loadgen_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "_admin-hub":
        sys.exit(admin_hub_main(sys.argv[2:]))
    sys.exit(main())
