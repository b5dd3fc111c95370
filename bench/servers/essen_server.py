"""Server under test for the fan-out benchmark: ESSEN's Socket.IO server on Quart-Trio.

Contract (see bench/README.md):
    python bench/servers/essen_server.py --port PORT
    - serves Socket.IO at /socket.io/ on 127.0.0.1:PORT, prints READY once listening
    - 'subscribe' with "monitoring" -> join room 'monitoring', ack True
    - 'publish' with one object -> broadcast 'metrics:update' with it to room 'monitoring'
    - no per-message logging

It runs the production path: a QuartTrio app with the Socket.IO middleware
mounted, served by Hypercorn's Trio worker, connection state recovery on (the
default), so each broadcast is also logged for recovery.
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial

import trio
from quart_trio import QuartTrio

from essen.realtime import RecoveryConfig, ServerOptions, Socket, SocketIOServer
from essen.web.mount import mount_socketio
from essen.web.serving import serve_app

ROOM = "monitoring"


async def main(port: int, recovery: bool, asgi_only: bool) -> None:
    options = ServerOptions(
        cors_origins=("*",),
        recovery=RecoveryConfig() if recovery else None,
        max_sessions=20_000,
    )
    server = SocketIOServer(options)
    app = QuartTrio("essen-bench")

    @server.on("subscribe")
    async def subscribe(socket: Socket, room: object = None) -> bool:
        if room != ROOM:
            return False
        socket.join(ROOM)
        return True

    @server.on("publish")
    async def publish(socket: Socket, data: object = None) -> None:
        server.emit("metrics:update", data, to=ROOM)

    mount = mount_socketio(app, server, ("/socket.io/",))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        await nursery.start(
            partial(serve_app, app, "127.0.0.1", port, socketio=None if asgi_only else mount)
        )
        path = "asgi" if asgi_only else "raw-websocket"
        print(f"essen_server: recovery={recovery} websocket={path}", file=sys.stderr, flush=True)
        print("READY", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-recovery", action="store_true")
    parser.add_argument("--asgi-only", action="store_true", help="no raw WebSocket fast path")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    trio.run(main, args.port, not args.no_recovery, args.asgi_only)
