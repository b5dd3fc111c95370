// The Socket.IO session against a real socket.io server (the official npm
// package) that plays the admin API's contract on loopback: auth middleware
// with the admin's refusal reasons, subscribe with a snapshot ack, live
// events, conversation rooms, auth:expired, connection-state recovery.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, test } from "node:test";

import { Server } from "socket.io";
import { io } from "socket.io-client";

import { ConnectionMachine } from "../src/lib/connection.js";
import { createRealtime, isSessionRefusal, observeBackoff } from "../src/lib/realtime.js";

const PATH = "/api/socket.io/";
let http;
let server;
let url;
let snapshots = 0;
/** Per test: what the subscribe handler does before it answers. */
let beforeAck = null;

before(async () => {
  http = createServer();
  server = new Server(http, { path: PATH, connectionStateRecovery: { maxDisconnectionDuration: 60_000 } });
  server.use((socket, next) => {
    const token = socket.handshake.auth?.token;
    if (!token) {
      const err = new Error("no credentials");
      err.data = { reason: "no_token" };
      return next(err);
    }
    if (token === "expired") {
      const err = new Error("expired");
      err.data = { reason: "expired" };
      return next(err);
    }
    return next();
  });
  server.on("connection", (socket) => {
    socket.on("subscribe", (topic, ack) => {
      if (topic !== "monitoring") return ack({ ok: false, error: "unknown topic" });
      socket.join("monitoring");
      snapshots += 1;
      beforeAck?.(socket);
      return ack({ ok: true, snapshot: { metrics: { messages_per_minute: snapshots }, health: [], feed: [] } });
    });
    socket.on("conversation:join", (user, ack) => {
      socket.join(`user-${user}`);
      ack({ ok: true, user, history: [{ id: "h1", user }] });
    });
    socket.on("conversation:leave", (user) => socket.leave(`user-${user}`));
  });
  await new Promise((resolve) => http.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${http.address().port}`;
});

after(async () => {
  server.disconnectSockets(true);
  await new Promise((resolve) => server.close(resolve));
});

function waitFor(predicate, what, timeoutMs = 5000) {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const check = () => {
      const value = predicate();
      if (value) return resolve(value);
      if (Date.now() - started > timeoutMs) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(check, 5);
    };
    check();
  });
}

function session(t, { token = "good", reconnectionDelay = 50 } = {}) {
  const machine = new ConnectionMachine(Date.now());
  const log = [];
  const kinds = [];
  machine.subscribe((s) => kinds.push(s.kind));
  const scheduled = [];
  machine.subscribe((s, prev) => {
    if (s.kind === "reconnecting" && s.retryAt !== null && s.retryAt !== prev.retryAt) scheduled.push({ attempt: s.attempt, inMs: s.retryAt - Date.now() });
  });
  let currentToken = token;
  const realtime = createRealtime({
    io,
    config: { socketUrl: url, socketPath: PATH, transports: ["websocket"], reconnectionDelay, reconnectionDelayMax: 200, reconnectionAttempts: Infinity },
    getToken: () => currentToken,
    machine,
    handlers: {
      snapshot: (s, info) => log.push(["snapshot", s.metrics.messages_per_minute, info.recovered]),
      metrics: (m) => log.push(["metrics", m.messages_per_minute]),
      message: (...args) => log.push(["message", args.length, args[0].id]),
      health: (...args) => log.push(["health", args.length, args[0].component]),
      conversation: (user, history) => log.push(["conversation", user, history.length]),
      sessionEnded: (reason) => log.push(["ended", reason]),
    },
  });
  t.after(() => realtime.close());
  return { machine, realtime, log, kinds, scheduled, setToken: (value) => (currentToken = value) };
}

/** The server's side of a session's socket. */
const serverSocket = (s) => server.sockets.sockets.get(s.realtime.socket.id);

test("connect, subscribe, snapshot, then live events (extra recovery args ignored)", async (t) => {
  const s = session(t);
  s.realtime.start();
  await waitFor(() => s.machine.isLive, "live");
  assert.deepEqual(s.kinds, ["connecting", "syncing", "live"]);
  assert.equal(s.log[0][0], "snapshot");
  // Broadcasts to a room carry the recovery offset as an extra argument.
  server.to("monitoring").emit("message:processed", { id: "m1", user: "u_x" });
  server.to("monitoring").emit("metrics:update", { messages_per_minute: 42 });
  server.to("monitoring").emit("health:changed", { component: "bot:bot-1", status: "down" });
  await waitFor(() => s.log.length >= 4, "events");
  assert.deepEqual(s.log.slice(1), [
    ["message", 1, "m1"],
    ["metrics", 42],
    ["health", 1, "bot:bot-1"],
  ]);
  s.realtime.close();
  assert.equal(s.machine.state.kind, "idle");
});

test("events that arrive before the snapshot are replayed after it; metrics from before are dropped", async (t) => {
  beforeAck = (socket) => {
    socket.emit("message:processed", { id: "early", user: "u_x" });
    socket.emit("health:changed", { component: "store", status: "degraded" });
    socket.emit("metrics:update", { messages_per_minute: -1 });
  };
  const s = session(t);
  try {
    s.realtime.start();
    await waitFor(() => s.machine.isLive, "live");
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(
      s.log.map((e) => e[0]),
      ["snapshot", "message", "health"],
    );
  } finally {
    beforeAck = null;
    s.realtime.close();
  }
});

test("a lost connection: reconnecting with socket.io's attempt and delay, then resync from a new snapshot", async (t) => {
  const s = session(t, { reconnectionDelay: 100 });
  s.realtime.start();
  await waitFor(() => s.machine.isLive, "live");
  const first = s.log.filter((e) => e[0] === "snapshot").length;
  server.to("monitoring").emit("message:processed", { id: "before-drop", user: "u_x" });
  await waitFor(() => s.log.some((e) => e[2] === "before-drop"), "an event with an offset");
  serverSocket(s).conn.close(); // transport dropped, as when the admin restarts
  await waitFor(() => s.machine.state.kind === "reconnecting", "reconnecting");
  await waitFor(() => s.scheduled.length > 0, "a scheduled attempt");
  assert.equal(s.scheduled[0].attempt, 1);
  assert.ok(s.scheduled[0].inMs > 0 && s.scheduled[0].inMs <= 150, `delay ${s.scheduled[0].inMs}`);
  await waitFor(() => s.machine.isLive, "live again");
  const snaps = s.log.filter((e) => e[0] === "snapshot");
  assert.equal(snaps.length, first + 1, "resubscribed and took a fresh snapshot");
  assert.equal(snaps.at(-1)[2], true, "socket.io recovered the session (reported, snapshot taken anyway)");
  assert.deepEqual(s.kinds.slice(-3), ["reconnecting", "syncing", "live"]);
  s.realtime.close();
});

test("a rejoined conversation after a reconnect", async (t) => {
  const s = session(t);
  s.realtime.start();
  await waitFor(() => s.machine.isLive, "live");
  const history = await s.realtime.joinConversation("u_abcdefghij");
  assert.deepEqual(history, [{ id: "h1", user: "u_abcdefghij" }]);
  server.to("user-u_abcdefghij").emit("message:processed", { id: "c1", user: "u_abcdefghij" });
  await waitFor(() => s.log.some((e) => e[2] === "c1"), "conversation event");
  serverSocket(s).conn.close();
  await waitFor(() => s.log.some((e) => e[0] === "conversation"), "rejoined");
  s.realtime.leaveConversation("u_abcdefghij");
  s.realtime.close();
});

test("a refused token ends the session (no retries)", async (t) => {
  const s = session(t, { token: "expired" });
  s.realtime.start();
  await waitFor(() => s.log.length > 0, "refusal");
  assert.deepEqual(s.log, [["ended", "expired"]]);
  assert.equal(s.machine.state.kind, "offline");
  assert.equal(s.machine.state.reason, "auth");
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(s.log.length, 1, "no reconnect loop with a rejected token");
  s.realtime.close();
});

test("auth:expired from the server ends the session", async (t) => {
  const s = session(t);
  s.realtime.start();
  await waitFor(() => s.machine.isLive, "live");
  const socket = serverSocket(s);
  socket.emit("auth:expired", { reason: "token expired" });
  socket.disconnect(true);
  await waitFor(() => s.log.some((e) => e[0] === "ended"), "ended");
  assert.deepEqual(s.log.at(-1), ["ended", "expired"]);
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(s.machine.state.reason, "auth");
  s.realtime.close();
});

test("a server-side disconnect (not the token) is retried by the page", async (t) => {
  const s = session(t, { reconnectionDelay: 50 });
  s.realtime.start();
  await waitFor(() => s.machine.isLive, "live");
  const before = s.log.filter((e) => e[0] === "snapshot").length;
  serverSocket(s).disconnect(true);
  await waitFor(() => s.machine.state.kind === "reconnecting", "reconnecting");
  await waitFor(() => s.log.filter((e) => e[0] === "snapshot").length > before && s.machine.isLive, "live again");
  s.realtime.close();
});

test("the backoff hook reports socket.io's real delays; the manager's events drive the countdown", async (t) => {
  const seen = [];
  const attempts = [];
  const socket = io("http://127.0.0.1:1", { path: PATH, transports: ["websocket"], reconnectionDelay: 20, reconnectionDelayMax: 80, randomizationFactor: 0, autoConnect: false });
  const unhook = observeBackoff(socket.io, (x) => seen.push(x));
  socket.io.on("reconnect_attempt", (n) => attempts.push(n));
  socket.connect();
  await waitFor(() => attempts.length >= 3, "three attempts");
  socket.disconnect();
  unhook();
  // min 20 ms, doubled each attempt, capped at 80 ms (no jitter here).
  assert.deepEqual(seen.slice(0, 3), [
    { attempt: 1, delayMs: 20 },
    { attempt: 2, delayMs: 40 },
    { attempt: 3, delayMs: 80 },
  ]);
  assert.deepEqual(attempts.slice(0, 3), [1, 2, 3]);
});

test("a manager without a backoff is left alone", () => {
  const off = observeBackoff({}, () => {});
  assert.equal(typeof off, "function");
  off();
});

test("what counts as a refused session", () => {
  assert.equal(isSessionRefusal({ message: "no credentials", data: { reason: "no_token" } }), true);
  assert.equal(isSessionRefusal({ message: "bad_signature" }), true);
  assert.equal(isSessionRefusal({ message: "websocket error" }, { active: true }), false);
  assert.equal(isSessionRefusal({ message: "something" }, { active: false }), true);
});
