#!/usr/bin/env node
// Reference server for the fan-out benchmark: Node socket.io v4 (defaults:
// pingInterval 25 s, pingTimeout 20 s, no per-message deflate, in-memory adapter).
//
// Contract (see bench/README.md):
//   node bench/servers/node_socketio.js --port PORT
//   - serves Socket.IO at /socket.io/ on 127.0.0.1:PORT, prints READY once listening
//   - 'subscribe' with "monitoring" -> join room 'monitoring', ack true
//   - 'publish' with one object -> broadcast 'metrics:update' with it to room 'monitoring'
//   - no per-message logging
//
// socket.io is installed in bench/loadgen/node_modules (one package-lock for the
// whole Node side of the bench), so resolve it from there.
'use strict';

const http = require('node:http');
const path = require('node:path');
const { createRequire } = require('node:module');

const requireFromLoadgen = createRequire(path.join(__dirname, '..', 'loadgen', 'package.json'));
const { Server } = requireFromLoadgen('socket.io');

function parsePort(argv) {
  const i = argv.indexOf('--port');
  const port = i >= 0 ? Number(argv[i + 1]) : NaN;
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    process.stderr.write('usage: node node_socketio.js --port PORT\n');
    process.exit(2);
  }
  return port;
}

const port = parsePort(process.argv.slice(2));
const ROOM = 'monitoring';

const httpServer = http.createServer();
const io = new Server(httpServer, { path: '/socket.io/', serveClient: false });

io.on('connection', (socket) => {
  socket.on('subscribe', (room, ack) => {
    const ok = room === ROOM;
    if (ok) socket.join(ROOM);
    if (typeof ack === 'function') ack(ok);
  });
  socket.on('publish', (data) => {
    io.to(ROOM).emit('metrics:update', data);
  });
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    io.close();
    httpServer.close();
    process.exit(0);
  });
}

httpServer.listen(port, '127.0.0.1', () => {
  process.stdout.write('READY\n');
});
