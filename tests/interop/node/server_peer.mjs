// A Node socket.io v4 server: the reference server ESSEN's client is tested
// against (tests/interop/test_essen_client_vs_peers.py).
//
//   node server_peer.mjs --port 0 [--path /api/socket.io/] [--recovery]
//
// Listens on 127.0.0.1 and prints "READY <port>" once listening (port 0 picks a
// free one; the test restarts a server on the port it printed).
//
// The contract (the same as tests/interop/peers/psio_uvicorn_server.py):
// * auth: {token: "good"} is accepted; anything else is refused by the
//   middleware with next(err) where err.message is "bad token" and err.data
//   is {reason: "token must be good"}.
// * on connection the server calls the client's hello({greeting: "hi", n: 41})
//   with an ack; last_hello() acks the client's answer.
// * echo(...args) acks ...args.
// * bin_roundtrip(data) calls the client's bin(data) with an ack and acks the
//   client's answer back.
// * subscribe(room) joins room and acks true; publish(room, payload) emits
//   metrics:update(payload) to room and acks true.
// * kick(close) disconnects the client from the server side: a namespace
//   DISCONNECT, or with close=true socket.disconnect(true) (DISCONNECT, then
//   the underlying Engine.IO connection is closed).
// * drop_me(room, n) closes the Engine.IO connection abruptly
//   (socket.conn.close(): a recoverable "forced close"); once the socket is
//   gone, it publishes metrics:update({seq: 0..n-1, missed: true}) to room.
// * record(...args) remembers args (process-wide, in order); records() acks them.
// * stats() acks {connects, refused, recovered} for this process.
// * whoami() acks {sid, recovered, rooms}.
// * disconnects(n) acks the disconnect reasons seen so far (in order), once
//   there are at least n of them (or after 5 s).
import { createServer } from "node:http";
import { Server } from "socket.io";

const argv = process.argv.slice(2);
function option(name, fallback) {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : fallback;
}
const port = Number(option("--port", "0"));
const path = option("--path", "/socket.io/");
const recovery = argv.includes("--recovery");

// Requests outside the Socket.IO path get a 404 (socket.io passes them on here).
const httpServer = createServer((req, res) => {
  res.writeHead(404, { "content-type": "text/plain" });
  res.end("not found");
});
const io = new Server(httpServer, {
  path,
  connectionStateRecovery: recovery
    ? { maxDisconnectionDuration: 60_000, skipMiddlewares: true }
    : undefined,
});

const records = [];
const disconnects = [];
let disconnectWaiters = [];
function noteDisconnect(reason) {
  disconnects.push(reason);
  const waiters = disconnectWaiters;
  disconnectWaiters = [];
  for (const wake of waiters) wake();
}
async function disconnectsAtLeast(n) {
  const deadline = Date.now() + 5_000;
  while (disconnects.length < n && Date.now() < deadline) {
    await new Promise((resolve) => {
      disconnectWaiters.push(resolve);
      setTimeout(resolve, deadline - Date.now());
    });
  }
  return [...disconnects];
}
const stats = { connects: 0, refused: 0, recovered: 0 };

io.use((socket, next) => {
  const auth = socket.handshake.auth;
  if (auth && auth.token === "good") {
    next();
    return;
  }
  stats.refused += 1;
  const err = new Error("bad token");
  err.data = { reason: "token must be good" };
  next(err);
});

function ackOf(args) {
  return typeof args[args.length - 1] === "function" ? args.pop() : () => {};
}

io.on("connection", (socket) => {
  stats.connects += 1;
  if (socket.recovered) stats.recovered += 1;
  // A promise, so last_hello waits for the answer instead of racing it.
  const hello = socket
    .timeout(3_000)
    .emitWithAck("hello", { greeting: "hi", n: 41 })
    .catch((err) => ({ error: String(err) }));

  socket.on("disconnect", (reason) => noteDisconnect(reason));
  socket.on("disconnects", async (n, ...rest) => ackOf(rest)(await disconnectsAtLeast(n)));
  socket.on("echo", (...args) => {
    const ack = ackOf(args);
    ack(...args);
  });
  socket.on("last_hello", async (...args) => {
    const ack = ackOf(args);
    ack(await hello);
  });
  socket.on("bin_roundtrip", async (data, ...rest) => {
    const ack = ackOf(rest);
    try {
      ack(await socket.timeout(5_000).emitWithAck("bin", data));
    } catch (err) {
      ack({ error: String(err) });
    }
  });
  socket.on("subscribe", (room, ...rest) => {
    socket.join(room);
    ackOf(rest)(true);
  });
  socket.on("publish", (room, payload, ...rest) => {
    io.to(room).emit("metrics:update", payload);
    ackOf(rest)(true);
  });
  socket.on("kick", (close) => {
    socket.disconnect(close === true);
  });
  socket.on("drop_me", (room, n) => {
    socket.once("disconnect", () => {
      for (let i = 0; i < n; i++) io.to(room).emit("metrics:update", { seq: i, missed: true });
    });
    socket.conn.close();
  });
  socket.on("record", (...args) => {
    if (typeof args[args.length - 1] === "function") args.pop()();
    records.push(args);
  });
  socket.on("records", (...args) => ackOf(args)(records));
  socket.on("stats", (...args) => ackOf(args)({ ...stats }));
  socket.on("whoami", (...args) =>
    ackOf(args)({ sid: socket.id, recovered: socket.recovered, rooms: [...socket.rooms] }),
  );
});

httpServer.listen(port, "127.0.0.1", () => {
  process.stdout.write(`READY ${httpServer.address().port}\n`);
});
process.on("SIGTERM", () => process.exit(0));
