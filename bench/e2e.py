"""End-to-end latency: signed webhook → facebook-bot → admin API → subscribed dashboards.

Every service is a real process on loopback, configured only from the environment, with
every secret set explicitly and SQLite under a fresh data folder. ``ESSEN_ENV`` is
``development``: production refuses an http ``ADMIN_BACKEND_URL`` and an empty
``DATABASE_URL``, and loopback has neither TLS nor PostgreSQL here. The variable only
selects those start-up checks (and generated defaults for secrets, none of which is
left unset), so the services run the same code as in production:

* the fake Graph API (``bench/servers/fake_graph_server.py``), for the whole sweep;
* per run, a fresh admin API (``essen admin``; its admin account made beforehand with
  ``essen create-admin --password-stdin``) and a fresh bot (``essen bot``) whose uplink
  connects to it;
* D dashboards (``bench/loadgen/e2e_dashboards.js``, the official ``socket.io-client``),
  logged in with ``POST /api/auth/login`` and subscribed to ``monitoring``;
* a load generator (``e2e.py _loadgen``: Trio, pre-signed requests on raw keep-alive
  HTTP/1.1 connections) that POSTs one Messenger text message per webhook at R/s for
  ``--duration`` seconds (open loop) and stamps each send time on CLOCK_MONOTONIC.

A dashboard stamps, on the same clock, every ``message:processed`` event with direction
"in"; its id is ``blake2b("mid:" + mid, digest_size=12)`` (``essen.actors.webhook``), so
each receipt is matched to the send time of its webhook. After the last POST the driver
waits until every dashboard has every accepted message (or the stream stalls, or
``--drain-timeout``), then reads CPU time and RSS of each process with psutil.

    .venv/bin/python bench/e2e.py [--rates 20,100,500] [--dashboards 10,100]
        [--duration 10] [--repeat 3]

Process helpers, secrets and the bot's environment come from ``bench/webhook.py``.
See bench/README.md ("End to end") for what every row means.
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
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import webhook as wh  # noqa: E402  (bench/webhook.py: processes, secrets, bot env)

ROOT = wh.ROOT
RESULTS_DIR = wh.RESULTS_DIR
ESSEN = wh.ESSEN
LOADGEN_DIR = BENCH / "loadgen"
DASHBOARDS_JS = LOADGEN_DIR / "e2e_dashboards.js"

JWT_SECRET = "bench-jwt-secret-" + "j" * 32
ADMIN_USER = "admin"
ADMIN_PASSWORD = "bench-admin-password-" + "w" * 16
ADMIN_INSTANCE = "bench-admin"
READY_TIMEOUT_S = 30.0
#: Not "production": see the module docstring. Every secret is set explicitly.
ESSEN_ENV = "development"


def mid_of(tag: str, i: int) -> str:
    return f"m_{tag}_{i}"


# =================================================================== load generator ===


class _NoResponse(Exception):
    """The connection closed before any byte of a response (safe to send again)."""


async def _read_response(stream: Any) -> tuple[int, bool]:
    """(status, keep-alive) of one HTTP/1.1 response with a Content-Length body."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = await stream.receive_some(65536)
        if not chunk:
            if not buf:
                raise _NoResponse()
            raise ConnectionError("connection closed inside a response head")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, keep = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep = False
        elif name == b"transfer-encoding":
            raise ConnectionError("chunked responses are not supported by this client")
    while len(rest) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("connection closed inside a response body")
        rest += chunk
    return status, keep


def loadgen_main(argv: list[str]) -> int:
    """``e2e.py _loadgen``: signed webhooks at a fixed rate; one JSON line on stdout."""
    ap = argparse.ArgumentParser(prog="e2e.py _loadgen")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument(
        "--idle-max",
        type=float,
        default=4.0,
        help="do not reuse a connection idle this long (the bot's Hypercorn closes them at 5 s)",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tag", required=True)
    args = ap.parse_args(argv)

    import trio

    rng = random.Random(args.seed)
    n = max(1, round(args.rate * args.duration))
    now_ms = int(time.time() * 1000)
    # Everything is built and signed before the clock starts.
    requests: list[bytes] = []
    for i in range(n):
        item = {
            "sender": {"id": wh.psid(rng.randrange(args.users))},
            "recipient": {"id": wh.PAGE_ID},
            "timestamp": now_ms + i,
            "message": {"mid": mid_of(args.tag, i), "text": wh.TEXTS[i % len(wh.TEXTS)]},
        }
        body = json.dumps(
            {
                "object": "page",
                "entry": [{"id": wh.PAGE_ID, "time": now_ms + i, "messaging": [item]}],
            }
        ).encode()
        digest = hmac.new(wh.APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
        head = (
            f"POST /webhook HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
            f"Content-Type: application/json\r\nX-Hub-Signature-256: sha256={digest}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        requests.append(head + body)

    send_ms: list[float | None] = [None] * n  # CLOCK_MONOTONIC ms of the first write
    status: list[int | None] = [None] * n
    response_ms: list[float] = []
    error_kinds: dict[str, int] = {}
    counters = {"opened": 0, "resent": 0, "in_flight_max": 0}
    idle: list[tuple[Any, float]] = []  # (connection, idle since), most recent last
    stale: list[Any] = []  # idle too long: closed at the end, not used
    in_flight = 0
    lag_max = 0.0

    async def connect() -> Any:
        counters["opened"] += 1
        return await trio.open_tcp_stream(args.host, args.port)

    def take_idle() -> Any | None:
        """The most recently used idle connection that the server has not timed out."""
        while idle:
            stream, since = idle.pop()
            if time.monotonic() - since < args.idle_max:
                return stream
            stale.append(stream)
        return None

    def count_error(kind: str) -> None:
        error_kinds[kind] = error_kinds.get(kind, 0) + 1

    async def one(i: int, slots: trio.Semaphore) -> None:
        nonlocal in_flight
        async with slots:
            in_flight += 1
            counters["in_flight_max"] = max(counters["in_flight_max"], in_flight)
            try:
                stream = take_idle()
                reused = stream is not None
                for _attempt in range(2):
                    if stream is None:
                        stream = await connect()
                    sent_at = send_ms[i]
                    if sent_at is None:
                        sent_at = send_ms[i] = time.monotonic_ns() / 1e6
                    try:
                        with trio.fail_after(args.timeout):
                            await stream.send_all(requests[i])
                            code, keep = await _read_response(stream)
                    except (_NoResponse, trio.BrokenResourceError) as exc:
                        await trio.aclose_forcefully(stream)
                        stream = None
                        if reused:
                            # An idle connection the server had just closed: the request
                            # was not read (and a repeat would be deduplicated by mid).
                            counters["resent"] += 1
                            reused = False
                            continue
                        count_error(type(exc).__name__)
                        return
                    except (trio.TooSlowError, OSError, ConnectionError, ValueError) as exc:
                        await trio.aclose_forcefully(stream)
                        count_error(type(exc).__name__)
                        return
                    status[i] = code
                    response_ms.append(time.monotonic_ns() / 1e6 - sent_at)
                    if keep:
                        idle.append((stream, time.monotonic()))
                    else:
                        await trio.aclose_forcefully(stream)
                    return
                count_error("gave_up")
            finally:
                in_flight -= 1

    async def run() -> dict[str, Any]:
        nonlocal lag_max
        for _ in range(min(8, args.connections)):  # warm connections, no request yet
            idle.append((await connect(), time.monotonic()))
        slots = trio.Semaphore(args.connections)
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = trio.current_time() + 0.05
        sys.stderr.write("PHASE send_start\n")
        sys.stderr.flush()
        async with trio.open_nursery() as nursery:
            for i in range(n):
                at = t0 + i / args.rate
                await trio.sleep_until(at)
                lag_max = max(lag_max, trio.current_time() - at)
                nursery.start_soon(one, i, slots)
            send_end = trio.current_time()
        sys.stderr.write("PHASE send_end\n")
        sys.stderr.flush()
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        for stream in [s for s, _ in idle] + stale:
            await trio.aclose_forcefully(stream)
        return {
            "send_s": send_end - t0,
            "responses_s": trio.current_time() - t0,
            "cpu_s": (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime),
        }

    timing = trio.run(run)
    statuses: dict[str, int] = {}
    for code in status:
        key = "error" if code is None else str(code)
        statuses[key] = statuses.get(key, 0) + 1
    result = {
        "sent": n,
        "statuses": statuses,
        "status": status,
        "send_ms": send_ms,
        "response_ms": {
            "p50": wh.percentile(response_ms, 0.50),
            "p99": wh.percentile(response_ms, 0.99),
            "max": max(response_ms) if response_ms else None,
        },
        "send_lag_max_ms": lag_max * 1000,
        "error_kinds": error_kinds,
        **counters,
        **timing,
    }
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


# ========================================================================= one run ===


def admin_env(port: int, data_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONUNBUFFERED="1",
        ESSEN_ENV=ESSEN_ENV,
        ESSEN_DATA_DIR=data_dir,
        PORT=str(port),
        BOT_SERVICE_SECRET=wh.SERVICE_SECRET,
        JWT_SECRET=JWT_SECRET,
        ADMIN_INSTANCE=ADMIN_INSTANCE,
    )
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env.pop("CORS_ORIGINS", None)
    return env


def create_admin(env: dict[str, str], log_path: Path) -> None:
    proc = wh._spawn(
        [str(ESSEN), "create-admin", ADMIN_USER, "--password-stdin"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(ADMIN_PASSWORD + "\n", timeout=60)
    except subprocess.TimeoutExpired:
        wh._kill_group(proc)
        raise RuntimeError("essen create-admin took more than 60 s") from None
    finally:
        wh._kill_group(proc, grace_s=1.0)
    with open(log_path, "a") as f:
        f.write("".join(f"create-admin {line}\n" for line in (out or "").splitlines()))
    if proc.returncode != 0:
        raise RuntimeError(f"essen create-admin failed ({proc.returncode}): {(out or '')[-300:]}")


def wait_admin_login(admin: wh.Child, url: str, timeout: float) -> str:
    """Until the admin API answers; then log in and return the token."""
    deadline = time.monotonic() + timeout
    while True:
        if admin.proc.poll() is not None:
            raise RuntimeError(
                f"admin exited with code {admin.proc.returncode}: "
                + " | ".join(admin.stderr_tail[-5:])
            )
        try:
            wh.http_json("GET", f"{url}/api/health", timeout=2)
            break
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"admin API not up within {timeout:.0f} s") from None
            time.sleep(0.1)
    body = wh.http_json(
        "POST", f"{url}/api/auth/login", {"username": ADMIN_USER, "password": ADMIN_PASSWORD}
    )
    return str(body["token"])


def latest_progress(child: wh.Child) -> dict[str, int] | None:
    with child._lock:
        tail = list(child.stderr_tail)
    for line in reversed(tail):
        if line.startswith("PROGRESS "):
            mn, total, unknown, dup, disc = (int(x) for x in line.split()[1:6])
            return {"min": mn, "total": total, "unknown": unknown, "dup": dup, "disc": disc}
    return None


def dashboard_workers(spec: str, dashboards: int, rate: float) -> int:
    if spec != "auto":
        return max(1, int(spec))
    # two events (in + out) per message reach every dashboard
    return 2 if dashboards * rate * 2 >= 20_000 else 1


def proc_tree(pid: int) -> list[Any]:
    import psutil

    try:
        p = psutil.Process(pid)
        return [p, *p.children(recursive=True)]
    except psutil.Error:
        return []


def tree_cpu(pid: int) -> dict[int, float]:
    import psutil

    out: dict[int, float] = {}
    for p in proc_tree(pid):
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            out[p.pid] = float(t.user + t.system)
    return out


def tree_rss(pid: int) -> int:
    import psutil

    total = 0
    for p in proc_tree(pid):
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def read_f64(path: str) -> array[float]:
    a: array[float] = array("d")
    with open(path, "rb") as f:
        a.frombytes(f.read())
    if sys.byteorder != "little":
        a.byteswap()
    return a


def drain_note(
    receipts: int, expected: int, stalled: bool, drain_s: float, args: argparse.Namespace
) -> str:
    """Why a run ended with receipts missing (``--stall`` or ``--drain-timeout``)."""
    return f"{receipts}/{expected} receipts: " + (
        f"nothing new for {args.stall:g} s after {drain_s:.1f} s of drain"
        if stalled
        else f"drain timeout ({args.drain_timeout:g} s)"
    )


def record_failure(rec: dict[str, Any], error: Exception, children: list[wh.Child]) -> None:
    """A failed run is recorded with each child's last stderr lines; the sweep goes on."""
    rec["error"] = f"{type(error).__name__}: {error}"
    for child in children:
        rec[f"{child.name}_stderr_tail"] = child.stderr_tail[-8:]


def finish_run(rec: dict[str, Any], children: list[wh.Child], work: Path, *, keep: bool) -> None:
    """Stop the children (newest first) and remove the run's folder unless ``--keep``."""
    for child in reversed(children):
        child.stop()
    if keep:
        rec["work_dir"] = str(work)
    else:
        shutil.rmtree(work, ignore_errors=True)


def run_once(
    rate: float,
    dashboards: int,
    rep: int,
    args: argparse.Namespace,
    fake: dict[str, Any],
    log_dir: Path,
    tag: str,
) -> dict[str, Any]:
    import psutil

    rec: dict[str, Any] = {
        "rate": rate,
        "dashboards": dashboards,
        "repeat": rep,
        "tag": tag,
        "ok": False,
    }
    fake_url = fake["url"]
    wh.http_json("POST", f"{fake_url}/_fake/reset", {})
    work = Path(tempfile.mkdtemp(prefix="essen-bench-e2e-"))
    admin_dir, bot_dir, out_dir = work / "admin", work / "bot", work / "dashboards"
    for d in (admin_dir, bot_dir, out_dir):
        d.mkdir()
    log_path = log_dir / f"{tag}.log"
    rec["log"] = str(log_path.relative_to(ROOT))
    admin_port, bot_port = wh.free_port(), wh.free_port()
    admin_url, bot_url = f"http://127.0.0.1:{admin_port}", f"http://127.0.0.1:{bot_port}"
    children: list[wh.Child] = []
    try:
        env_a = admin_env(admin_port, str(admin_dir))
        create_admin(env_a, log_path)
        admin = wh.Child("admin", [str(ESSEN), "admin"], log_path, env_a, ready=None)
        children.append(admin)
        token = wait_admin_login(admin, admin_url, READY_TIMEOUT_S)
        env_b = wh.bot_env(bot_port, fake_url, admin_url, str(bot_dir), "/api/socket.io/")
        env_b["ESSEN_ENV"] = ESSEN_ENV  # see the module docstring
        bot = wh.Child("bot", [str(ESSEN), "bot"], log_path, env_b, ready=None)
        children.append(bot)
        wh.wait_bot_ready(bot, bot_url, READY_TIMEOUT_S)

        n = max(1, round(rate * args.duration))
        ids_file = work / "ids.txt"
        ids_file.write_text("".join(wh.event_id(mid_of(tag, i)) + "\n" for i in range(n)))
        workers = dashboard_workers(args.dashboard_workers, dashboards, rate)
        dash_cmd = [
            "node",
            str(DASHBOARDS_JS),
            "--url",
            admin_url,
            "--token",
            token,
            "--n",
            str(dashboards),
            "--ids",
            str(ids_file),
            "--out-dir",
            str(out_dir),
            "--workers",
            str(workers),
            "--connect-timeout",
            str(args.connect_timeout),
        ]
        if args.deflate:
            dash_cmd.append("--deflate")
        dash = wh.Child("dash", dash_cmd, log_path, dict(os.environ), ready="READY")
        children.append(dash)
        dash.wait_ready(args.connect_timeout + 10)
        time.sleep(args.settle)

        pids = {
            "bot": bot.proc.pid,
            "admin": admin.proc.pid,
            "fake": fake["child"].proc.pid,
            "driver": os.getpid(),
        }
        marks: dict[str, dict[str, Any]] = {}

        def snapshot(loadgen: wh.Child | None = None) -> dict[str, Any]:
            busy, steal = wh.system_busy()
            snap: dict[str, Any] = {"t": time.monotonic(), "sys_busy": busy, "steal": steal}
            for name, pid in pids.items():
                with contextlib.suppress(psutil.Error):
                    snap[f"{name}_cpu"] = wh.cpu_s(pid)
            snap["dash_cpu"] = tree_cpu(dash.proc.pid)
            if loadgen is not None:
                with contextlib.suppress(psutil.Error):
                    snap["loadgen_cpu"] = wh.cpu_s(loadgen.proc.pid)
            return snap

        lg_cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "_loadgen",
            "--port",
            str(bot_port),
            "--rate",
            str(rate),
            "--duration",
            str(args.duration),
            "--users",
            str(args.users),
            "--connections",
            str(args.connections),
            "--seed",
            str(1000 * rep + int(rate) + dashboards),
            "--tag",
            tag,
        ]
        lg = wh.Child(
            "loadgen",
            lg_cmd,
            log_path,
            dict(os.environ),
            ready=None,
            on_mark=lambda name, child: marks.__setitem__(name, snapshot(child)),
        )
        children.append(lg)
        hard = args.duration + 60
        try:
            lg.proc.wait(timeout=hard)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"load generator exceeded {hard:.0f} s") from None
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
        accepted = [i for i, code in enumerate(result["status"]) if code == 200]

        # Drain: until every dashboard has every accepted message, the stream stalls,
        # or the drain timeout.
        t_send_end = marks["send_end"]["t"]
        deadline = t_send_end + args.drain_timeout
        # When the stream stalls, the window ends at the last progress (a snapshot is
        # taken at every change), not at the stall timeout: the idle wait is not measured.
        last_total, last_change = -1, time.monotonic()
        last_snap: dict[str, Any] | None = None
        complete = stalled = False
        while True:
            now = time.monotonic()
            prog = latest_progress(dash) or {"min": 0, "total": 0}
            if prog["min"] >= len(accepted):
                complete = True
                break
            if prog["total"] != last_total:
                last_total, last_change = prog["total"], now
                last_snap = snapshot()
            if now - last_change > args.stall or now > deadline:
                stalled = now <= deadline
                break
            for child in (bot, admin, dash):
                if child.proc.poll() is not None:
                    raise RuntimeError(f"{child.name} exited during the run")
            time.sleep(0.05)
        end = last_snap if stalled and last_snap is not None else snapshot()
        end_rss = {
            "bot": wh.rss_bytes(bot.proc.pid),
            "admin": wh.rss_bytes(admin.proc.pid),
            "dash": tree_rss(dash.proc.pid),
        }
        hwm = {"bot": wh.vm_hwm_bytes(bot.proc.pid), "admin": wh.vm_hwm_bytes(admin.proc.pid)}

        # the dashboards' receipts
        n_lines = len(dash.stdout_lines)
        os.kill(dash.proc.pid, signal.SIGUSR2)
        report = None
        report_deadline = time.monotonic() + 30
        while report is None and time.monotonic() < report_deadline:
            with dash._lock:
                fresh = dash.stdout_lines[n_lines:]
            report = next((json.loads(s) for s in fresh if s.startswith("{")), None)
            if report is None:
                if dash.proc.poll() is not None:
                    break
                time.sleep(0.05)
        if report is None:
            raise RuntimeError("the dashboards did not report within 30 s")
        if report.get("error"):
            raise RuntimeError(f"dashboards: {report['error']}")

        with contextlib.suppress(OSError, ValueError):
            rec["bot_metrics_totals"] = {
                k: v
                for k, v in wh.http_json(
                    "GET",
                    f"{bot_url}/debug/metrics",
                    headers={"Authorization": f"Bearer {wh.DEBUG_TOKEN}"},
                )["totals"].items()
                if v
            }
        with contextlib.suppress(OSError, ValueError):
            details = wh.http_json(
                "GET",
                f"{admin_url}/api/monitoring/health-comprehensive",
                headers={"Authorization": f"Bearer {token}"},
            )
            rec["admin_hub"] = details.get("hub")
            rec["admin_store"] = details.get("store")

        # latency of every (dashboard, accepted message) receipt
        send_ms = result["send_ms"]
        accepted_set = set(accepted)
        bot_lat = read_f64(report["botlat_file"])
        lat: list[float] = []
        after_bot: list[float] = []
        first_recv = [math.inf] * n
        per_dash: list[int] = []
        stray = 0  # receipts of messages the load generator saw refused or failed
        for part in report["files"]:
            recv = read_f64(part["file"])
            for row in range(part["rows"]):
                base = row * n
                got = 0
                for k in range(n):
                    t = recv[base + k]
                    if t != t:  # NaN: not received
                        continue
                    if k not in accepted_set:
                        stray += 1
                        continue
                    got += 1
                    d = t - send_ms[k]
                    lat.append(d)
                    in_bot = bot_lat[k]
                    if in_bot == in_bot:  # not NaN
                        after_bot.append(d - in_bot)
                    first_recv[k] = min(first_recv[k], t)
                per_dash.append(got)
        lat.sort()
        after_bot.sort()
        bot_part = sorted(bot_lat[k] for k in accepted if bot_lat[k] == bot_lat[k])
        delivered_events = [k for k in accepted if first_recv[k] != math.inf]
        never = [k for k in accepted if first_recv[k] == math.inf]
        rec["never_delivered"] = len(never)
        rec["never_delivered_first"] = never[:100]
        t0_ms = min((send_ms[k] for k in range(n) if send_ms[k] is not None), default=0.0)
        last_first = max((first_recv[k] for k in delivered_events), default=t0_ms)

        def pct(values: list[float], q: float) -> float | None:
            # values are sorted: nearest rank
            if not values:
                return None
            return values[max(1, math.ceil(q * len(values))) - 1]

        a, b = marks["send_start"], marks["send_end"]
        window = end["t"] - a["t"]
        send_window = b["t"] - a["t"]

        def delta(name: str) -> float:
            return float(end.get(f"{name}_cpu", 0.0) - a.get(f"{name}_cpu", 0.0))

        dash_a, dash_b = a["dash_cpu"], end["dash_cpu"]
        dash_per_proc = {pid: dash_b[pid] - dash_a.get(pid, 0.0) for pid in dash_b}
        dash_cpu = sum(dash_per_proc.values())
        lg_cpu = b["loadgen_cpu"] - a["loadgen_cpu"]
        cpu = {
            "bot": delta("bot"),
            "admin": delta("admin"),
            "fake": delta("fake"),
            "driver": delta("driver"),
        }
        sys_busy = end["sys_busy"] - a["sys_busy"]
        expected = len(accepted) * dashboards
        receipts = len(lat)
        rec.update(
            ok=True,
            sent=result["sent"],
            accepted=len(accepted),
            refused_503=result["statuses"].get("503", 0),
            post_errors=result["sent"] - len(accepted) - result["statuses"].get("503", 0),
            statuses=result["statuses"],
            post_error_kinds=result["error_kinds"],
            post_resent=result["resent"],
            post_response_p50_ms=result["response_ms"]["p50"],
            post_response_p99_ms=result["response_ms"]["p99"],
            send_lag_max_ms=result["send_lag_max_ms"],
            http_connections=result["opened"],
            dashboards_connected=report["dashboards"],
            dashboard_workers=workers,
            dashboards_connect_s=report.get("connect_s"),
            delivered_per_dashboard=statistics.median(per_dash) if per_dash else 0,
            delivered_per_dashboard_min=min(per_dash) if per_dash else 0,
            delivered_fraction=(receipts / expected) if expected else None,
            events_reached_dashboards=len(delivered_events),
            answered_per_s=(
                len(delivered_events) / ((last_first - t0_ms) / 1000)
                if delivered_events and last_first > t0_ms
                else None
            ),
            receipts=receipts,
            lost=expected - receipts,
            lost_of_sent=result["sent"] * dashboards - receipts,
            stray_receipts=stray,
            duplicates=report["duplicates"],
            unknown_ids=report["unknown"],
            out_events=report["out_events"],
            disconnects=report["disconnects"],
            disconnect_reasons=report["disconnect_reasons"],
            complete=complete,
            lat_p50_ms=pct(lat, 0.50),
            lat_p90_ms=pct(lat, 0.90),
            lat_p99_ms=pct(lat, 0.99),
            lat_max_ms=lat[-1] if lat else None,
            lat_min_ms=lat[0] if lat else None,
            bot_part_p50_ms=pct(bot_part, 0.50),
            bot_part_p99_ms=pct(bot_part, 0.99),
            after_bot_p50_ms=pct(after_bot, 0.50),
            after_bot_p99_ms=pct(after_bot, 0.99),
            drain_s=end["t"] - t_send_end,
            window_s=window,
            send_window_s=send_window,
            bot_cpu_s=cpu["bot"],
            bot_cpu_util=cpu["bot"] / window,
            admin_cpu_s=cpu["admin"],
            admin_cpu_util=cpu["admin"] / window,
            fake_cpu_s=cpu["fake"],
            fake_cpu_util=cpu["fake"] / window,
            loadgen_cpu_s=lg_cpu,
            loadgen_cpu_self_s=result["cpu_s"],
            loadgen_util=lg_cpu / send_window if send_window > 0 else None,
            dash_cpu_s=dash_cpu,
            dash_max_proc_util=max(dash_per_proc.values()) / window if dash_per_proc else None,
            dash_per_proc_cpu_s=list(dash_per_proc.values()),
            driver_cpu_s=cpu["driver"],
            other_cpu_s=max(0.0, sys_busy - sum(cpu.values()) - lg_cpu - dash_cpu),
            steal_s=end["steal"] - a["steal"],
            bot_rss_mib=end_rss["bot"] / 2**20,
            bot_peak_rss_mib=(hwm["bot"] or 0) / 2**20,
            admin_rss_mib=end_rss["admin"] / 2**20,
            admin_peak_rss_mib=(hwm["admin"] or 0) / 2**20,
            dash_rss_mib=end_rss["dash"] / 2**20,
        )
        busiest = max(("bot", "admin", "fake"), key=lambda name: rec[f"{name}_cpu_util"])
        rec["busiest"] = busiest
        if not complete:
            rec["note"] = drain_note(receipts, expected, stalled, rec["drain_s"], args)
    except Exception as e:  # a failed run is recorded, the sweep goes on
        record_failure(rec, e, children)
    finally:
        finish_run(rec, children, work, keep=args.keep)
    return rec


# ========================================================================== report ===

# (key, label, format)
METRICS: list[tuple[str, str, str]] = [
    ("sent", "webhooks sent", "{:.0f}"),
    ("accepted", "accepted (200)", "{:.0f}"),
    ("refused_503", "refused (503)", "{:.0f}"),
    ("post_errors", "POST errors", "{:.0f}"),
    ("delivered_per_dashboard", "delivered / dashboard", "{:.0f}"),
    ("delivered_per_dashboard_min", "  min over dashboards", "{:.0f}"),
    ("lost", "lost (of accepted)", "{:.0f}"),
    ("lost_of_sent", "lost (of sent)", "{:.0f}"),
    ("never_delivered", "msgs no dashboard got", "{:.0f}"),
    ("answered_per_s", "answered msgs/s", "{:.1f}"),
    ("lat_p50_ms", "e2e latency p50 ms", "{:.0f}"),
    ("lat_p90_ms", "e2e latency p90 ms", "{:.0f}"),
    ("lat_p99_ms", "e2e latency p99 ms", "{:.0f}"),
    ("lat_max_ms", "e2e latency max ms", "{:.0f}"),
    ("bot_part_p50_ms", "  in bot p50 ms", "{:.0f}"),
    ("after_bot_p50_ms", "  outside bot p50 ms", "{:.0f}"),
    ("after_bot_p99_ms", "  outside bot p99 ms", "{:.0f}"),
    ("post_response_p50_ms", "POST response p50 ms", "{:.1f}"),
    ("drain_s", "drain after send s", "{:.1f}"),
    ("bot_cpu_s", "bot CPU s", "{:.2f}"),
    ("bot_cpu_util", "bot CPU util", "{:.0%}"),
    ("admin_cpu_s", "admin CPU s", "{:.2f}"),
    ("admin_cpu_util", "admin CPU util", "{:.0%}"),
    ("fake_cpu_s", "fake Graph CPU s", "{:.2f}"),
    ("fake_cpu_util", "fake Graph CPU util", "{:.0%}"),
    ("loadgen_cpu_s", "loadgen CPU s (send)", "{:.2f}"),
    ("loadgen_util", "loadgen CPU util", "{:.0%}"),
    ("dash_cpu_s", "dashboards CPU s", "{:.2f}"),
    ("dash_max_proc_util", "dashboards max proc util", "{:.0%}"),
    ("driver_cpu_s", "driver CPU s", "{:.2f}"),
    ("other_cpu_s", "other CPU s (noise)", "{:.2f}"),
    ("window_s", "window s", "{:.1f}"),
    ("bot_rss_mib", "bot RSS MiB", "{:.1f}"),
    ("bot_peak_rss_mib", "bot peak RSS MiB", "{:.1f}"),
    ("admin_rss_mib", "admin RSS MiB", "{:.1f}"),
    ("admin_peak_rss_mib", "admin peak RSS MiB", "{:.1f}"),
    ("dash_rss_mib", "dashboards RSS MiB", "{:.1f}"),
]


def cell_key(rate: float, dashboards: int) -> str:
    return f"{rate:g}/s x{dashboards}"


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [float(r[key]) for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarize(
    runs: list[dict[str, Any]], rates: list[float], dash_counts: list[int]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rate in rates:
        for d in dash_counts:
            mine = [r for r in runs if r["rate"] == rate and r["dashboards"] == d]
            ok = [r for r in mine if r["ok"]]
            cell: dict[str, Any] = {"rate": rate, "dashboards": d, "runs": len(mine)}
            cell["runs_ok"] = len(ok)
            for key, *_ in METRICS:
                cell[key] = median_of(ok, key)
            busiest: dict[str, int] = {}
            for r in ok:
                busiest[r["busiest"]] = busiest.get(r["busiest"], 0) + 1
            cell["busiest"] = busiest
            notes = [f"run {r['tag']} failed: {r.get('error')}" for r in mine if not r["ok"]]
            notes += [f"run {r['tag']}: {r['note']}" for r in ok if r.get("note")]
            for r in ok:
                odd = {
                    k: r[k]
                    for k in ("duplicates", "unknown_ids", "stray_receipts", "disconnects")
                    if r.get(k)
                }
                if odd:
                    notes.append(f"run {r['tag']}: {odd}")
            lu = cell["loadgen_util"]
            if lu is not None and lu > 0.7:
                notes.append(f"load generator at {lu:.0%} of a core: it may be the bottleneck")
            du = cell["dash_max_proc_util"]
            if du is not None and du > 0.85:
                notes.append(
                    f"a dashboards process at {du:.0%} of a core: it may be the bottleneck"
                )
            lag = cell["send_lag_max_ms"] = median_of(ok, "send_lag_max_ms")
            if lag is not None and lag > 50:
                notes.append(f"load generator sent up to {lag:.0f} ms late")
            other, win = cell["other_cpu_s"], cell["window_s"] or 1.0
            if other is not None and other > 0.25 * win:
                notes.append(
                    f"other processes used {other:.1f} CPU s ({other / win:.0%} of a core) "
                    "in the window: host was busy"
                )
            cell["notes"] = notes
            out[cell_key(rate, d)] = cell
    return out


def print_table(summary: dict[str, Any], args: argparse.Namespace) -> None:
    print()
    print(
        f"== end to end: webhook → bot → admin API → dashboards; {args.duration:g} s per run, "
        f"{args.users} users; median of {args.repeat}"
    )

    def busiest(c: str) -> str:
        counts = summary[c]["busiest"]
        return max(counts, key=counts.get) if counts else "—"

    wh.print_cells(
        summary,
        METRICS,
        header="rate × dashboards",
        widths=(26, 13),
        extra=(("busiest service", busiest),),
    )


# ============================================================================ main ===


def ensure_node() -> None:
    if not shutil.which("node"):
        raise SystemExit("node (>= 20) is needed for the dashboards")
    if not (LOADGEN_DIR / "node_modules" / "socket.io-client").is_dir():
        print("installing bench/loadgen dependencies (npm ci) ...", flush=True)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=LOADGEN_DIR, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="end-to-end latency: webhook → bot → admin API → dashboards "
        "(see bench/README.md)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--rates", default="20,100,500", help="webhooks per second (comma list)")
    ap.add_argument("--dashboards", default="10,100", help="dashboard counts (comma list)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of webhooks per run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell; medians reported")
    ap.add_argument("--users", type=int, default=200, help="distinct senders")
    ap.add_argument("--connections", type=int, default=64, help="load generator's HTTP pool")
    ap.add_argument(
        "--drain-timeout",
        type=float,
        default=120.0,
        help="seconds after the last POST allowed for every dashboard to get every message",
    )
    ap.add_argument(
        "--stall",
        type=float,
        default=5.0,
        help="end the drain early when no dashboard got anything new for this many seconds",
    )
    ap.add_argument(
        "--dashboard-workers",
        default="auto",
        help="Node processes for the dashboards; auto = 2 when dashboards × rate × 2 ≥ 20000",
    )
    ap.add_argument("--deflate", action="store_true", help="dashboards offer permessage-deflate")
    ap.add_argument("--connect-timeout", type=float, default=60.0)
    ap.add_argument("--settle", type=float, default=1.0, help="seconds between subscribe and load")
    ap.add_argument("--idle-wait", type=float, default=15.0)
    ap.add_argument("--idle-threshold", type=float, default=0.3)
    ap.add_argument("--pause", type=float, default=1.0, help="seconds of rest between runs")
    ap.add_argument(
        "--retry-failed",
        type=int,
        default=1,
        help="run a failed run again (up to this many times); failed attempts stay in the JSON",
    )
    ap.add_argument(
        "--keep", action="store_true", help="keep each run's data folder (SQLite, receipts)"
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    rates = [float(x) for x in args.rates.split(",") if x.strip()]
    dash_counts = [int(x) for x in args.dashboards.split(",") if x.strip()]
    if not rates or not dash_counts or args.repeat < 1 or min(dash_counts) < 1:
        ap.error("need rates, dashboard counts >= 1 and --repeat >= 1")
    if not ESSEN.exists():
        print(f"{ESSEN} not found: run with the project venv's python", file=sys.stderr)
        return 2
    ensure_node()

    atexit.register(wh._kill_all)
    signal.signal(signal.SIGINT, wh._on_signal)
    signal.signal(signal.SIGTERM, wh._on_signal)

    import psutil

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out_path = args.out or RESULTS_DIR / f"e2e-{stamp}.json"
    log_dir = RESULTS_DIR / "logs" / f"e2e-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)

    fake_port = wh.free_port()
    fake_child = wh.Child(
        "fake",
        [
            sys.executable,
            str(wh.FAKE_GRAPH),
            "--port",
            str(fake_port),
            "--token",
            wh.PAGE_TOKEN,
            "--page-id",
            wh.PAGE_ID,
        ],
        log_dir / "fake.log",
        dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    fake_child.wait_ready(READY_TIMEOUT_S)
    fake = {"child": fake_child, "url": f"http://127.0.0.1:{fake_port}"}
    meta = {
        "started": datetime.now().isoformat(timespec="seconds"),
        "argv": sys.argv,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "host": {
            "cpu_count": psutil.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "node": subprocess.run(
                ["node", "--version"], capture_output=True, text=True, check=False
            ).stdout.strip(),
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

    total = len(rates) * len(dash_counts) * args.repeat
    i = 0
    try:
        # every cell inside each repeat, so that a noisy period on the host hits all of them
        for rep in range(1, args.repeat + 1):
            for rate in rates:
                for d in dash_counts:
                    i += 1
                    tag = f"r{rate:g}-d{d}-{rep}"
                    print(
                        f"[{i}/{total}] {rate:g} msg/s × {d} dashboards, repeat {rep} ...",
                        end=" ",
                        flush=True,
                    )
                    rec = wh.run_cell(
                        partial(run_once, rate, d, rep, args, fake, log_dir),
                        tag,
                        args,
                        failed_attempts,
                    )
                    runs.append(rec)
                    if rec["ok"]:
                        print(
                            f"accepted {rec['accepted']}/{rec['sent']}, per dashboard "
                            f"{rec['delivered_per_dashboard']:.0f} (min "
                            f"{rec['delivered_per_dashboard_min']}), lost {rec['lost']}, e2e "
                            f"p50/p99 {wh.fmt(rec['lat_p50_ms'], '{:.0f}')}/"
                            f"{wh.fmt(rec['lat_p99_ms'], '{:.0f}')} ms, CPU bot "
                            f"{rec['bot_cpu_util']:.0%} admin {rec['admin_cpu_util']:.0%} "
                            f"fake {rec['fake_cpu_util']:.0%} loadgen "
                            f"{wh.fmt(rec['loadgen_util'], '{:.0%}')} dashboards "
                            f"{rec['dash_cpu_s']:.1f} s, noise {rec['other_cpu_s']:.1f} s",
                            flush=True,
                        )
                    else:
                        print(f"FAILED: {rec.get('error')} (log: {rec['log']})", flush=True)
                    save(None)
                    if fake_child.proc.poll() is not None:
                        raise RuntimeError(f"fake Graph API exited ({fake_child.proc.returncode})")
                    time.sleep(args.pause)
    finally:
        fake_child.stop()

    summary = summarize(runs, rates, dash_counts)
    save(summary)
    print_table(summary, args)
    print(f"\nresults: {out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path}")
    print(f"logs:    {log_dir.relative_to(ROOT)}")
    return 0 if all(r["ok"] for r in runs) else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_loadgen":
        sys.exit(loadgen_main(sys.argv[2:]))
    sys.exit(main())
