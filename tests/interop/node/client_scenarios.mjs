// Interop scenarios for the official socket.io-client (v4) against an ESSEN server.
//
//   node client_scenarios.mjs BASE_URL PATH MODE SCENARIO [SCENARIO...]
//
// MODE: "upgrade" (polling then websocket; the client must really upgrade),
//       "websocket" (websocket only) or "polling" (polling only).
// The server side is tests/interop/_app.py (auth token in $INTEROP_TOKEN).
//
// Output: one JSON object per line on stdout.  {"scenario", "step", ...} marks
// progress of an interactive scenario (the test answers with a command on
// stdin); {"scenario", "result": "ok"|"fail", ...} ends a scenario.  Buffers
// are printed as {"$bytes": "<hex>"}.  Exit code 0 only if every scenario passed.
// Nothing here sleeps: every wait is for an event, bounded by a timeout.

import { io } from "socket.io-client";
import readline from "node:readline";
import { isDeepStrictEqual } from "node:util";

const [baseUrl, path, mode, ...scenarioNames] = process.argv.slice(2);
const TOKEN = process.env.INTEROP_TOKEN;
const ALLOWED_ORIGIN = "https://dashboard.example";
const TRANSPORTS = {
  upgrade: ["polling", "websocket"],
  websocket: ["websocket"],
  polling: ["polling"],
};
const WAIT_MS = 5000;

if (!baseUrl || !path || !TRANSPORTS[mode] || scenarioNames.length === 0 || !TOKEN) {
  process.stderr.write("usage: INTEROP_TOKEN=... node client_scenarios.mjs URL PATH MODE SCENARIO...\n");
  process.exit(2);
}

// -- output -------------------------------------------------------------------

function isBinary(value) {
  return Buffer.isBuffer(value) || value instanceof ArrayBuffer || ArrayBuffer.isView(value);
}

function toBuffer(value) {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

function jsonable(value) {
  if (isBinary(value)) return { $bytes: toBuffer(value).toString("hex") };
  if (Array.isArray(value)) return value.map(jsonable);
  if (typeof value === "function") return { $function: true };
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, jsonable(v)]));
  }
  return value === undefined ? null : value;
}

function out(obj) {
  process.stdout.write(JSON.stringify(jsonable(obj)) + "\n");
}

class CheckFailed extends Error {}

function check(condition, message, details) {
  if (!condition) {
    const extra = details === undefined ? "" : " " + JSON.stringify(jsonable(details));
    throw new CheckFailed(message + extra);
  }
}

function checkEqual(actual, expected, what) {
  check(isDeepStrictEqual(actual, expected), `${what}: expected ${JSON.stringify(jsonable(expected))}, got`, actual);
}

// With connection state recovery on, socket.io (the official server, and ESSEN's)
// appends the event's offset as a last string argument to every event it emits,
// direct ones included; socket.io-client reads it and passes it on to handlers.
function withoutOffset(args) {
  check(args.length > 0 && typeof args[args.length - 1] === "string", "event without a recovery offset", args);
  return args.slice(0, -1);
}

function checkBytes(actual, expected, what) {
  check(isBinary(actual), `${what}: expected binary data, got ${typeof actual}`, actual);
  check(toBuffer(actual).equals(expected), `${what}: wrong bytes`, { actual, expected });
}

// -- waiting --------------------------------------------------------------------

function withTimeout(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function once(emitter, event, ms = WAIT_MS) {
  return withTimeout(new Promise((resolve) => emitter.once(event, (...args) => resolve(args))), event, ms);
}

// Emit with an acknowledgement and resolve with all of the ack's arguments.
function ackAll(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    socket.timeout(WAIT_MS).emit(event, ...args, (err, ...reply) => (err ? reject(err) : resolve(reply)));
  });
}

function awaitConnect(socket, ms = WAIT_MS) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const ok = () => {
        socket.off("connect_error", bad);
        resolve();
      };
      const bad = (err) => {
        socket.off("connect", ok);
        reject(new Error(`connect_error: ${err.message} ${JSON.stringify(err.data ?? null)}`));
      };
      socket.once("connect", ok);
      socket.once("connect_error", bad);
    }),
    "connect",
    ms,
  );
}

const stdinLines = [];
const stdinWaiters = [];
let stdinReader = null;

function nextCommand(ms = 20000) {
  if (stdinReader === null) {
    stdinReader = readline.createInterface({ input: process.stdin });
    stdinReader.on("line", (line) => {
      const waiter = stdinWaiters.shift();
      if (waiter) waiter(line.trim());
      else stdinLines.push(line.trim());
    });
  }
  if (stdinLines.length) return Promise.resolve(stdinLines.shift());
  return withTimeout(new Promise((resolve) => stdinWaiters.push(resolve)), "a command on stdin", ms);
}

// -- clients --------------------------------------------------------------------

let currentSockets = [];
const lateConnects = [];

// A socket on its own Manager (so its own Engine.IO session), with this run's transports.
function makeSocket(opts = {}, nsp = "/") {
  const socket = io(baseUrl + nsp, {
    path,
    transports: TRANSPORTS[mode],
    forceNew: true,
    reconnection: false,
    timeout: WAIT_MS,
    ...opts,
  });
  const engine = socket.io.engine; // created synchronously by the Manager (autoConnect)
  socket.firstTransport = engine.transport.name;
  socket.upgraded = once(engine, "upgrade", WAIT_MS);
  socket.upgraded.catch(() => {}); // only awaited in upgrade mode
  currentSockets.push(socket);
  return socket;
}

// Connect with a valid token; in upgrade mode also wait until the client runs on websocket.
async function connect(user, opts = {}, { waitUpgrade = true } = {}) {
  const socket = makeSocket({ auth: { token: TOKEN, user }, ...opts });
  await awaitConnect(socket);
  if (mode === "upgrade" && waitUpgrade) await checkUpgraded(socket);
  return socket;
}

async function checkUpgraded(socket) {
  await socket.upgraded;
  check(socket.firstTransport === "polling", "upgrade mode must start on polling", socket.firstTransport);
  check(socket.io.engine.transport.name === "websocket", "not on websocket after the upgrade event", socket.io.engine.transport.name);
}

function handshakeTransport() {
  return mode === "websocket" ? "websocket" : "polling";
}

// -- scenarios ------------------------------------------------------------------

const scenarios = {
  async auth_ok() {
    const s = await connect("auth_ok", { query: { client: "node", mode } });
    const who = await s.timeout(WAIT_MS).emitWithAck("whoami");
    check(typeof s.id === "string" && s.id.length > 0, "no socket id", s.id);
    checkEqual(who.sid, s.id, "server-side sid vs socket.id");
    checkEqual(who.user, "auth_ok", "user set by the auth middleware");
    checkEqual(who.nsp, "/", "namespace");
    checkEqual(who.query.client, "node", "query parameter seen in the handshake");
    checkEqual(who.transport, handshakeTransport(), "handshake transport");
    const transport = s.io.engine.transport.name;
    checkEqual(transport, mode === "polling" ? "polling" : "websocket", "transport in use");
    return { sid: s.id, who, firstTransport: s.firstTransport, transport };
  },

  async auth_refused() {
    const wrong = makeSocket({ auth: { token: "wrong", user: "intruder" } });
    const [err] = await once(wrong, "connect_error");
    checkEqual(err.message, "bad token", "connect_error message");
    checkEqual(err.data, { reason: "invalid token", got: "wrong" }, "connect_error data");
    check(!wrong.connected, "refused socket is connected");
    check(wrong.active === false, "a socket refused by middleware must not retry on its own");

    const anonymous = makeSocket({});
    const [err2] = await once(anonymous, "connect_error");
    checkEqual(err2.message, "bad token", "connect_error message without auth");
    checkEqual(err2.data, { reason: "invalid token", got: null }, "connect_error data without auth");
    return { message: err.message, data: err.data, anonymous: err2.data };
  },

  async namespaces() {
    const main = await connect("ns-main");
    // Multiplexed on the same Manager, so the same Engine.IO session.
    const admin = main.io.socket("/admin", { auth: { token: TOKEN, user: "ns-admin" } });
    currentSockets.push(admin);
    await awaitConnect(admin);
    const [whoMain, whoAdmin] = await Promise.all([
      main.timeout(WAIT_MS).emitWithAck("whoami"),
      admin.timeout(WAIT_MS).emitWithAck("whoami"),
    ]);
    checkEqual(whoMain.nsp, "/", "main namespace");
    checkEqual(whoAdmin.nsp, "/admin", "admin namespace");
    checkEqual(whoAdmin.sid, admin.id, "admin sid");
    checkEqual(whoAdmin.user, "ns-admin", "admin user");
    check(admin.id !== main.id, "two namespaces share a socket id", [admin.id, main.id]);

    const nope = main.io.socket("/nope", { auth: { token: TOKEN, user: "ns-nope" } });
    currentSockets.push(nope);
    const [err] = await once(nope, "connect_error");
    checkEqual(err.message, "Invalid namespace", "unknown namespace error");
    // The refusal of one namespace leaves the others working.
    const again = await main.timeout(WAIT_MS).emitWithAck("whoami");
    checkEqual(again.sid, main.id, "main namespace after a refused one");
    return { main: whoMain, admin: whoAdmin, nope: err.message };
  },

  async events() {
    const s = await connect("events");
    const payloads = [
      [],
      ["text", "héllo ✓ 🚀"],
      [42, 3.5, -1],
      [{ nested: { list: [1, "two", null, true] } }],
      [null],
      [[]],
      [{}],
      [""],
      [false, 0],
      // JavaScript strings may hold lone surrogates; JSON.stringify escapes them.
      ["lone \ud800 surrogate", "\udfff"],
    ];
    for (const args of payloads) {
      const reply = once(s, "pong-event");
      s.emit("ping-event", ...args);
      checkEqual(withoutOffset(await reply), args, "pong-event arguments");
    }
    // An event with no handler is ignored; the connection goes on.
    s.emit("no-such-event", 1, 2);
    const who = await s.timeout(WAIT_MS).emitWithAck("whoami");
    checkEqual(who.sid, s.id, "whoami after an unknown event");
    return { payloads };
  },

  async acks() {
    const s = await connect("acks");
    checkEqual(await s.timeout(WAIT_MS).emitWithAck("sum", 1, 2, 3.5), 6.5, "sum ack");
    checkEqual(await ackAll(s, "multi"), ["a", 1, { b: null }], "ack with several arguments");
    checkEqual(await ackAll(s, "void"), [], "ack with no arguments");

    s.on("ask", (x, y, cb) => cb({ doubled: x * 2, y }));
    s.on("ask-multi", (cb) => cb("one", 2, [3]));
    s.on("ask-none", (cb) => cb());
    checkEqual(await ackAll(s, "call-me", "ask", 21, "why"), [{ doubled: 42, y: "why" }], "server call answered");
    checkEqual(await ackAll(s, "call-me", "ask-multi"), ["one", 2, [3]], "server call, several ack args");
    checkEqual(await ackAll(s, "call-me", "ask-none"), [], "server call, empty ack");
    return {};
  },

  async binary() {
    const s = await connect("binary");
    const small = Buffer.from([0, 1, 2, 253, 254, 255]);
    const big = Buffer.from(Array.from({ length: 200_000 }, (_, i) => i % 251));
    const nested = { nested: Buffer.from("héllo", "utf8"), list: [Buffer.alloc(0), 1, "x"] };
    const echoed = await ackAll(s, "echo", small, nested, big);
    checkEqual(echoed.length, 3, "echo ack arity");
    checkBytes(echoed[0], small, "echoed small buffer");
    checkBytes(echoed[1].nested, nested.nested, "echoed nested buffer");
    checkBytes(echoed[1].list[0], Buffer.alloc(0), "echoed empty buffer");
    checkEqual(echoed[1].list.slice(1), [1, "x"], "echoed plain values next to buffers");
    checkBytes(echoed[2], big, "echoed 200 kB buffer");

    const blob = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), Buffer.from(Array.from({ length: 256 }, (_, i) => i))]);
    const event = once(s, "bytes");
    checkEqual(await s.timeout(WAIT_MS).emitWithAck("make-bytes"), true, "make-bytes ack");
    const [got, obj] = withoutOffset(await event);
    checkBytes(got, blob, "server-sent buffer");
    checkBytes(obj.inner, Buffer.from([0, 255]), "server-sent nested buffer");
    checkBytes(obj.list[0], Buffer.alloc(0), "server-sent empty buffer");
    checkBytes(obj.list[1], Buffer.from("abc"), "server-sent buffer in a list");

    s.on("ask-bin", (buf, cb) => cb(Buffer.from(toBuffer(buf)).reverse(), { len: buf.byteLength }));
    const reply = await ackAll(s, "call-me", "ask-bin", Buffer.from([1, 2, 3, 4]));
    checkBytes(reply[0], Buffer.from([4, 3, 2, 1]), "binary ack of a server call");
    checkEqual(reply[1], { len: 4 }, "plain value next to a binary ack");
    return {};
  },

  async rooms() {
    const [a, b, c] = await Promise.all([connect("rooms-a"), connect("rooms-b"), connect("rooms-c")]);
    const news = new Map([[a, []], [b, []], [c, []]]);
    for (const [client, list] of news) client.on("news", (...args) => list.push(args));
    for (const [client, room] of [[a, "room1"], [a, "room2"], [b, "room1"], [c, "room2"]]) {
      checkEqual(await client.timeout(WAIT_MS).emitWithAck("subscribe", room), true, "subscribe ack");
    }
    const broadcast = (spec) => a.timeout(WAIT_MS).emitWithAck("broadcast", { event: "news", ...spec });
    const counts = [];
    counts.push(await broadcast({ args: ["r1"], to: "room1" }));
    counts.push(await broadcast({ args: ["r1-not-a"], to: "room1", exclude: [a.id] }));
    counts.push(await broadcast({ args: ["r1-or-r2"], to: ["room1", "room2"] }));
    counts.push(await broadcast({ args: ["r1-not-r2"], to: "room1", exclude: ["room2"] }));
    checkEqual(await b.timeout(WAIT_MS).emitWithAck("unsubscribe", "room1"), true, "unsubscribe ack");
    counts.push(await broadcast({ args: ["after-leave"], to: "room1" }));
    checkEqual(counts, [2, 1, 3, 1, 1], "receivers counted by the server");

    // A broadcast to everyone; each connection delivers in order, so when a client
    // has its fence every room broadcast meant for it has arrived before.
    const fences = [a, b, c].map((client) => once(client, "fence"));
    checkEqual(await a.timeout(WAIT_MS).emitWithAck("broadcast", { event: "fence", args: [] }), 3, "fence count");
    await Promise.all(fences);

    const firstArgs = (client) => news.get(client).map((args) => args[0]);
    checkEqual(firstArgs(a), ["r1", "r1-or-r2", "after-leave"], "news seen by a");
    checkEqual(firstArgs(b), ["r1", "r1-not-a", "r1-or-r2", "r1-not-r2"], "news seen by b");
    checkEqual(firstArgs(c), ["r1-or-r2"], "news seen by c");
    for (const [, list] of news) {
      for (const args of list) {
        // Recovery is on: a broadcast carries its offset as an extra last argument.
        check(args.length === 2 && typeof args[1] === "string", "broadcast without an offset", args);
      }
    }
    const rooms = await Promise.all([a, b, c].map((client) => client.timeout(WAIT_MS).emitWithAck("whoami")));
    checkEqual(rooms.map((who) => who.rooms), [["room1", "room2"], [], ["room2"]], "rooms after join/leave");
    return { a: firstArgs(a), b: firstArgs(b), c: firstArgs(c) };
  },

  async ordering() {
    // In upgrade mode this starts right after connecting, so the traffic spans the upgrade.
    const s = await connect("ordering", {}, { waitUpgrade: false });
    const N = 300;
    const seq = [];
    s.on("seq", (i) => seq.push(i));
    for (let i = 0; i < N; i++) s.emit("record", i);
    checkEqual(await s.timeout(WAIT_MS).emitWithAck("burst", N), N, "burst ack");
    const expected = Array.from({ length: N }, (_, i) => i);
    checkEqual(seq, expected, "server-to-client order");
    checkEqual(await s.timeout(WAIT_MS).emitWithAck("recorded"), expected, "client-to-server order");
    if (mode === "upgrade") await checkUpgraded(s);
    return { transport: s.io.engine.transport.name };
  },

  async server_disconnect() {
    // Reconnection on: the point is that the client must not use it after a server kick.
    const s = await connect("kicked", { reconnection: true, reconnectionDelay: 10, reconnectionDelayMax: 10, randomizationFactor: 0 });
    const sid = s.id;
    const disconnected = once(s, "disconnect");
    s.emit("kick-me");
    const [reason] = await disconnected;
    checkEqual(reason, "io server disconnect", "disconnect reason");
    check(s.connected === false, "still connected after the server disconnected it");
    check(s.active === false, "socket still active: it would reconnect");
    return { sid, reason };
  },

  async client_disconnect() {
    const main = await connect("leave-main");
    const mainSid = main.id;
    const admin = main.io.socket("/admin", { auth: { token: TOKEN, user: "leave-admin" } });
    currentSockets.push(admin);
    await awaitConnect(admin);
    const adminSid = admin.id;
    admin.disconnect();
    check(admin.disconnected, "admin still connected after disconnect()");
    // Leaving one namespace leaves the shared connection and the other namespace up.
    checkEqual((await main.timeout(WAIT_MS).emitWithAck("whoami")).sid, mainSid, "main after admin left");
    main.disconnect();
    return { mainSid, adminSid };
  },

  // The client leaves while a server handler is awaiting socket.call() on it.
  async leave_during_call({ step }) {
    // (a) Its only namespace: socket.io-client sends DISCONNECT, then closes the connection.
    const alone = await connect("leave-alone");
    const aloneSid = alone.id;
    alone.on("ask-never", () => alone.disconnect());
    const gone = once(alone, "disconnect");
    alone.emit("call-me", "ask-never", 1);
    checkEqual((await gone)[0], "io client disconnect", "disconnect reason");
    step("left-alone", { sid: aloneSid });

    // (b) One of two namespaces on a connection: the connection stays up.
    await nextCommand();
    const main = await connect("leave-shared");
    const mainSid = main.id;
    const admin = main.io.socket("/admin", { auth: { token: TOKEN, user: "leave-shared-admin" } });
    currentSockets.push(admin);
    await awaitConnect(admin);
    main.on("ask-never", () => main.disconnect());
    const left = once(main, "disconnect");
    main.emit("call-me", "ask-never", 2);
    checkEqual((await left)[0], "io client disconnect", "disconnect reason");
    step("left-shared", { sid: mainSid });
    await nextCommand();
    return { aloneSid, mainSid };
  },

  async cors() {
    // Node's XHR polyfill refuses to set Origin, so the browser-like checks go over WebSocket.
    const evil = makeSocket({
      transports: ["websocket"],
      extraHeaders: { origin: "https://evil.example" },
      auth: { token: TOKEN, user: "cors-evil" },
    });
    const [err] = await once(evil, "connect_error");
    check(!evil.connected, "foreign origin connected");
    const description = String(err.description?.message ?? err.description ?? "");
    check(description.includes("403"), "foreign origin not refused with 403", { message: err.message, description });
    const good = await connect("cors-good", { transports: ["websocket"], extraHeaders: { origin: ALLOWED_ORIGIN } }, { waitUpgrade: false });
    const who = await good.timeout(WAIT_MS).emitWithAck("whoami");
    checkEqual(who.user, "cors-good", "allowed origin");
    return { refused: err.message, description };
  },

  // Needs a server with a short ping interval.  Engine.IO v4: the server pings, the client pongs.
  async heartbeat() {
    const s = await connect("heartbeat", { reconnection: true, reconnectionDelay: 20, reconnectionDelayMax: 20, randomizationFactor: 0 });
    const sid = s.id;
    let engine = s.io.engine;
    for (let i = 0; i < 3; i++) await once(engine, "ping");
    check(s.connected && s.id === sid, "dropped while answering pings", { connected: s.connected, id: s.id });
    checkEqual((await s.timeout(WAIT_MS).emitWithAck("whoami")).sid, sid, "sid after three heartbeats");

    // Get an offset, then freeze: stop answering pings, as a hung client would.
    checkEqual(await s.timeout(WAIT_MS).emitWithAck("subscribe", "beat"), true, "subscribe ack");
    const before = once(s, "beat");
    await s.timeout(WAIT_MS).emitWithAck("broadcast", { event: "beat", args: ["before"], to: "beat" });
    await before;
    const sendPacket = engine._sendPacket.bind(engine);
    engine._sendPacket = (type, ...rest) => (type === "pong" ? undefined : sendPacket(type, ...rest));
    const [reason] = await once(s, "disconnect");
    // The server closed the transport ("transport close"), or the client's own
    // heartbeat timer fired first ("ping timeout"): both are transport losses.
    check(["transport close", "ping timeout"].includes(reason), "unexpected disconnect reason", reason);
    await once(s, "connect");
    check(s.io.engine !== engine, "reconnected on the frozen engine");
    const who = await s.timeout(WAIT_MS).emitWithAck("whoami");
    check(s.recovered === true, "not recovered after a ping timeout", { recovered: s.recovered, sid: s.id });
    checkEqual(s.id, sid, "sid after recovery");
    checkEqual(who.rooms, ["beat"], "rooms after recovery");
    return { sid, reason };
  },

  // -- interactive (the test drives the server in between) --------------------

  async restart({ step }) {
    const s = await connect("restart", { reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 200, randomizationFactor: 0 });
    const firstSid = s.id;
    const disconnected = once(s, "disconnect", 20000);
    step("connected", { sid: firstSid });
    const [reason] = await disconnected;
    check(s.active, "socket gave up after the server went away");
    const reconnected = once(s, "connect", 20000);
    step("disconnected", { reason });
    await reconnected;
    const who = await s.timeout(WAIT_MS).emitWithAck("whoami");
    checkEqual(who.sid, s.id, "sid after reconnect");
    checkEqual(who.user, "restart", "re-authenticated user");
    check(s.recovered === false, "a fresh server cannot have recovered the session", s.recovered);
    step("reconnected", { sid: s.id, recovered: s.recovered, who });
    return { firstSid, reason, sid: s.id };
  },

  async recovery({ step }) {
    const s = await connect("recovery");
    const seen = [];
    s.onAny((...args) => seen.push(args));
    checkEqual(await s.timeout(WAIT_MS).emitWithAck("subscribe", "news"), true, "subscribe ack");
    // Receive one broadcast so the client has an offset to recover from.
    const before = once(s, "news");
    await s.timeout(WAIT_MS).emitWithAck("broadcast", { event: "news", args: ["before"], to: "news" });
    await before;
    step("ready", { sid: s.id, offset: s._lastOffset ?? null });
    for (;;) {
      const [command, arg] = (await nextCommand()).split(" ");
      if (command === "expect") {
        if (!seen.some((args) => args[0] === arg)) await once(s, arg);
        step("got", { event: arg, offset: s._lastOffset ?? null });
      } else if (command === "drop") {
        // Lose the transport as a network failure would; reconnection is held
        // back until the test has broadcast what the client will miss.
        s.io.reconnection(false);
        const disconnected = once(s, "disconnect");
        s.io.engine.transport.close();
        const [reason] = await disconnected;
        seen.length = 0;
        step("dropped", { reason, transport: s.io.engine?.transport?.name ?? null });
      } else if (command === "reconnect") {
        s.io.reconnection(true);
        const connected = awaitConnect(s);
        s.connect();
        await connected;
        // The server sends missed packets right after CONNECT, so they are all
        // here once a later ack has arrived.
        const who = await s.timeout(WAIT_MS).emitWithAck("whoami");
        step("reconnected", { sid: s.id, recovered: s.recovered, who, events: seen });
      } else if (command === "done") {
        return {};
      } else {
        throw new Error(`unknown command ${command}`);
      }
    }
  },
};

// -- runner -----------------------------------------------------------------------

let failed = false;
for (const name of scenarioNames) {
  const scenario = scenarios[name];
  currentSockets = [];
  const step = (label, data = {}) => out({ scenario: name, step: label, ...data });
  try {
    if (!scenario) throw new Error(`unknown scenario ${name}`);
    const data = await scenario({ step });
    out({ scenario: name, result: "ok", ...data });
  } catch (err) {
    failed = true;
    out({ scenario: name, result: "fail", error: String(err?.stack ?? err) });
  } finally {
    for (const socket of currentSockets) {
      // Anything connecting after its scenario ended is a client reconnecting on its own.
      socket.on("connect", () => lateConnects.push({ scenario: name, id: socket.id }));
      socket.disconnect();
    }
  }
}
// Round-trip once more so a late reconnection of a finished scenario's client can show up.
if (!failed) {
  try {
    const probe = await connect("final-probe", {}, { waitUpgrade: false });
    await probe.timeout(WAIT_MS).emitWithAck("whoami");
    probe.disconnect();
  } catch (err) {
    failed = true;
    out({ scenario: "final-probe", result: "fail", error: String(err?.stack ?? err) });
  }
}
if (lateConnects.length) {
  failed = true;
  out({ scenario: "late-connects", result: "fail", error: "clients reconnected after their scenario", lateConnects });
}
out({ done: true, failed });
process.exit(failed ? 1 : 0);
