"""Socket.IO fan-out benchmark driver: ESSEN vs python-socketio (and Node socket.io).

One publisher emits `publish` at R msg/s; the server broadcasts each as `metrics:update`
to N subscribers in room `monitoring`. For every (server, N, R, repeat) this starts the
server (bench/servers/<file> --port PORT, waits for READY), runs the Node load generator
(bench/loadgen/fanout.js), samples the server's CPU time and RSS with psutil, then stops
the server. Medians over repeats are printed as one table per (N, R), with the ratio of
each server to the baseline (psio), and everything is written to
bench/results/fanout-<timestamp>.json.

    .venv/bin/python bench/fanout.py [--servers essen,psio,node] [--n 100,500,1000]
        [--r 10,100] [--duration 10] [--drain 2] [--repeat 3]

See bench/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SERVERS_DIR = BENCH / "servers"
LOADGEN_DIR = BENCH / "loadgen"
LOADGEN = LOADGEN_DIR / "fanout.js"
RESULTS_DIR = BENCH / "results"

# short name -> file in bench/servers/. Any other name is looked up as <name>.py / <name>.js.
ALIASES = {
    "essen": "essen_server.py",
    "psio": "psio_uvicorn.py",
    "node": "node_socketio.js",
}

READY_TIMEOUT_S = 30.0
RSS_POLL_S = 0.1

# --------------------------------------------------------------------- processes ---

from _procs import _kill_all, _kill_group, _on_signal, _spawn  # noqa: E402


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_nofile_limit() -> None:
    """N subscribers need N sockets in the server and in the loadgen; children inherit."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass


# --------------------------------------------------------------------- servers -----


def resolve_server(name: str) -> Path:
    fname = ALIASES.get(name)
    if fname:
        return SERVERS_DIR / fname
    for ext in (".py", ".js"):
        p = SERVERS_DIR / f"{name}{ext}"
        if p.exists():
            return p
    return SERVERS_DIR / f"{name}.py"


def server_command(path: Path, port: int) -> list[str]:
    if path.suffix == ".js":
        return [shutil.which("node") or "node", str(path), "--port", str(port)]
    return [sys.executable, str(path), "--port", str(port)]


def ensure_loadgen_deps() -> None:
    marker = LOADGEN_DIR / "node_modules" / "socket.io-client" / "package.json"
    if marker.exists() and (LOADGEN_DIR / "node_modules" / "socket.io" / "package.json").exists():
        return
    npm = shutil.which("npm")
    if not npm:
        sys.exit("npm not found: install Node.js >= 20 (the load generator is a Node script)")
    print("installing load generator dependencies (npm ci in bench/loadgen) ...", flush=True)
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=LOADGEN_DIR, check=True, timeout=600)


def cpu_s(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def tree_cpu_s(p: psutil.Process) -> float:
    """CPU of a process and its live descendants (loadgen main + forked workers)."""
    total = 0.0
    procs = [p]
    with contextlib.suppress(psutil.Error):
        procs += p.children(recursive=True)
    for q in procs:
        with contextlib.suppress(psutil.Error):
            total += cpu_s(q)
    return total


def vm_hwm_bytes(pid: int) -> int | None:
    """Kernel-tracked peak RSS (VmHWM) of a live process, Linux only."""
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
    t = psutil.cpu_times()
    busy = t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0)
    busy += getattr(t, "softirq", 0.0) + getattr(t, "steal", 0.0)
    return float(busy), float(getattr(t, "steal", 0.0))


@dataclass
class Sampler:
    """Polls RSS (and keeps the peak) of a process every RSS_POLL_S."""

    proc: psutil.Process
    peak_rss: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self.proc.memory_info().rss
            except psutil.Error:
                return
            self.samples += 1
            self.peak_rss = max(self.peak_rss, rss)
            self._stop.wait(RSS_POLL_S)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)


# --------------------------------------------------------------------- one run -----


def run_once(
    server_name: str,
    server_path: Path,
    n: int,
    r: float,
    args: argparse.Namespace,
    log_dir: Path,
    tag: str,
) -> dict[str, Any]:
    rec: dict[str, Any] = {"server": server_name, "n": n, "r": r, "tag": tag, "ok": False}
    port = free_port()
    log_path = log_dir / f"{tag}.log"
    rec["log"] = str(log_path.relative_to(ROOT)) if log_path.is_relative_to(ROOT) else str(log_path)
    logf = open(log_path, "w", buffering=1)  # noqa: SIM115 - closed in finally
    log_lock = threading.Lock()

    def log(prefix: str, line: str) -> None:
        with log_lock:
            logf.write(f"{prefix} {line.rstrip()}\n")

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = pin_prefix(args.pin_server) + server_command(server_path, port)
    log("#", "server: " + " ".join(cmd))
    srv = _spawn(
        cmd,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    ready = threading.Event()
    server_stderr_head: list[str] = []

    def read_srv_stdout() -> None:
        assert srv.stdout is not None
        for line in srv.stdout:
            if line.strip() == "READY":
                ready.set()
            log("server.out", line)

    def read_srv_stderr() -> None:
        assert srv.stderr is not None
        for line in srv.stderr:
            if len(server_stderr_head) < 20:
                server_stderr_head.append(line.rstrip())
            log("server.err", line)

    threads = [
        threading.Thread(target=read_srv_stdout, daemon=True),
        threading.Thread(target=read_srv_stderr, daemon=True),
    ]
    for t in threads:
        t.start()

    sampler: Sampler | None = None
    lg: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready.wait(0.05):
            if srv.poll() is not None:
                raise RuntimeError(f"server exited with code {srv.returncode} before READY")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not print READY within {READY_TIMEOUT_S:.0f} s")
        sp = psutil.Process(srv.pid)
        rec["server_rss_ready_mib"] = sp.memory_info().rss / 2**20
        sampler = Sampler(sp)
        sampler.start()

        lg_cmd = [
            *pin_prefix(args.pin_loadgen),
            shutil.which("node") or "node",
            str(LOADGEN),
            "--url",
            f"http://127.0.0.1:{port}",
            "--n",
            str(n),
            "--r",
            str(r),
            "--duration",
            str(args.duration),
            "--drain",
            str(args.drain),
            "--workers",
            str(loadgen_workers(args.workers, n, r)),
            "--batch",
            str(args.batch),
            "--payload",
            str(args.payload),
            "--connect-timeout",
            str(args.connect_timeout),
        ]
        if args.deflate:
            lg_cmd.append("--deflate")
        log("#", "loadgen: " + " ".join(lg_cmd))
        lg = _spawn(
            lg_cmd,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        lgp = psutil.Process(lg.pid)
        marks: dict[str, dict[str, float]] = {}
        out_lines: list[str] = []

        def snapshot() -> dict[str, float]:
            busy, steal = system_busy()
            snap = {"t": time.monotonic(), "sys_busy": busy, "steal": steal}
            with contextlib.suppress(psutil.Error):
                snap["server_cpu"] = cpu_s(sp)
                snap["server_rss"] = float(sp.memory_info().rss)
            snap["loadgen_cpu"] = tree_cpu_s(lgp)
            return snap

        def read_lg_stderr() -> None:
            assert lg is not None
            assert lg.stderr is not None
            for line in lg.stderr:
                s = line.strip()
                if s.startswith("PHASE "):
                    marks[s.split()[1]] = snapshot()
                log("loadgen.err", line)
                if args.verbose:
                    sys.stderr.write(f"    {s}\n")

        def read_lg_stdout() -> None:
            assert lg is not None
            assert lg.stdout is not None
            for line in lg.stdout:
                out_lines.append(line)
                log("loadgen.out", line)

        lg_threads = [
            threading.Thread(target=read_lg_stderr, daemon=True),
            threading.Thread(target=read_lg_stdout, daemon=True),
        ]
        for t in lg_threads:
            t.start()

        hard_timeout = args.connect_timeout + args.duration + args.drain + 60
        try:
            lg.wait(timeout=hard_timeout)
        except subprocess.TimeoutExpired:
            _kill_group(lg)
            raise RuntimeError(
                f"load generator exceeded the hard timeout ({hard_timeout:.0f} s)"
            ) from None
        for t in lg_threads:
            t.join(timeout=5)

        # peak RSS: kernel high-water mark (exact) and our 100 ms polling
        hwm = vm_hwm_bytes(srv.pid)
        sampler.stop()
        server_alive = srv.poll() is None
        result = None
        for line in reversed(out_lines):
            if line.strip().startswith("{"):
                result = json.loads(line)
                break
        if result is None:
            raise RuntimeError(f"load generator printed no result (exit {lg.returncode})")
        rec["loadgen"] = result
        if "error" in result:
            raise RuntimeError(f"load generator: {result['error']}")
        if not server_alive:
            raise RuntimeError(f"server died during the run (exit {srv.returncode})")
        if "measure_start" not in marks or "measure_end" not in marks:
            raise RuntimeError("missing PHASE markers from the load generator")

        a, b = marks["measure_start"], marks["measure_end"]
        window = b["t"] - a["t"]
        server_cpu = b["server_cpu"] - a["server_cpu"]
        lg_cpu = b["loadgen_cpu"] - a["loadgen_cpu"]
        sys_busy = b["sys_busy"] - a["sys_busy"]
        delivered = int(result["delivered"])
        peak_polled = sampler.peak_rss
        lat = result["latency_ms"]
        rec.update(
            ok=True,
            window_s=window,
            sent=result["sent"],
            expected=result["expected"],
            delivered=delivered,
            lost=result["lost"],
            delivered_per_s=result["delivered_per_s"],
            offered_per_s=result["offered_per_s"],
            lat_p50_ms=lat["p50"],
            lat_p90_ms=lat["p90"],
            lat_p99_ms=lat["p99"],
            lat_max_ms=lat["max"],
            server_cpu_s=server_cpu,
            server_cpu_util=server_cpu / window if window > 0 else None,
            server_cpu_us_per_msg=(server_cpu / delivered * 1e6) if delivered else None,
            server_peak_rss_mib=max(peak_polled, hwm or 0) / 2**20,
            server_peak_rss_polled_mib=peak_polled / 2**20,
            server_vmhwm_mib=(hwm / 2**20) if hwm else None,
            server_rss_connected_mib=a.get("server_rss", 0.0) / 2**20,
            loadgen_cpu_s=lg_cpu,
            loadgen_cpu_self_s=result["loadgen_cpu"]["total_s"],
            loadgen_max_proc_util=result["loadgen_cpu"]["max_util"],
            loadgen_workers=result["workers"],
            other_cpu_s=max(0.0, sys_busy - server_cpu - lg_cpu),
            steal_s=b["steal"] - a["steal"],
            connect_s=result["connect_s"],
            disconnects=result["disconnects"],
            send_lag_max_ms=result["send_lag_max_ms"],
            server_banner=server_stderr_head[:5],
        )
    except Exception as e:  # a failed run is recorded, the sweep goes on
        rec["error"] = str(e)
        rec["server_banner"] = server_stderr_head[:20]
    finally:
        if lg is not None:
            _kill_group(lg, grace_s=3.0)
        if sampler is not None:
            sampler.stop()
        _kill_group(srv)
        for t in threads:
            t.join(timeout=2)
        logf.close()
    return rec


def pin_prefix(cpus: str | None) -> list[str]:
    if not cpus:
        return []
    taskset = shutil.which("taskset")
    if not taskset:
        raise RuntimeError("--pin needs taskset (util-linux)")
    return [taskset, "-c", cpus]


def wait_for_quiet(max_wait_s: float, threshold_cores: float) -> dict[str, float]:
    """Wait (up to max_wait_s) until the host's busy CPU over 1 s is below threshold_cores.

    The machine is shared: other people's test runs land in our measurement window. This
    does not prevent that, it only avoids starting a run in the middle of a burst.
    """
    t0 = time.monotonic()
    busy = 0.0
    while True:
        b0, _ = system_busy()
        time.sleep(1.0)
        b1, _ = system_busy()
        busy = b1 - b0
        waited = time.monotonic() - t0
        if busy < threshold_cores or waited >= max_wait_s:
            return {"busy_cores_before": busy, "waited_s": waited}


def loadgen_workers(spec: str, n: int, r: float) -> int:
    if spec == "auto":
        # one Node subscriber process handles roughly 40-50k msg/s on a full core here
        return 2 if n * r >= 20000 else 1
    return max(1, int(spec))


# --------------------------------------------------------------------- report ------

# (key in run record, label, format, lower_is_better)
METRICS: list[tuple[str, str, str, bool | None]] = [
    ("delivered_per_s", "delivered msg/s", "{:.0f}", False),
    ("lat_p50_ms", "latency p50 ms", "{:.2f}", True),
    ("lat_p90_ms", "latency p90 ms", "{:.2f}", True),
    ("lat_p99_ms", "latency p99 ms", "{:.2f}", True),
    ("lat_max_ms", "latency max ms", "{:.1f}", True),
    ("lost", "lost msgs", "{:.0f}", True),
    ("server_cpu_s", "server CPU s", "{:.2f}", True),
    ("server_cpu_util", "server CPU util", "{:.0%}", True),
    ("server_cpu_us_per_msg", "server CPU µs/msg", "{:.1f}", True),
    ("server_peak_rss_mib", "server peak RSS MiB", "{:.1f}", True),
    ("loadgen_cpu_s", "loadgen CPU s", "{:.2f}", None),
    ("loadgen_max_proc_util", "loadgen max proc util", "{:.0%}", None),
    ("other_cpu_s", "other CPU s (noise)", "{:.2f}", None),
]


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [float(r[key]) for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt(v: float | None, f: str) -> str:
    return "—" if v is None else f.format(v)


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "—"
    if b == 0:
        return "=" if a == 0 else "∞"
    return f"{a / b:.2f}"


def print_tables(
    summary: dict[str, Any], servers: list[str], baseline: str, args: argparse.Namespace
) -> None:
    others = [s for s in servers if s != baseline]
    ratio_cols = others if baseline in servers else []
    for cell in summary.values():
        n, r = cell["n"], cell["r"]
        print()
        print(
            f"== N={n} subscribers, R={r:g} msg/s -> offered {n * r:,.0f} deliveries/s; "
            f"{args.duration:g} s + {args.drain:g} s drain; median of {args.repeat} "
            f"({'deflate offered' if args.deflate else 'no deflate'})"
        )
        cols = [*servers, *[f"{s}/{baseline}" for s in ratio_cols]]
        w0 = 24
        wc = max(12, *(len(c) + 2 for c in cols))
        print("metric".ljust(w0) + "".join(c.rjust(wc) for c in cols))
        for mkey, label, f, _ in METRICS:
            row = label.ljust(w0)
            for s in servers:
                row += fmt(cell["servers"].get(s, {}).get(mkey), f).rjust(wc)
            for s in ratio_cols:
                a = cell["servers"].get(s, {}).get(mkey)
                b = cell["servers"].get(baseline, {}).get(mkey)
                row += ratio(a, b).rjust(wc)
            print(row)
        okrow = "runs ok".ljust(w0)
        for s in servers:
            c = cell["servers"].get(s, {})
            okrow += f"{c.get('runs_ok', 0)}/{c.get('runs', 0)}".rjust(wc)
        print(okrow)
        for s in servers:
            for note in cell["servers"].get(s, {}).get("notes", []):
                print(f"  ! {s}: {note}")


def summarize(
    runs: list[dict[str, Any]], servers: list[str], ns: list[int], rs: list[float]
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for n in ns:
        for r in rs:
            cell: dict[str, Any] = {"n": n, "r": r, "servers": {}}
            for s in servers:
                mine = [x for x in runs if x["server"] == s and x["n"] == n and x["r"] == r]
                ok = [x for x in mine if x["ok"]]
                med: dict[str, Any] = {"runs": len(mine), "runs_ok": len(ok)}
                for mkey, *_ in METRICS:
                    med[mkey] = median_of(ok, mkey)
                notes: list[str] = []
                for x in mine:
                    if not x["ok"]:
                        notes.append(f"run {x['tag']} failed: {x.get('error')}")
                if ok:
                    lu = med["loadgen_max_proc_util"]
                    if lu is not None and lu > 0.85:
                        notes.append(
                            f"a load generator process ran at {lu:.0%} CPU: the client side may "
                            "be limiting delivered/s and inflating latency"
                        )
                    su = med["server_cpu_util"]
                    if su is not None and su > 0.9:
                        notes.append(f"server CPU at {su:.0%} of one core: saturated")
                    if any(x.get("disconnects") for x in ok):
                        notes.append("subscribers were disconnected during the run")
                    other = median_of(ok, "other_cpu_s")
                    win = median_of(ok, "window_s") or 1.0
                    if other is not None and other > 0.25 * win:
                        notes.append(
                            f"other processes used {other:.1f} CPU s ({other / win:.0%} of a core) "
                            "in the window: host was busy, treat these numbers with care"
                        )
                    steal = median_of(ok, "steal_s")
                    if steal and steal > 0.05 * (median_of(ok, "window_s") or 1):
                        notes.append(f"CPU steal {steal:.2f} s in the window (noisy host)")
                med["notes"] = notes
                cell["servers"][s] = med
            summary[f"n{n}-r{r:g}"] = cell
    return summary


# --------------------------------------------------------------------- main --------


def parse_list(s: str, conv: Any) -> list[Any]:
    return [conv(x) for x in s.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Socket.IO fan-out benchmark (see bench/README.md)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument(
        "--servers",
        default="essen,psio",
        help="comma list: essen, psio, node, or any bench/servers/<name>.{py,js}",
    )
    ap.add_argument("--baseline", default="psio", help="server the ratios are relative to")
    ap.add_argument("--n", default="100,500,1000", help="subscriber counts (comma list)")
    ap.add_argument("--r", default="10,100", help="publish rates in msg/s (comma list)")
    ap.add_argument("--duration", type=float, default=10.0, help="publishing seconds per run")
    ap.add_argument(
        "--drain",
        type=float,
        default=2.0,
        help="seconds after the last publish before undelivered messages count as lost",
    )
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs per (server, N, R); medians are reported"
    )
    ap.add_argument(
        "--workers",
        default="auto",
        help="Node subscriber processes in the load generator (auto: 2 if N*R >= 20000)",
    )
    ap.add_argument("--batch", type=int, default=50, help="subscribers connecting concurrently")
    ap.add_argument("--payload", type=int, default=400, help="approximate JSON payload bytes")
    ap.add_argument(
        "--deflate",
        action="store_true",
        help="clients offer permessage-deflate (as browsers do); default off",
    )
    ap.add_argument(
        "--connect-timeout",
        type=float,
        default=120.0,
        help="seconds allowed for connecting+subscribing all N clients",
    )
    ap.add_argument("--pause", type=float, default=1.0, help="seconds of rest between runs")
    ap.add_argument(
        "--idle-wait",
        type=float,
        default=15.0,
        help="before each run wait up to this many seconds for the host to be quiet (0: off)",
    )
    ap.add_argument(
        "--idle-threshold",
        type=float,
        default=0.3,
        help="'quiet' means other processes use less than this many cores",
    )
    ap.add_argument(
        "--pin",
        action="store_true",
        help="pin the server to CPU 0 and the load generator to CPU 1 (taskset)",
    )
    ap.add_argument("--out", type=Path, default=None, help="results JSON path")
    ap.add_argument("-v", "--verbose", action="store_true", help="echo load generator progress")
    args = ap.parse_args(argv)

    args.pin_server = "0" if args.pin else None
    args.pin_loadgen = "1" if args.pin else None
    if args.workers != "auto" and not args.workers.isdigit():
        ap.error("--workers must be 'auto' or a positive integer")
    names = parse_list(args.servers, str.strip)
    ns = parse_list(args.n, int)
    rs = parse_list(args.r, float)
    if not names or not ns or not rs or args.repeat < 1:
        ap.error("need at least one server, N, R and --repeat >= 1")

    atexit.register(_kill_all)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    raise_nofile_limit()

    servers: list[str] = []
    paths: dict[str, Path] = {}
    for name in names:
        p = resolve_server(name)
        if not p.exists():
            print(f"skipping server '{name}': {p.relative_to(ROOT)} does not exist", flush=True)
            continue
        servers.append(name)
        paths[name] = p
    if not servers:
        print("no server to benchmark", file=sys.stderr)
        return 2
    if not shutil.which("node"):
        print("node not found: the load generator needs Node.js >= 20", file=sys.stderr)
        return 2
    ensure_loadgen_deps()

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out_path = args.out or RESULTS_DIR / f"fanout-{stamp}.json"
    log_dir = RESULTS_DIR / "logs" / f"fanout-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)

    node_v = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    meta = {
        "started": datetime.now().isoformat(timespec="seconds"),
        "argv": sys.argv,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "servers": {s: str(paths[s].relative_to(ROOT)) for s in servers},
        "host": {
            "cpu_count": psutil.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "node": node_v,
            "loadavg_start": os.getloadavg(),
        },
    }
    runs: list[dict[str, Any]] = []

    def save(summary: dict[str, Any] | None) -> None:
        doc = dict(meta, runs=runs, summary=summary)
        tmp = out_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(out_path)

    total = len(ns) * len(rs) * args.repeat * len(servers)
    i = 0
    # servers are interleaved inside each repeat so slow drifts in host noise hit all alike
    for n in ns:
        for r in rs:
            for rep in range(args.repeat):
                for s in servers:
                    i += 1
                    tag = f"{s}-n{n}-r{r:g}-{rep + 1}"
                    print(f"[{i}/{total}] {tag} ...", end=" ", flush=True)
                    quiet = (
                        wait_for_quiet(args.idle_wait, args.idle_threshold)
                        if args.idle_wait > 0
                        else {}
                    )
                    rec = run_once(s, paths[s], n, r, args, log_dir, tag)
                    rec["repeat"] = rep + 1
                    rec.update(quiet)
                    runs.append(rec)
                    if rec["ok"]:
                        print(
                            f"{rec['delivered_per_s']:.0f} msg/s, p50 {rec['lat_p50_ms']:.2f} ms, "
                            f"p99 {rec['lat_p99_ms']:.2f} ms, lost {rec['lost']}, "
                            f"server {rec['server_cpu_s']:.2f} CPU s "
                            f"({rec['server_cpu_us_per_msg'] or 0:.1f} µs/msg), "
                            f"loadgen {rec['loadgen_cpu_s']:.2f} CPU s, "
                            f"others {rec['other_cpu_s']:.2f} CPU s",
                            flush=True,
                        )
                    else:
                        print(f"FAILED: {rec.get('error')} (log: {rec['log']})", flush=True)
                    save(None)
                    time.sleep(args.pause)

    summary = summarize(runs, servers, ns, rs)
    save(summary)
    print_tables(summary, servers, args.baseline, args)
    print(f"\nresults: {out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path}")
    print(f"logs:    {log_dir.relative_to(ROOT)}")
    return 0 if all(x["ok"] for x in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
