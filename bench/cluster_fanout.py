"""Cluster fan-out: two ``essen admin`` instances sharing one fleet over Redis, vs one.

Issue 7 asks what the second admin instance buys and costs. Since ddff1a6 an admin with
``REDIS_URL`` republishes what its own bots send on ``{ESSEN_CLUSTER}:fleet`` and fans
out what the others published to its own dashboards (``essen/admin/cluster.py``). This
driver measures that path with real processes on loopback, per configuration:

* ``1``: one ``essen admin``, no ``REDIS_URL`` (today's single instance);
* ``1r``: one ``essen admin`` with ``REDIS_URL``: the same fan-out plus publishing every
  batch to Redis (nobody else listening), which isolates the publisher's share;
* ``2``: admins A and B with ``REDIS_URL`` at the machine's Redis and a fresh
  ``ESSEN_CLUSTER`` per run, the dashboards split evenly between them.

Each admin has its own SQLite file in a fresh temporary folder (``bench/e2e.py``'s
environment, admin account and login: see there why ``ESSEN_ENV`` is ``development``).
The load enters as a bot's does, on A only (the publisher side): ``bench/_uplink_load.py``
runs the bot's own uplink actor (``essen.actors.uplink``: the bot-service CONNECT,
``MessageBatch`` batches, each acknowledged before the next) and feeds it R events/s,
without the rest of the bot. A real ``essen bot`` fed by webhooks would put its own
CPU, the fake Graph API's and the webhook generator's on the 2 cores the dashboards
need, and cannot go past ~83 msg/s (its Send API pacing); ``bench/e2e.py`` already
covers that path. N dashboards (``bench/loadgen/e2e_dashboards.js``, the official
socket.io-client, WebSocket only, logged in, subscribed to ``monitoring``) are split
evenly across the instances, one Node process tree per instance.

Every event's id is known before the run; each dashboard stamps its first receipt of
each on CLOCK_MONOTONIC, and the uplink stand-in stamps the moment the uplink handed each
batch to its client on the same clock, so latency = receipt - send, exact to the µs, per
(dashboard, event); "from creation" starts when the event entered the uplink instead.
CPU time (user+system, from /proc via psutil) is taken per admin process, for the Redis
server (its pid from ``INFO server``), the stand-in, the dashboards and the host, from
``PHASE send_start`` to the end of the drain.

    .venv/bin/python bench/cluster_fanout.py [--configs 1,1r,2] [--rates 10,25,50]
        [--dashboards 1000] [--duration 10] [--repeat 3]

See bench/README.md ("Cluster fan-out") for what every row means.
"""

from __future__ import annotations

import argparse
import atexit
import concurrent.futures
import contextlib
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# bench/ (this file's folder, first on sys.path): e2e.py for the admin's environment,
# login and the dashboards' progress and receipts; fanout.py for the descriptor limit;
# webhook.py for processes, secrets and CPU figures; the stand-in's event ids.
import e2e
import fanout
import psutil
import webhook as wh
from _uplink_load import event_id

BENCH = Path(__file__).resolve().parent
ROOT = wh.ROOT
RESULTS_DIR = wh.RESULTS_DIR
UPLINK_LOAD = BENCH / "_uplink_load.py"
READY_TIMEOUT_S = 30.0
#: What each configuration runs: (label, admin instances, REDIS_URL set).
CONFIGS: dict[str, tuple[str, int, bool]] = {
    "1": ("1 admin", 1, False),
    "1r": ("1 admin + Redis", 1, True),
    "2": ("2 admins + Redis", 2, True),
}
ADMIN_NAMES = ("a", "b")


# ========================================================================= Redis ===


def redis_command(url: str, *words: str, timeout: float = 3.0) -> Any:
    """One command over RESP (enough for INFO and PUBSUB; no client library needed)."""
    parts = urlsplit(url)
    payload = f"*{len(words)}\r\n".encode()
    for word in words:
        data = word.encode()
        payload += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection(
        (parts.hostname or "127.0.0.1", parts.port or 6379), timeout=timeout
    ) as sock:
        if parts.password:
            auth = [parts.username or "default", parts.password]
            sock.sendall(
                b"*3\r\n$4\r\nAUTH\r\n"
                + b"".join(b"$%d\r\n%s\r\n" % (len(w.encode()), w.encode()) for w in auth)
            )
            _read_reply(sock.makefile("rb"))
        sock.sendall(payload)
        return _read_reply(sock.makefile("rb"))


def _read_reply(stream: Any) -> Any:
    line = stream.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(f"Redis: {rest.decode()}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else stream.read(size + 2)[:-2].decode()
    if kind == b"*":
        return [_read_reply(stream) for _ in range(int(rest))]
    raise RuntimeError(f"Redis: unexpected reply {line[:40]!r}")


def redis_info(url: str, section: str) -> dict[str, str]:
    text = redis_command(url, "INFO", section) or ""
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and line[:1] != "#")


# ======================================================================= one run ===


@dataclass
class Admin:
    name: str
    instance: str
    port: int
    url: str
    child: wh.Child
    token: str = ""


def admin_health(admin: Admin) -> dict[str, Any]:
    details: dict[str, Any] = wh.http_json(
        "GET",
        f"{admin.url}/api/monitoring/health-comprehensive",
        headers={"Authorization": f"Bearer {admin.token}"},
        timeout=5,
    )
    return details


def start_admins(
    config: str, args: argparse.Namespace, work: Path, log_path: Path, tag: str
) -> list[Admin]:
    """Create the admin accounts (concurrently: argon2), start the admins, log in to each."""
    _, count, with_redis = CONFIGS[config]
    cluster = f"bench-{os.getpid()}-{tag}"[:64]
    envs: list[dict[str, str]] = []
    ports: list[int] = []
    for name in ADMIN_NAMES[:count]:
        port = wh.free_port()
        data = work / f"admin-{name}"
        data.mkdir()
        env = e2e.admin_env(port, str(data))
        env["ADMIN_INSTANCE"] = f"bench-admin-{name}"
        if with_redis:
            env.update(REDIS_URL=args.redis, ESSEN_CLUSTER=cluster)
        envs.append(env)
        ports.append(port)
    with concurrent.futures.ThreadPoolExecutor(len(envs)) as pool:
        for future in [pool.submit(e2e.create_admin, env, log_path) for env in envs]:
            future.result()
    admins = [
        Admin(
            name,
            env["ADMIN_INSTANCE"],
            port,
            f"http://127.0.0.1:{port}",
            wh.Child(f"admin-{name}", [str(wh.ESSEN), "admin"], log_path, env, ready=None),
        )
        for name, env, port in zip(ADMIN_NAMES, envs, ports, strict=False)
    ]
    return admins


def wait_admins(admins: list[Admin], with_redis: bool, timeout: float) -> None:
    """Until every admin answers and, with Redis, is subscribed to the fleet channel."""
    for admin in admins:
        admin.token = e2e.wait_admin_login(admin.child, admin.url, timeout)
    if not with_redis:
        return
    deadline = time.monotonic() + timeout
    for admin in admins:
        while True:
            with contextlib.suppress(OSError, ValueError):
                redis = admin_health(admin).get("redis", {})
                if redis.get("connected"):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"admin {admin.name} not connected to Redis within {timeout:g} s"
                )
            time.sleep(0.1)


def split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def dashboard_workers(spec: str, dashboards: int, rate: float) -> int:
    if spec != "auto":
        return max(1, int(spec))
    # one Node process takes roughly 40-50k receipts/s on a full core here (bench/fanout.py)
    return 2 if dashboards * rate >= 20_000 else 1


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values."""
    if not values:
        return None
    return values[max(1, math.ceil(q * len(values))) - 1]


def cpu_or_none(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        return wh.cpu_s(pid)
    except psutil.Error:  # gone, or not ours to read
        return None


def run_once(
    config: str,
    rate: float,
    dashboards: int,
    rep: int,
    args: argparse.Namespace,
    log_dir: Path,
    tag: str,
) -> dict[str, Any]:
    label, count, with_redis = CONFIGS[config]
    rec: dict[str, Any] = {
        "config": config,
        "label": label,
        "admins": count,
        "rate": rate,
        "dashboards": dashboards,
        "repeat": rep,
        "tag": tag,
        "ok": False,
        "loadavg_start": os.getloadavg(),
        "loadavg_1m_start": os.getloadavg()[0],
    }
    work = Path(tempfile.mkdtemp(prefix="essen-bench-cluster-"))
    log_path = log_dir / f"{tag}.log"
    rec["log"] = str(log_path.relative_to(ROOT))
    children: list[wh.Child] = []
    admins: list[Admin] = []
    try:
        admins = start_admins(config, args, work, log_path, tag)
        children += [a.child for a in admins]
        wait_admins(admins, with_redis, READY_TIMEOUT_S)
        redis_pid = int(redis_info(args.redis, "server")["process_id"]) if with_redis else None

        n = max(1, round(rate * args.duration))
        ids_file = work / "ids.txt"
        ids_file.write_text("".join(event_id(tag, i) + "\n" for i in range(n)))
        dash: list[tuple[Admin, wh.Child, int]] = []
        for admin, share in zip(admins, split(dashboards, len(admins)), strict=True):
            if share == 0:
                continue
            out_dir = work / f"dash-{admin.name}"
            cmd = [
                "node",
                str(e2e.DASHBOARDS_JS),
                "--url",
                admin.url,
                "--token",
                admin.token,
                "--n",
                str(share),
                "--ids",
                str(ids_file),
                "--out-dir",
                str(out_dir),
                "--workers",
                str(dashboard_workers(args.dashboard_workers, share, rate)),
                "--batch",
                str(args.batch),
                "--connect-timeout",
                str(args.connect_timeout),
            ]
            child = wh.Child(f"dash-{admin.name}", cmd, log_path, dict(os.environ), ready="READY")
            children.append(child)
            dash.append((admin, child, share))
        for _, child, _ in dash:
            child.wait_ready(args.connect_timeout + 10)
        time.sleep(args.settle)

        pids: dict[str, int | None] = {f"admin_{a.name}": a.child.proc.pid for a in admins}
        pids["redis"] = redis_pid
        pids["driver"] = os.getpid()
        marks: dict[str, dict[str, Any]] = {}

        def snapshot(load: wh.Child | None = None) -> dict[str, Any]:
            busy, steal = wh.system_busy()
            snap: dict[str, Any] = {"t": time.monotonic(), "sys_busy": busy, "steal": steal}
            for name, pid in pids.items():
                snap[f"{name}_cpu"] = cpu_or_none(pid)
            snap["dash_cpu"] = {c.name: e2e.tree_cpu(c.proc.pid) for _, c, _ in dash}
            if load is not None:
                snap["load_cpu"] = cpu_or_none(load.proc.pid)
            return snap

        load_cmd = [
            sys.executable,
            str(UPLINK_LOAD),
            "--url",
            admins[0].url,
            "--secret",
            wh.SERVICE_SECRET,
            "--rate",
            str(rate),
            "--duration",
            str(args.duration),
            "--users",
            str(args.users),
            "--tag",
            tag,
            "--seed",
            str(rep),
        ]
        sent = threading.Event()

        def on_mark(name: str, child: wh.Child) -> None:
            marks[name] = snapshot(child)
            if name == "send_end":
                sent.set()

        load = wh.Child(
            "uplink",
            load_cmd,
            log_path,
            dict(os.environ, PYTHONUNBUFFERED="1"),
            ready=None,
            on_mark=on_mark,
        )
        children.append(load)
        # The drain starts at the last batch, while the stand-in lingers connected.
        hard = time.monotonic() + args.duration + 60
        while not sent.wait(0.1):
            if load.proc.poll() is not None:
                break
            if time.monotonic() > hard:
                raise RuntimeError("the uplink stand-in did not finish sending in time")
        if "send_start" not in marks or "send_end" not in marks:
            raise RuntimeError(
                "the uplink stand-in stopped before sending: " + " | ".join(load.stderr_tail[-5:])
            )
        # Drain: until every dashboard has every event, the stream stalls, or the timeout.
        # When it stalls the window ends at the last progress (snapshotted at each change).
        deadline = marks["send_end"]["t"] + args.drain_timeout
        last_total, last_change = -1, time.monotonic()
        last_snap: dict[str, Any] | None = None
        complete = stalled = False
        while True:
            now = time.monotonic()
            progress = [e2e.latest_progress(c) or {"min": 0, "total": 0} for _, c, _ in dash]
            if all(p["min"] >= n for p in progress):
                complete = True
                break
            total = sum(p["total"] for p in progress)
            if total != last_total:
                last_total, last_change = total, now
                last_snap = snapshot()
            if now - last_change > args.stall or now > deadline:
                stalled = now <= deadline
                break
            for child in [*(adm.child for adm in admins), *(c for _, c, _ in dash)]:
                if child.proc.poll() is not None:
                    raise RuntimeError(f"{child.name} exited during the run")
            time.sleep(0.05)
        end = last_snap if stalled and last_snap is not None else snapshot()
        try:
            load.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise RuntimeError("the uplink stand-in did not exit after sending") from None
        for t in load.threads:
            t.join(timeout=5)
        result = next(
            (json.loads(s) for s in reversed(load.stdout_lines) if s.startswith("{")), None
        )
        if result is None or "error" in result:
            raise RuntimeError(
                "uplink stand-in: "
                + (result["error"] if result else " | ".join(load.stderr_tail[-5:]))
            )
        rss = {f"admin_{a.name}": wh.rss_bytes(a.child.proc.pid) for a in admins}
        rec["admin_rss_mib"] = {k: v / 2**20 for k, v in rss.items()}
        rec["dash_rss_mib"] = sum(e2e.tree_rss(c.proc.pid) for _, c, _ in dash) / 2**20

        # what the admins counted (hub refusals, Redis published/received/dropped)
        rec["admin_health"] = {}
        for admin in admins:
            with contextlib.suppress(OSError, ValueError):
                health = admin_health(admin)
                rec["admin_health"][admin.name] = {
                    k: health.get(k) for k in ("hub", "redis", "sockets")
                }

        # the dashboards' receipts
        reports: dict[str, dict[str, Any]] = {}
        report_from: dict[str, int] = {}
        for _, child, _ in dash:
            with child._lock:
                report_from[child.name] = len(child.stdout_lines)
            os.kill(child.proc.pid, signal.SIGUSR2)
        report_deadline = time.monotonic() + 30
        for _, child, _ in dash:
            while child.name not in reports:
                with child._lock:
                    fresh = child.stdout_lines[report_from[child.name] :]
                found = next((json.loads(s) for s in fresh if s.startswith("{")), None)
                if found is not None:
                    if found.get("error"):
                        raise RuntimeError(f"{child.name}: {found['error']}")
                    reports[child.name] = found
                elif time.monotonic() > report_deadline or child.proc.poll() is not None:
                    raise RuntimeError(f"{child.name} did not report within 30 s")
                else:
                    time.sleep(0.05)

        # An event the uplink never handed over (no ack came for the batches before it)
        # has no send time: its receipts, if any, count as delivered but not in latency.
        send_ms: list[float | None] = result["send_ms"]
        created_ms: list[float] = result["created_ms"]
        t_first_send = min((t for t in send_ms if t is not None), default=math.inf)
        lat_all: list[float] = []
        lat_created: list[float] = []
        lat_side: dict[str, list[float]] = {}
        first_recv = [math.inf] * n
        last_recv = -math.inf
        per_dash: list[int] = []
        receipts = 0
        for admin, child, _ in dash:
            side = lat_side.setdefault(admin.name, [])
            for part in reports[child.name]["files"]:
                recv = e2e.read_f64(part["file"])
                for row in range(part["rows"]):
                    base = row * n
                    got = 0
                    for k in range(n):
                        t = recv[base + k]
                        if t != t:  # NaN: not received
                            continue
                        got += 1
                        sent_at = send_ms[k]
                        if sent_at is not None:
                            side.append(t - sent_at)
                        lat_created.append(t - created_ms[k])
                        first_recv[k] = min(first_recv[k], t)
                        last_recv = max(last_recv, t)
                    per_dash.append(got)
                    receipts += got
        for values in lat_side.values():
            values.sort()
            lat_all += values
        lat_all.sort()
        lat_created.sort()
        expected = n * dashboards
        never = [k for k in range(n) if first_recv[k] == math.inf]

        a = marks["send_start"]
        window = end["t"] - a["t"]

        def delta(name: str) -> float | None:
            x, y = a.get(f"{name}_cpu"), end.get(f"{name}_cpu")
            return None if x is None or y is None else float(y - x)

        admin_cpu = {adm.name: delta(f"admin_{adm.name}") or 0.0 for adm in admins}
        admin_cpu_total = sum(admin_cpu.values())
        redis_cpu = delta("redis")
        dash_cpu_procs: list[float] = []
        for _, child, _ in dash:
            before, after = a["dash_cpu"].get(child.name, {}), end["dash_cpu"].get(child.name, {})
            dash_cpu_procs += [after[pid] - before.get(pid, 0.0) for pid in after]
        dash_cpu = sum(dash_cpu_procs)
        load_cpu = (marks["send_end"].get("load_cpu") or 0.0) - (a.get("load_cpu") or 0.0)
        driver_cpu = delta("driver") or 0.0
        ours = admin_cpu_total + (redis_cpu or 0.0) + dash_cpu + load_cpu + driver_cpu
        sys_busy = end["sys_busy"] - a["sys_busy"]
        span_s = (last_recv - t_first_send) / 1000 if receipts and send_ms[0] is not None else None
        rec.update(
            ok=True,
            sent=n,
            batches=result["calls"],
            largest_batch=result["largest_batch"],
            unsent=result["unsent"],
            uplink=result["uplink"],
            uplink_resent=result["uplink"]["resent"],
            uplink_dropped_events=result["uplink"]["dropped_events"],
            uplink_disconnects=result["disconnects"],
            uplink_buffer_dropped=result["buffer_dropped"],
            send_lag_max_ms=result["send_lag_max_ms"],
            offered_per_s=rate * dashboards,
            expected=expected,
            receipts=receipts,
            lost=expected - receipts,
            never_delivered=len(never),
            never_delivered_first=never[:50],
            delivered_per_dashboard_min=min(per_dash) if per_dash else 0,
            dashboards_connected=len(per_dash),
            duplicates=sum(r["duplicates"] for r in reports.values()),
            unknown_ids=sum(r["unknown"] for r in reports.values()),
            disconnects=sum(r["disconnects"] for r in reports.values()),
            complete=complete,
            delivered_per_s=(receipts / span_s) if span_s else None,
            lat_p50_ms=pct(lat_all, 0.50),
            lat_p90_ms=pct(lat_all, 0.90),
            lat_p99_ms=pct(lat_all, 0.99),
            lat_max_ms=lat_all[-1] if lat_all else None,
            lat_created_p50_ms=pct(lat_created, 0.50),
            lat_created_p99_ms=pct(lat_created, 0.99),
            **{f"lat_{s}_p50_ms": pct(v, 0.50) for s, v in lat_side.items()},
            **{f"lat_{s}_p99_ms": pct(v, 0.99) for s, v in lat_side.items()},
            drain_s=end["t"] - marks["send_end"]["t"],
            window_s=window,
            admin_cpu_s=admin_cpu_total,
            **{f"admin_{s}_cpu_s": v for s, v in admin_cpu.items()},
            **{f"admin_{s}_cpu_util": v / window for s, v in admin_cpu.items()},
            admin_cpu_us_per_msg=(admin_cpu_total / receipts * 1e6) if receipts else None,
            redis_cpu_s=redis_cpu,
            redis_cpu_util=(redis_cpu / window) if redis_cpu is not None else None,
            uplink_cpu_s=load_cpu,
            dash_cpu_s=dash_cpu,
            dash_max_proc_util=max(dash_cpu_procs) / window if dash_cpu_procs else None,
            driver_cpu_s=driver_cpu,
            other_cpu_s=max(0.0, sys_busy - ours),
            host_busy_cores=sys_busy / window,
            steal_s=end["steal"] - a["steal"],
            loadavg_end=os.getloadavg(),
        )
        if not complete:
            rec["note"] = e2e.drain_note(receipts, expected, stalled, rec["drain_s"], args)
    except Exception as e:  # a failed run is recorded, the sweep goes on
        e2e.record_failure(rec, e, children)
    finally:
        e2e.finish_run(rec, children, work, keep=args.keep)
    return rec


# ======================================================================== report ===

# (key, label, format)
METRICS: list[tuple[str, str, str]] = [
    ("offered_per_s", "offered deliveries/s", "{:.0f}"),
    ("delivered_per_s", "delivered/s", "{:.0f}"),
    ("lost", "lost receipts", "{:.0f}"),
    ("never_delivered", "events no dashboard got", "{:.0f}"),
    ("delivered_per_dashboard_min", "min events/dashboard", "{:.0f}"),
    ("lat_p50_ms", "latency p50 ms", "{:.1f}"),
    ("lat_p90_ms", "latency p90 ms", "{:.1f}"),
    ("lat_p99_ms", "latency p99 ms", "{:.1f}"),
    ("lat_max_ms", "latency max ms", "{:.0f}"),
    ("lat_a_p50_ms", "  on A p50 ms", "{:.1f}"),
    ("lat_a_p99_ms", "  on A p99 ms", "{:.1f}"),
    ("lat_b_p50_ms", "  on B p50 ms", "{:.1f}"),
    ("lat_b_p99_ms", "  on B p99 ms", "{:.1f}"),
    ("lat_created_p50_ms", "from creation p50 ms", "{:.1f}"),
    ("lat_created_p99_ms", "from creation p99 ms", "{:.1f}"),
    ("batches", "batches sent", "{:.0f}"),
    ("largest_batch", "largest batch", "{:.0f}"),
    ("admin_cpu_us_per_msg", "admin CPU µs/delivery", "{:.1f}"),
    ("admin_cpu_s", "admin CPU s (sum)", "{:.2f}"),
    ("admin_a_cpu_util", "  admin A util", "{:.0%}"),
    ("admin_b_cpu_util", "  admin B util", "{:.0%}"),
    ("redis_cpu_s", "Redis CPU s", "{:.3f}"),
    ("redis_cpu_util", "  Redis util", "{:.1%}"),
    ("uplink_cpu_s", "uplink stand-in CPU s", "{:.2f}"),
    ("dash_cpu_s", "dashboards CPU s", "{:.2f}"),
    ("dash_max_proc_util", "dashboards max proc util", "{:.0%}"),
    ("other_cpu_s", "other CPU s (noise)", "{:.2f}"),
    ("host_busy_cores", "host busy cores", "{:.2f}"),
    ("loadavg_1m_start", "loadavg 1 min (start)", "{:.2f}"),
    ("window_s", "window s", "{:.1f}"),
    ("drain_s", "drain after send s", "{:.2f}"),
]


def cell_key(config: str, rate: float, dashboards: int) -> str:
    return f"{config}@{rate:g}x{dashboards}"


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [float(r[key]) for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarize(
    runs: list[dict[str, Any]], configs: list[str], rates: list[float], dash_counts: list[int]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in dash_counts:
        for rate in rates:
            for config in configs:
                mine = [
                    r
                    for r in runs
                    if r["config"] == config and r["rate"] == rate and r["dashboards"] == d
                ]
                ok = [r for r in mine if r["ok"]]
                cell: dict[str, Any] = {
                    "config": config,
                    "label": CONFIGS[config][0],
                    "rate": rate,
                    "dashboards": d,
                    "runs": len(mine),
                    "runs_ok": len(ok),
                }
                for key, *_ in METRICS:
                    cell[key] = median_of(ok, key)
                notes = [f"run {r['tag']} failed: {r.get('error')}" for r in mine if not r["ok"]]
                notes += [f"run {r['tag']}: {r['note']}" for r in ok if r.get("note")]
                for r in ok:
                    odd = {
                        k: r[k]
                        for k in (
                            "duplicates",
                            "unknown_ids",
                            "disconnects",
                            "uplink_disconnects",
                            "uplink_buffer_dropped",
                            "uplink_resent",
                            "uplink_dropped_events",
                            "unsent",
                        )
                        if r.get(k)
                    }
                    if odd:
                        notes.append(f"run {r['tag']}: {odd}")
                du = cell["dash_max_proc_util"]
                if du is not None and du > 0.85:
                    notes.append(
                        f"a dashboards process at {du:.0%} of a core: it may be the bottleneck"
                    )
                other, win = cell["other_cpu_s"], cell["window_s"] or 1.0
                if other is not None and other > 0.25 * win:
                    notes.append(
                        f"other processes used {other:.1f} CPU s ({other / win:.0%} of a core) "
                        "in the window: host was busy"
                    )
                cell["notes"] = notes
                out[cell_key(config, rate, d)] = cell
    return out


def print_table(summary: dict[str, Any], args: argparse.Namespace) -> None:
    print()
    print(
        f"== cluster fan-out: uplink stand-in → admin A [→ Redis → admin B] → dashboards; "
        f"{args.duration:g} s per run; median of {args.repeat}"
    )
    wh.print_cells(summary, METRICS, header="config@R×N", widths=(26, 15))


# ========================================================================== main ===


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="cluster fan-out: 1 vs 2 admin instances over Redis (see bench/README.md)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument(
        "--configs",
        default="1,1r,2",
        help="comma list: 1 (one admin), 1r (one admin with REDIS_URL), 2 (two admins)",
    )
    ap.add_argument("--rates", default="10,25,50", help="events per second into admin A")
    ap.add_argument("--dashboards", default="1000", help="dashboard counts (comma list)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of events per run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell; medians reported")
    ap.add_argument("--users", type=int, default=200, help="distinct (pseudonymous) users")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="REDIS_URL for 1r and 2")
    ap.add_argument(
        "--dashboard-workers",
        default="auto",
        help="Node processes per instance's dashboards; auto = 2 when its share × R ≥ 20000",
    )
    ap.add_argument("--batch", type=int, default=50, help="dashboards connecting at once")
    ap.add_argument("--connect-timeout", type=float, default=120.0)
    ap.add_argument("--settle", type=float, default=1.0, help="seconds between subscribe and load")
    ap.add_argument("--drain-timeout", type=float, default=120.0)
    ap.add_argument(
        "--stall",
        type=float,
        default=5.0,
        help="end the drain when no dashboard got anything new for this many seconds",
    )
    ap.add_argument("--idle-wait", type=float, default=15.0)
    ap.add_argument("--idle-threshold", type=float, default=0.3)
    ap.add_argument("--pause", type=float, default=1.0, help="seconds of rest between runs")
    ap.add_argument(
        "--retry-failed",
        type=int,
        default=1,
        help="run a failed run again (up to this many times); failed attempts stay in the JSON",
    )
    ap.add_argument("--keep", action="store_true", help="keep each run's data folder")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    rates = [float(x) for x in args.rates.split(",") if x.strip()]
    dash_counts = [int(x) for x in args.dashboards.split(",") if x.strip()]
    if any(c not in CONFIGS for c in configs):
        ap.error(f"--configs: choose among {', '.join(CONFIGS)}")
    if not configs or not rates or not dash_counts or args.repeat < 1 or min(dash_counts) < 1:
        ap.error("need configs, rates, dashboard counts >= 1 and --repeat >= 1")
    if not wh.ESSEN.exists():
        print(f"{wh.ESSEN} not found: run with the project venv's python", file=sys.stderr)
        return 2
    redis_version = None
    if any(CONFIGS[c][2] for c in configs):
        try:
            redis_version = redis_info(args.redis, "server").get("redis_version")
        except (OSError, RuntimeError) as exc:
            print(f"Redis at {args.redis} does not answer: {exc}", file=sys.stderr)
            return 2
    e2e.ensure_node()

    atexit.register(wh._kill_all)
    signal.signal(signal.SIGINT, wh._on_signal)
    signal.signal(signal.SIGTERM, wh._on_signal)
    fanout.raise_nofile_limit()

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out_path = args.out or RESULTS_DIR / f"cluster_fanout-{stamp}.json"
    log_dir = RESULTS_DIR / "logs" / f"cluster_fanout-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "started": datetime.now().isoformat(timespec="seconds"),
        "argv": sys.argv,
        "commit": wh.git_head(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "host": {
            "cpu_count": psutil.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "node": subprocess.run(
                ["node", "--version"], capture_output=True, text=True, check=False
            ).stdout.strip(),
            "redis": redis_version,
            "loadavg_start": os.getloadavg(),
        },
    }
    runs: list[dict[str, Any]] = []
    failed_attempts: list[dict[str, Any]] = []

    def save(summary: dict[str, Any] | None) -> None:
        doc = dict(meta, runs=runs, failed_attempts=failed_attempts, summary=summary)
        doc["host"] = dict(meta["host"], loadavg_end=os.getloadavg())  # type: ignore[arg-type]
        tmp = out_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(out_path)

    total = len(configs) * len(rates) * len(dash_counts) * args.repeat
    i = 0
    # every cell inside each repeat, so that a noisy period on the host hits all of them
    for rep in range(1, args.repeat + 1):
        for d in dash_counts:
            for rate in rates:
                for config in configs:
                    i += 1
                    tag = f"c{config}-r{rate:g}-n{d}-{rep}"
                    print(
                        f"[{i}/{total}] {CONFIGS[config][0]}, {rate:g} events/s × {d} "
                        f"dashboards, repeat {rep} ...",
                        end=" ",
                        flush=True,
                    )
                    rec = wh.run_cell(
                        partial(run_once, config, rate, d, rep, args, log_dir),
                        tag,
                        args,
                        failed_attempts,
                    )
                    runs.append(rec)
                    if rec["ok"]:
                        print(
                            f"{wh.fmt(rec['delivered_per_s'], '{:.0f}')}/s delivered, lost "
                            f"{rec['lost']}, p50/p99 {wh.fmt(rec['lat_p50_ms'], '{:.1f}')}/"
                            f"{wh.fmt(rec['lat_p99_ms'], '{:.1f}')} ms, admin "
                            f"{wh.fmt(rec['admin_cpu_us_per_msg'], '{:.1f}')} µs/delivery "
                            f"({rec['admin_cpu_s']:.2f} s), Redis "
                            f"{wh.fmt(rec['redis_cpu_s'], '{:.3f}')} s, dashboards "
                            f"{rec['dash_cpu_s']:.1f} s, noise {rec['other_cpu_s']:.1f} s",
                            flush=True,
                        )
                    else:
                        print(f"FAILED: {rec.get('error')} (log: {rec['log']})", flush=True)
                    save(None)
                    time.sleep(args.pause)

    summary = summarize(runs, configs, rates, dash_counts)
    save(summary)
    print_table(summary, args)
    print(f"\nresults: {out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path}")
    print(f"logs:    {log_dir.relative_to(ROOT)}")
    return 0 if all(r["ok"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
