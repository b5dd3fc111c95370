#!/usr/bin/env node
// Socket.IO fan-out load generator (official socket.io-client v4).
//
//   node bench/loadgen/fanout.js --url http://127.0.0.1:PORT --n 1000 --r 100 \
//        [--duration 10] [--drain 2] [--workers 2] [--batch 50] [--payload 400] \
//        [--deflate] [--connect-timeout 120]
//
// Topology: this (main) process forks --workers subscriber processes; each opens its
// share of the N subscriber connections (websocket transport only, no reconnection,
// one engine.io connection each), in batches, and waits for every `subscribe` ack.
// Then the main process opens ONE publisher connection and emits `publish` at R/s for
// --duration seconds; each payload carries {seq, ts} where ts is the send time in ms
// (performance.timeOrigin + performance.now()) and is padded so its JSON is ~--payload
// bytes. Subscribers stamp the receive time the same way. After the last send the run
// waits up to --drain seconds (less if everything has arrived): what has not arrived
// by then is lost.
//
// Output: progress and PHASE markers on stderr, exactly one JSON line on stdout.
//   PHASE measure_start  - all subscribers ready, publishing starts now
//   PHASE measure_end    - drain over, nothing more is counted (sockets still open)
// The benchmark driver snapshots the server's CPU time at those two markers.
'use strict';

const { fork } = require('node:child_process');
const { performance } = require('node:perf_hooks');
const { io } = require('socket.io-client');

const ROOM = 'monitoring';
const nowMs = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- histogram ---
// Latency histogram in µs: 1 µs buckets below 1 ms, then log buckets of 0.1% width
// up to 600 s. Mergeable across processes (plain counts), ~14k buckets.
const LIN = 1000;
const LN_BASE = Math.log(1.001);
const NBUCKETS = LIN + Math.ceil(Math.log(600e6 / LIN) / LN_BASE) + 1;

function bucketOf(us) {
  if (!(us > 0)) return 0;
  if (us < LIN) return Math.floor(us);
  return Math.min(NBUCKETS - 1, LIN + Math.floor(Math.log(us / LIN) / LN_BASE));
}

function bucketValueUs(i) {
  if (i < LIN) return i + 0.5;
  return LIN * Math.exp((i - LIN + 0.5) * LN_BASE);
}

function percentileMs(counts, total, p) {
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil((p / 100) * total));
  let cum = 0;
  for (let i = 0; i < counts.length; i++) {
    cum += counts[i];
    if (cum >= rank) return bucketValueUs(i) / 1000;
  }
  return bucketValueUs(counts.length - 1) / 1000;
}

// ---------------------------------------------------------------- args --------
function parseArgs(argv) {
  const opts = {
    url: null, n: 100, r: 10, duration: 10, drain: 2, workers: 1, batch: 50,
    payload: 400, deflate: false, connectTimeout: 120,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--url': opts.url = val(); break;
      case '--n': opts.n = Number(val()); break;
      case '--r': opts.r = Number(val()); break;
      case '--duration': opts.duration = Number(val()); break;
      case '--drain': opts.drain = Number(val()); break;
      case '--workers': opts.workers = Number(val()); break;
      case '--batch': opts.batch = Number(val()); break;
      case '--payload': opts.payload = Number(val()); break;
      case '--connect-timeout': opts.connectTimeout = Number(val()); break;
      case '--deflate': opts.deflate = true; break;
      case '--no-deflate': opts.deflate = false; break;
      case '-h': case '--help':
        process.stderr.write(head());
        process.exit(0);
        break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  if (!opts.url) throw new Error('--url is required');
  for (const k of ['n', 'workers', 'batch']) {
    if (!Number.isInteger(opts[k]) || opts[k] < 1) throw new Error(`--${k} must be a positive integer`);
  }
  for (const k of ['r', 'duration', 'payload', 'connectTimeout']) {
    if (!(opts[k] > 0)) throw new Error(`--${k} must be > 0`);
  }
  if (!(opts.drain >= 0)) throw new Error('--drain must be >= 0');
  opts.workers = Math.min(opts.workers, opts.n);
  return opts;
}

function head() {
  const src = require('node:fs').readFileSync(__filename, 'utf8').split('\n');
  return src.slice(1, 24).map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n';
}

function clientOptions(deflate, timeoutMs) {
  return {
    transports: ['websocket'],
    forceNew: true, // one engine.io connection per client (io() multiplexes by default)
    reconnection: false, // a dropped subscriber must show up as lost messages
    timeout: timeoutMs,
    // socket.io-client offers permessage-deflate by default (as browsers do). Off by
    // default here so the benchmark measures fan-out, not zlib; --deflate to offer it.
    perMessageDeflate: deflate ? { threshold: 1024 } : false,
  };
}

function cpuSeconds(base) {
  const u = process.cpuUsage(base);
  return (u.user + u.system) / 1e6;
}

// ---------------------------------------------------------------- worker ------
function runWorker() {
  let cfg = null;
  const subs = [];
  let measuring = false;
  let cpuBase = null;
  let tStart = 0;
  let sent = null; // known once publishing is over
  let received = 0; // unique deliveries
  let duplicates = 0;
  let outOfOrder = 0;
  let invalid = 0;
  let early = 0;
  let negative = 0;
  let disconnects = 0;
  const disconnectReasons = {};
  let closing = false;
  let firstRecv = null;
  let lastRecv = null;
  let latSum = 0;
  let latMin = Infinity;
  let latMax = -Infinity;
  const hist = new Float64Array(NBUCKETS);
  let doneSent = false;
  let seqCap = 0;

  const send = (m) => { if (process.connected) process.send(m); };

  function onMessage(sub, msg) {
    const t = nowMs();
    if (!measuring) { early++; return; }
    const seq = msg && msg.seq;
    const ts = msg && msg.ts;
    if (!Number.isInteger(seq) || seq < 0 || seq >= seqCap || typeof ts !== 'number') { invalid++; return; }
    if (sub.seen[seq]) { duplicates++; return; }
    sub.seen[seq] = 1;
    if (seq < sub.lastSeq) outOfOrder++;
    sub.lastSeq = seq;
    sub.received++;
    received++;
    const lat = t - ts;
    if (lat < 0) negative++;
    latSum += lat;
    if (lat < latMin) latMin = lat;
    if (lat > latMax) latMax = lat;
    hist[bucketOf(lat * 1000)]++;
    if (firstRecv === null) firstRecv = t;
    lastRecv = t;
    if (sent !== null && !doneSent && received === sent * subs.length) {
      doneSent = true;
      send({ type: 'done' });
    }
  }

  function openSubscriber(id) {
    return new Promise((resolve, reject) => {
      const s = io(cfg.url, clientOptions(cfg.deflate, cfg.connectTimeout * 1000));
      const sub = { id, s, received: 0, lastSeq: -1, seen: new Uint8Array(seqCap) };
      let settled = false;
      const fail = (msg) => {
        if (settled) return;
        settled = true;
        s.close();
        reject(new Error(`subscriber ${id}: ${msg}`));
      };
      s.on('metrics:update', (msg) => onMessage(sub, msg));
      s.on('disconnect', (reason) => {
        if (closing) return;
        disconnects++;
        disconnectReasons[reason] = (disconnectReasons[reason] || 0) + 1;
        if (!settled) fail(`disconnected during subscribe: ${reason}`);
      });
      s.once('connect_error', (e) => fail(`connect_error: ${e && e.message}`));
      s.once('connect', () => {
        s.timeout(cfg.connectTimeout * 1000).emit('subscribe', ROOM, (err, ok) => {
          if (err) return fail('no subscribe ack (timeout)');
          if (ok !== true) return fail(`subscribe ack was ${JSON.stringify(ok)}`);
          settled = true;
          resolve(sub);
        });
      });
    });
  }

  async function connectAll() {
    const [from, to] = cfg.ids;
    for (let i = from; i < to; i += cfg.batch) {
      const group = [];
      for (let j = i; j < Math.min(i + cfg.batch, to); j++) group.push(openSubscriber(j));
      const res = await Promise.allSettled(group);
      for (const x of res) if (x.status === 'fulfilled') subs.push(x.value);
      const bad = res.find((x) => x.status === 'rejected');
      if (bad) throw bad.reason;
      send({ type: 'progress', connected: subs.length });
    }
  }

  process.on('disconnect', () => process.exit(1)); // parent went away
  process.on('message', async (m) => {
    try {
      if (m.type === 'init') {
        cfg = m;
        seqCap = m.seqCap;
        await connectAll();
        send({ type: 'ready', count: subs.length });
      } else if (m.type === 'start') {
        cpuBase = process.cpuUsage();
        tStart = nowMs();
        measuring = true;
        send({ type: 'started' });
      } else if (m.type === 'sent') {
        sent = m.sent;
        if (!doneSent && received === sent * subs.length) {
          doneSent = true;
          send({ type: 'done' });
        }
      } else if (m.type === 'report') {
        measuring = false;
        const cpu = cpuBase ? cpuSeconds(cpuBase) : 0;
        const wall = (nowMs() - tStart) / 1000;
        let minPerSub = Infinity;
        let silent = 0;
        for (const sb of subs) {
          if (sb.received < minPerSub) minPerSub = sb.received;
          if (sb.received === 0) silent++;
        }
        send({
          type: 'report',
          subscribers: subs.length, received, duplicates, outOfOrder, invalid, early, negative,
          disconnects, disconnectReasons, firstRecv, lastRecv, latSum,
          latMin: Number.isFinite(latMin) ? latMin : null,
          latMax: Number.isFinite(latMax) ? latMax : null,
          minPerSub: Number.isFinite(minPerSub) ? minPerSub : null, silent,
          hist: Array.from(hist), cpu_s: cpu, wall_s: wall,
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
function metricsPayload(seq, targetBytes) {
  // Shaped like a dashboard `metrics:update`; `pad` brings the JSON to ~targetBytes.
  const p = {
    seq,
    ts: 0,
    source: 'essen-bot',
    host: 'bench-publisher',
    window_s: 1,
    cpu: { percent: 12.5 + (seq % 50) / 10, load1: 0.42, threads: 17 },
    mem: { rss_mb: 187.3, heap_mb: 96.1 },
    messages: { in_per_s: 230 + (seq % 7), out_per_s: 228 + (seq % 5), errors: seq % 3 },
    queue: { depth: seq % 11, oldest_ms: 3.25 },
    pad: '',
  };
  p.ts = nowMs();
  const len = Buffer.byteLength(JSON.stringify(p));
  if (len < targetBytes) p.pad = 'x'.repeat(targetBytes - len);
  return p;
}

async function runMain() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`fanout.js: ${e.message}\n`);
    process.exit(2);
  }
  const log = (s) => process.stderr.write(`[loadgen] ${s}\n`);
  const total = Math.max(1, Math.round(opts.r * opts.duration));
  const result = {
    url: opts.url, n: opts.n, r: opts.r, duration_s: opts.duration, drain_s: opts.drain,
    workers: opts.workers, batch: opts.batch, deflate: opts.deflate,
    node: process.version,
    socket_io_client: require('socket.io-client/package.json').version,
  };
  const workers = [];
  const mainCpuBase0 = process.cpuUsage();
  let exitCode = 0;

  const fail = (msg) => {
    const err = new Error(msg);
    err.fanout = true;
    throw err;
  };

  // --- fork workers, hand out subscriber ranges
  const per = Math.ceil(opts.n / opts.workers);
  const batchPerWorker = Math.max(1, Math.ceil(opts.batch / opts.workers));
  const state = [];
  for (let w = 0; w < opts.workers; w++) {
    const from = w * per;
    const to = Math.min(opts.n, from + per);
    const child = fork(__filename, ['--worker'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const st = { child, from, to, connected: 0, ready: false, started: false, done: false, report: null, error: null, exited: false };
    state.push(st);
    workers.push(child);
    child.on('message', (m) => {
      if (m.type === 'progress') st.connected = m.connected;
      else if (m.type === 'ready') st.ready = true;
      else if (m.type === 'started') st.started = true;
      else if (m.type === 'done') st.done = true;
      else if (m.type === 'report') st.report = m;
      else if (m.type === 'error') st.error = m.message;
    });
    child.on('exit', (code) => { st.exited = true; if (!st.report && code) st.error = st.error || `worker exited with ${code}`; });
  }

  const waitFor = async (pred, timeoutMs, what) => {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      const err = state.find((s) => s.error);
      if (err) fail(`worker error: ${err.error}`);
      if (Date.now() > deadline) fail(`timeout waiting for ${what}`);
      await sleep(20);
    }
  };

  const pubOpts = clientOptions(opts.deflate, opts.connectTimeout * 1000);
  let pub = null;
  try {
    // --- connect subscribers
    const tc0 = nowMs();
    const seqCap = total + 1;
    for (const st of state) {
      st.child.send({
        type: 'init', url: opts.url, ids: [st.from, st.to], batch: batchPerWorker,
        deflate: opts.deflate, connectTimeout: opts.connectTimeout, seqCap,
      });
    }
    let lastLogged = -1;
    const progressTimer = setInterval(() => {
      const c = state.reduce((a, s) => a + s.connected, 0);
      if (c !== lastLogged) { log(`subscribed ${c}/${opts.n}`); lastLogged = c; }
    }, 1000);
    try {
      await waitFor(() => state.every((s) => s.ready), opts.connectTimeout * 1000, 'subscribers to connect');
    } finally {
      clearInterval(progressTimer);
    }
    result.connect_s = (nowMs() - tc0) / 1000;
    log(`all ${opts.n} subscribers connected and subscribed in ${result.connect_s.toFixed(2)} s`);

    // --- publisher
    pub = io(opts.url, pubOpts);
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('publisher connect timeout')), opts.connectTimeout * 1000);
      pub.once('connect', () => { clearTimeout(t); resolve(); });
      pub.once('connect_error', (e) => { clearTimeout(t); reject(new Error(`publisher connect_error: ${e.message}`)); });
    });
    let pubDisconnected = null;
    pub.on('disconnect', (reason) => { pubDisconnected = reason; });
    result.payload_bytes = Buffer.byteLength(JSON.stringify(metricsPayload(total, opts.payload)));
    await sleep(200); // let connection set-up work settle before the window opens

    // --- measurement window
    process.stderr.write('PHASE measure_start\n');
    const mainCpuBase = process.cpuUsage();
    for (const st of state) st.child.send({ type: 'start' });
    // workers must be measuring before the first message can arrive
    await waitFor(() => state.every((s) => s.started), 10000, 'workers to start measuring');
    const interval = 1000 / opts.r;
    const t0 = nowMs();
    let seq = 0;
    let lagMax = 0;
    let lastSend = t0;
    await new Promise((resolve) => {
      const tick = () => {
        const now = nowMs();
        while (seq < total && t0 + seq * interval <= now) {
          const lag = now - (t0 + seq * interval);
          if (lag > lagMax) lagMax = lag;
          pub.emit('publish', metricsPayload(seq, opts.payload));
          lastSend = nowMs();
          seq++;
        }
        if (seq >= total) return resolve();
        setTimeout(tick, Math.max(0, t0 + seq * interval - nowMs()));
      };
      tick();
    });
    const tEndPub = nowMs();
    result.sent = seq;
    result.publish_s = (tEndPub - t0) / 1000 + 1 / opts.r; // seq i is due at t0 + i/R
    result.send_lag_max_ms = lagMax;
    for (const st of state) st.child.send({ type: 'sent', sent: seq });
    log(`sent ${seq} messages in ${((lastSend - t0) / 1000).toFixed(2)} s; draining up to ${opts.drain} s`);

    // --- drain
    const drainDeadline = Date.now() + opts.drain * 1000;
    while (!state.every((s) => s.done) && Date.now() < drainDeadline) {
      const err = state.find((s) => s.error);
      if (err) fail(`worker error: ${err.error}`);
      await sleep(10);
    }
    const tDrained = nowMs();
    result.all_delivered = state.every((s) => s.done);
    result.drain_used_s = (tDrained - tEndPub) / 1000;

    // --- collect
    for (const st of state) st.child.send({ type: 'report' });
    await waitFor(() => state.every((s) => s.report), 30000, 'worker reports');
    const tWindowEnd = nowMs();
    process.stderr.write('PHASE measure_end\n');
    const mainCpu = cpuSeconds(mainCpuBase);
    await sleep(250); // let the driver snapshot the server before sockets start closing
    result.publisher_disconnect = pubDisconnected;

    const hist = new Float64Array(NBUCKETS);
    let delivered = 0; let dup = 0; let ooo = 0; let invalid = 0; let early = 0; let neg = 0;
    let disc = 0; let latSum = 0; let latMin = Infinity; let latMax = -Infinity;
    let lastRecv = null; let minPerSub = Infinity; let silent = 0; let subscribers = 0;
    const reasons = {};
    const perProc = [];
    const windowS = (tWindowEnd - t0) / 1000;
    perProc.push({ role: 'main+publisher', cpu_s: mainCpu, util: mainCpu / windowS });
    for (const st of state) {
      const rp = st.report;
      subscribers += rp.subscribers;
      delivered += rp.received; dup += rp.duplicates; ooo += rp.outOfOrder; invalid += rp.invalid;
      early += rp.early; neg += rp.negative; disc += rp.disconnects; latSum += rp.latSum;
      if (rp.latMin !== null && rp.latMin < latMin) latMin = rp.latMin;
      if (rp.latMax !== null && rp.latMax > latMax) latMax = rp.latMax;
      if (rp.lastRecv !== null && (lastRecv === null || rp.lastRecv > lastRecv)) lastRecv = rp.lastRecv;
      if (rp.minPerSub !== null && rp.minPerSub < minPerSub) minPerSub = rp.minPerSub;
      silent += rp.silent;
      for (const [k, v] of Object.entries(rp.disconnectReasons)) reasons[k] = (reasons[k] || 0) + v;
      for (let i = 0; i < NBUCKETS; i++) hist[i] += rp.hist[i];
      perProc.push({ role: `subscribers[${st.from}..${st.to})`, cpu_s: rp.cpu_s, util: rp.cpu_s / windowS });
    }
    const expected = result.sent * subscribers;
    // Throughput over the time deliveries actually took: first send -> last delivery
    // (or end of publishing, if that is later). Equals N*R when the server keeps up.
    const deliveryWindow = Math.max(result.publish_s, lastRecv !== null ? (lastRecv - t0) / 1000 : 0);
    Object.assign(result, {
      subscribers,
      expected,
      delivered,
      lost: expected - delivered,
      duplicates: dup,
      out_of_order: ooo,
      invalid,
      early,
      disconnects: disc,
      disconnect_reasons: reasons,
      silent_subscribers: silent,
      min_delivered_per_subscriber: Number.isFinite(minPerSub) ? minPerSub : null,
      offered_per_s: (result.sent * subscribers) / result.publish_s,
      delivery_window_s: deliveryWindow,
      delivered_per_s: delivered / deliveryWindow,
      latency_ms: {
        p50: percentileMs(hist, delivered, 50),
        p90: percentileMs(hist, delivered, 90),
        p99: percentileMs(hist, delivered, 99),
        max: Number.isFinite(latMax) ? latMax : null,
        min: Number.isFinite(latMin) ? latMin : null,
        mean: delivered ? latSum / delivered : null,
        negative: neg,
      },
      measure_window_s: windowS,
      loadgen_cpu: {
        total_s: perProc.reduce((a, p) => a + p.cpu_s, 0),
        max_util: Math.max(...perProc.map((p) => p.util)),
        per_process: perProc,
        main_total_s: cpuSeconds(mainCpuBase0),
      },
    });
  } catch (e) {
    result.error = String(e && e.message ? e.message : e);
    exitCode = 1;
  } finally {
    for (const st of state) if (!st.exited && st.child.connected) st.child.send({ type: 'close' });
    if (pub) pub.close();
  }
  process.stdout.write(JSON.stringify(result) + '\n');
  // give workers a moment to close their sockets cleanly, then make sure they are gone
  const deadline = Date.now() + 3000;
  while (state.some((s) => !s.exited) && Date.now() < deadline) await sleep(20);
  for (const st of state) if (!st.exited) st.child.kill('SIGKILL');
  process.exit(exitCode);
}

if (process.argv[2] === '--worker') runWorker();
else runMain();

module.exports = { bucketOf, bucketValueUs, percentileMs, NBUCKETS };
