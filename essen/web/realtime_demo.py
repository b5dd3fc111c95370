"""The realtime demo: a Quart-Trio app with the Socket.IO server mounted on it.

Until the bot and admin services exist, ``essen dev`` runs this: a Socket.IO
hub at ``/socket.io/`` and ``/api/socket.io/`` that accepts any client, lets
it join rooms, echoes, relays ``publish`` to ``monitoring`` as
``metrics:update``, and broadcasts a heartbeat snapshot every second.
"""

from __future__ import annotations

from typing import Any

import trio
from quart import jsonify
from quart_trio import QuartTrio

from essen.realtime import ServerOptions, Socket, SocketIOMount, SocketIOServer
from essen.web.mount import mount_socketio

__all__ = ("create_demo", "run_ticker")


def create_demo(
    options: ServerOptions | None = None,
) -> tuple[QuartTrio, SocketIOServer, SocketIOMount]:
    server = SocketIOServer(options or ServerOptions(cors_origins=("*",)))
    app = QuartTrio("essen-demo")

    @server.on("subscribe")
    async def subscribe(socket: Socket, room: str) -> bool:
        socket.join(str(room))
        return True

    @server.on("echo")
    async def echo(socket: Socket, *args: Any) -> tuple[Any, ...]:
        return args

    @server.on("publish")
    async def publish(socket: Socket, data: Any) -> int:
        return server.emit("metrics:update", data, to="monitoring")

    @app.get("/health")
    async def health() -> Any:
        return jsonify({"status": "ok", "realtime": server.statistics()})

    mount = mount_socketio(app, server, ("/socket.io/", "/api/socket.io/"))
    return app, server, mount


async def run_ticker(server: SocketIOServer, interval: float = 1.0) -> None:
    """Broadcast a small snapshot to ``monitoring`` every ``interval`` seconds."""
    tick = 0
    while True:
        await trio.sleep(interval)
        tick += 1
        stats = server.statistics()
        server.emit(
            "metrics:update",
            {"tick": tick, "sockets": stats["sockets"], "sessions": stats["engine_sessions"]},
            to="monitoring",
            volatile=True,
        )
