// A dashboard as a browser runs it, with the official socket.io-client (v4), against
// the ESSEN admin API.  Used by tests/integration/test_admin_loopback.py.
//
//   ESSEN_PASSWORD=... node node_dashboard.mjs ADMIN_URL USERNAME ORIGIN
//
// It logs in with fetch (POST /api/auth/login, sending ORIGIN as a browser on the
// dashboard's site would), connects to /api/socket.io/ with the token (polling,
// then the upgrade to WebSocket), subscribes to "monitoring" and prints one JSON
// object per line on stdout:
//
//   {"step": "logged_in", "status", "cors"}    the login answer and its CORS header
//   {"step": "connected", "transport"}
//   {"step": "upgraded", "transport"}
//   {"step": "subscribed", "ack"}             the subscribe ack ({ok, snapshot})
//   {"event": NAME, "payload"}                 every monitoring event received
//   {"step": "disconnected", "reason"}
//   {"scenario": "dashboard", "result": "ok"|"fail", "error"?}   the end
//
// Commands on stdin, one per line: "join USER" (conversation:join, answered with
// {"step": "joined", "ack"}) and "disconnect" (socket.disconnect(), then exit).
// Nothing here sleeps: every wait is for an event, bounded by a timeout.

import { createRequire } from "node:module";
import readline from "node:readline";

// socket.io-client is installed for the interop peers; use that copy.
const require = createRequire(new URL("../interop/node/package.json", import.meta.url));
const { io } = require("socket.io-client");

const [baseUrl, username, origin] = process.argv.slice(2);
const password = process.env.ESSEN_PASSWORD;
const WAIT_MS = 10000;
const EVENTS = ["metrics:update", "message:processed", "health:changed", "auth:expired"];

if (!baseUrl || !username || !origin || !password) {
  process.stderr.write("usage: ESSEN_PASSWORD=... node node_dashboard.mjs URL USERNAME ORIGIN\n");
  process.exit(2);
}

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function fail(error) {
  out({ scenario: "dashboard", result: "fail", error: String(error && error.stack || error) });
  process.exit(1);
}

function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function main() {
  const response = await within(
    fetch(`${baseUrl}/api/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json", origin },
      body: JSON.stringify({ username, password }),
    }),
    "the login",
  );
  const body = await response.json();
  out({
    step: "logged_in",
    status: response.status,
    cors: response.headers.get("access-control-allow-origin"),
  });
  if (response.status !== 200) throw new Error(`login failed: ${JSON.stringify(body)}`);

  const socket = io(baseUrl, {
    path: "/api/socket.io/",
    auth: { token: body.token },
    transports: ["polling", "websocket"],
    extraHeaders: { origin },
    reconnection: false,
  });
  for (const name of EVENTS) {
    socket.on(name, (payload) => out({ event: name, payload }));
  }
  await within(
    new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", reject);
    }),
    "connect",
  );
  out({ step: "connected", transport: socket.io.engine.transport.name });
  if (socket.io.engine.transport.name !== "websocket") {
    await within(new Promise((resolve) => socket.io.engine.once("upgrade", resolve)), "upgrade");
  }
  out({ step: "upgraded", transport: socket.io.engine.transport.name });
  const ack = await within(socket.timeout(WAIT_MS).emitWithAck("subscribe", "monitoring"), "subscribe");
  out({ step: "subscribed", ack });

  const done = new Promise((resolve) => {
    socket.on("disconnect", (reason) => {
      out({ step: "disconnected", reason });
      resolve();
    });
  });
  const lines = readline.createInterface({ input: process.stdin });
  lines.on("line", async (line) => {
    const [command, arg] = line.trim().split(/\s+/);
    try {
      if (command === "join") {
        const joined = await socket.timeout(WAIT_MS).emitWithAck("conversation:join", arg);
        out({ step: "joined", ack: joined });
      } else if (command === "disconnect") {
        socket.disconnect();
      }
    } catch (error) {
      fail(error);
    }
  });
  await done;
  lines.close();
  out({ scenario: "dashboard", result: "ok" });
  process.exit(0);
}

main().catch(fail);
