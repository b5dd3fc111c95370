#!/usr/bin/env node
// Dashboards for the end-to-end benchmark (official socket.io-client v4).
//
//   node bench/loadgen/e2e_dashboards.js --url http://127.0.0.1:PORT --token JWT --n 100 \
//        --ids FILE --out-dir DIR [--workers 1] [--batch 50] [--path /api/socket.io/] \
//        [--connect-timeout 120] [--deflate]
//
// Opens --n dashboard connections to the admin API as a browser dashboard does:
// `auth: {token}`, path --path, websocket transport only, one engine.io connection per
// dashboard (forceNew), no reconnection. Each emits `subscribe` "monitoring" and needs
// an ack with `ok: true`. The connections are spread over --workers forked processes.
//
// --ids lists the event ids the run may produce, one per line; line k (from 0) is the
// id of the k-th webhook the load generator will send. For every `message:processed`
// event with direction "in" a dashboard stamps the receive time (CLOCK_MONOTONIC, ms,
// process.hrtime: the same clock as Python's time.monotonic) at index k of its own row.
// The first receipt counts; later ones of the same id are duplicates. Ids that are not
// in the list are counted as unknown. Events with direction "out" are only counted.
//
// Output: "READY <n>" on stdout once every dashboard is subscribed. Progress on stderr,
// at most every 200 ms and only when it changed:
//   PROGRESS <min unique per dashboard> <unique receipts> <unknown> <duplicates> <disconnects>
// On SIGUSR2 (to this main process only) every worker writes its receive times to
// DIR/recv-w<i>.bin (float64 little-endian, row-major: dashboards × ids, NaN = not
// received) and the main process writes DIR/botlat.bin (float64 per id: the event's own
// `latency_ms`, the bot's receive→answered time, NaN if never seen) and prints exactly
// one JSON line on stdout. It then stays connected until SIGTERM (the driver takes its
// CPU and memory figures before it stops this process group).
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { fork } = require('node:child_process');
const { io } = require('socket.io-client');

const ROOM = 'monitoring';
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function parseArgs(argv) {
  const opts = {
    url: null, token: null, n: 10, ids: null, outDir: null, workers: 1, batch: 50,
    path: '/api/socket.io/', connectTimeout: 120, deflate: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--url': opts.url = val(); break;
      case '--token': opts.token = val(); break;
      case '--n': opts.n = Number(val()); break;
      case '--ids': opts.ids = val(); break;
      case '--out-dir': opts.outDir = val(); break;
      case '--workers': opts.workers = Number(val()); break;
      case '--batch': opts.batch = Number(val()); break;
      case '--path': opts.path = val(); break;
      case '--connect-timeout': opts.connectTimeout = Number(val()); break;
      case '--deflate': opts.deflate = true; break;
      case '-h': case '--help':
        process.stderr.write(head());
        process.exit(0);
        break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  for (const k of ['url', 'token', 'ids', 'outDir']) if (!opts[k]) throw new Error(`--${k} is required`);
  for (const k of ['n', 'workers', 'batch']) {
    if (!Number.isInteger(opts[k]) || opts[k] < 1) throw new Error(`--${k} must be a positive integer`);
  }
  opts.workers = Math.min(opts.workers, opts.n);
  return opts;
}

function head() {
  const src = fs.readFileSync(__filename, 'utf8').split('\n');
  return src.slice(1, 28).map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n';
}

function readIds(file) {
  const ids = fs.readFileSync(file, 'utf8').split('\n').filter((s) => s.length > 0);
  const index = new Map();
  ids.forEach((id, k) => index.set(id, k));
  return { ids, index };
}

function cpuSeconds() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

// ---------------------------------------------------------------- worker ------
function runWorker() {
  let cfg = null;
  let index = null;
  let nIds = 0;
  const subs = [];
  let recv = null; // Float64Array(subs × nIds), NaN = not yet
  let botLat = null; // Float64Array(nIds)
  let unknown = 0;
  let duplicates = 0;
  let outEvents = 0;
  let other = 0;
  let disconnects = 0;
  const disconnectReasons = {};
  let closing = false;
  let changed = false;

  const send = (m) => { if (process.connected) process.send(m); };

  function onProcessed(sub, ev) {
    const t = nowMs();
    if (!ev || typeof ev !== 'object') { other++; return; }
    if (ev.direction !== 'in') { outEvents++; return; }
    const k = index.get(ev.id);
    if (k === undefined) { unknown++; changed = true; return; }
    const at = sub.row * nIds + k;
    if (recv[at] === recv[at]) { duplicates++; changed = true; return; } // not NaN: seen
    recv[at] = t;
    sub.unique++;
    changed = true;
    if (botLat[k] !== botLat[k] && typeof ev.latency_ms === 'number') botLat[k] = ev.latency_ms;
  }

  function openDashboard(id, row) {
    return new Promise((resolve, reject) => {
      const s = io(cfg.url, {
        path: cfg.path,
        auth: { token: cfg.token },
        transports: ['websocket'],
        forceNew: true, // one engine.io connection per dashboard, as separate browser tabs
        reconnection: false, // a dropped dashboard must show up as lost events
        timeout: cfg.connectTimeout * 1000,
        perMessageDeflate: cfg.deflate ? { threshold: 1024 } : false,
      });
      const sub = { id, row, s, unique: 0 };
      let settled = false;
      const fail = (msg) => {
        if (settled) return;
        settled = true;
        s.close();
        reject(new Error(`dashboard ${id}: ${msg}`));
      };
      s.on('message:processed', (ev) => onProcessed(sub, ev));
      s.on('disconnect', (reason) => {
        if (closing) return;
        disconnects++;
        disconnectReasons[reason] = (disconnectReasons[reason] || 0) + 1;
        changed = true;
        if (!settled) fail(`disconnected during subscribe: ${reason}`);
      });
      s.once('connect_error', (e) => fail(`connect_error: ${e && e.message}`));
      s.once('connect', () => {
        s.timeout(cfg.connectTimeout * 1000).emit('subscribe', ROOM, (err, ack) => {
          if (err) return fail('no subscribe ack (timeout)');
          if (!ack || ack.ok !== true) return fail(`subscribe ack was ${JSON.stringify(ack).slice(0, 200)}`);
          settled = true;
          resolve(sub);
        });
      });
    });
  }

  async function connectAll() {
    const [from, to] = cfg.range;
    for (let i = from; i < to; i += cfg.batch) {
      const group = [];
      for (let j = i; j < Math.min(i + cfg.batch, to); j++) group.push(openDashboard(j, j - from));
      const res = await Promise.allSettled(group);
      for (const x of res) if (x.status === 'fulfilled') subs.push(x.value);
      const bad = res.find((x) => x.status === 'rejected');
      if (bad) throw bad.reason;
      send({ type: 'progress', connected: subs.length });
    }
    subs.sort((a, b) => a.row - b.row);
  }

  function progress() {
    let min = Infinity;
    let total = 0;
    for (const sb of subs) {
      if (sb.unique < min) min = sb.unique;
      total += sb.unique;
    }
    return { min: Number.isFinite(min) ? min : 0, total, unknown, duplicates, disconnects };
  }

  process.on('disconnect', () => process.exit(1)); // parent went away
  process.on('message', async (m) => {
    try {
      if (m.type === 'init') {
        cfg = m;
        ({ index } = readIds(cfg.ids));
        nIds = index.size;
        const rows = cfg.range[1] - cfg.range[0];
        recv = new Float64Array(rows * nIds).fill(NaN);
        botLat = new Float64Array(nIds).fill(NaN);
        await connectAll();
        send({ type: 'ready', count: subs.length });
        setInterval(() => {
          if (!changed) return;
          changed = false;
          send({ type: 'tick', ...progress() });
        }, 100);
      } else if (m.type === 'report') {
        const file = path.join(cfg.outDir, `recv-w${cfg.worker}.bin`);
        fs.writeFileSync(file, Buffer.from(recv.buffer, recv.byteOffset, recv.byteLength));
        send({
          type: 'report',
          file, dashboards: subs.length, rows: cfg.range[1] - cfg.range[0], first: cfg.range[0],
          ...progress(), outEvents, other, disconnectReasons,
          perDashboard: subs.map((sb) => sb.unique),
          botLat: Array.from(botLat, (x) => (x === x ? x : null)),
          cpu_s: cpuSeconds(),
        });
      } else if (m.type === 'close') {
        closing = true;
        for (const sb of subs) sb.s.close();
        setTimeout(() => process.exit(0), 100);
      }
    } catch (e) {
      send({ type: 'error', message: String(e && e.message ? e.message : e) });
    }
  });
}

// ---------------------------------------------------------------- main --------
async function runMain() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`e2e_dashboards.js: ${e.message}\n`);
    process.exit(2);
  }
  const log = (s) => process.stderr.write(`[dashboards] ${s}\n`);
  const { ids } = readIds(opts.ids);
  fs.mkdirSync(opts.outDir, { recursive: true });
  const per = Math.ceil(opts.n / opts.workers);
  const batchPerWorker = Math.max(1, Math.ceil(opts.batch / opts.workers));
  const state = [];
  let reportRequested = false;
  process.on('SIGUSR2', () => { reportRequested = true; });
  process.on('SIGTERM', () => {
    for (const st of state) if (!st.exited) st.child.kill('SIGKILL');
    process.exit(0);
  });
  const fail = (msg) => { throw new Error(msg); };
  const waitFor = async (pred, timeoutMs, what) => {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      const err = state.find((s) => s.error);
      if (err) fail(`worker error: ${err.error}`);
      if (Date.now() > deadline) fail(`timeout waiting for ${what}`);
      await sleep(20);
    }
  };
  const result = {
    url: opts.url, n: opts.n, workers: opts.workers, ids: ids.length, path: opts.path,
    deflate: opts.deflate, node: process.version,
    socket_io_client: require('socket.io-client/package.json').version,
  };
  let exitCode = 0;
  try {
    for (let w = 0; w < opts.workers; w++) {
      const from = w * per;
      const to = Math.min(opts.n, from + per);
      if (from >= to) break;
      const child = fork(__filename, ['--worker'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const st = { child, from, to, connected: 0, ready: false, tick: null, report: null, error: null, exited: false };
      state.push(st);
      child.on('message', (m) => {
        if (m.type === 'progress') st.connected = m.connected;
        else if (m.type === 'ready') st.ready = true;
        else if (m.type === 'tick') st.tick = m;
        else if (m.type === 'report') st.report = m;
        else if (m.type === 'error') st.error = m.message;
      });
      child.on('exit', (code) => { st.exited = true; if (!st.report) st.error = st.error || `worker exited with ${code}`; });
      child.send({
        type: 'init', worker: w, url: opts.url, token: opts.token, path: opts.path, ids: opts.ids,
        outDir: opts.outDir, range: [from, to], batch: batchPerWorker,
        connectTimeout: opts.connectTimeout, deflate: opts.deflate,
      });
    }
    const tc0 = nowMs();
    await waitFor(() => state.every((s) => s.ready), opts.connectTimeout * 1000, 'dashboards to subscribe');
    result.connect_s = (nowMs() - tc0) / 1000;
    log(`${opts.n} dashboards connected and subscribed in ${result.connect_s.toFixed(2)} s`);
    process.stdout.write(`READY ${opts.n}\n`);

    // progress until the driver asks for the report
    let last = '';
    while (!reportRequested) {
      const err = state.find((s) => s.error);
      if (err) fail(`worker error: ${err.error}`);
      let min = Infinity; let total = 0; let unk = 0; let dup = 0; let disc = 0;
      for (const st of state) {
        const t = st.tick || { min: 0, total: 0, unknown: 0, duplicates: 0, disconnects: 0 };
        min = Math.min(min, t.min); total += t.total; unk += t.unknown; dup += t.duplicates;
        disc += t.disconnects;
      }
      const line = `PROGRESS ${min} ${total} ${unk} ${dup} ${disc}`;
      if (line !== last) { process.stderr.write(line + '\n'); last = line; }
      await sleep(200);
    }

    for (const st of state) st.child.send({ type: 'report' });
    await waitFor(() => state.every((s) => s.report), 30000, 'worker reports');
    const botLat = new Float64Array(ids.length).fill(NaN);
    let unk = 0; let dup = 0; let disc = 0; let out = 0; let other = 0;
    const reasons = {};
    const files = [];
    const perDashboard = [];
    const perProc = [{ role: 'main', cpu_s: cpuSeconds() }];
    for (const st of state) {
      const rp = st.report;
      unk += rp.unknown; dup += rp.duplicates; disc += rp.disconnects; out += rp.outEvents;
      other += rp.other;
      for (const [k, v] of Object.entries(rp.disconnectReasons)) reasons[k] = (reasons[k] || 0) + v;
      rp.botLat.forEach((x, k) => { if (x !== null && botLat[k] !== botLat[k]) botLat[k] = x; });
      files.push({ file: rp.file, first: rp.first, rows: rp.rows });
      perDashboard.push(...rp.perDashboard);
      perProc.push({ role: `dashboards[${st.from}..${st.to})`, cpu_s: rp.cpu_s });
    }
    const botFile = path.join(opts.outDir, 'botlat.bin');
    fs.writeFileSync(botFile, Buffer.from(botLat.buffer));
    Object.assign(result, {
      dashboards: perDashboard.length,
      files, botlat_file: botFile,
      per_dashboard_unique: perDashboard,
      unknown: unk, duplicates: dup, out_events: out, malformed: other,
      disconnects: disc, disconnect_reasons: reasons,
      cpu_total_since_start: perProc,
    });
  } catch (e) {
    result.error = String(e && e.message ? e.message : e);
    exitCode = 1;
  }
  process.stdout.write(JSON.stringify(result) + '\n');
  if (exitCode) {
    for (const st of state) if (!st.exited) st.child.kill('SIGKILL');
    process.exit(exitCode);
  }
  // Stay connected until SIGTERM: the driver reads CPU and RSS of this tree first.
  setInterval(() => {}, 1 << 30);
}

if (process.argv[2] === '--worker') runWorker();
else runMain();
