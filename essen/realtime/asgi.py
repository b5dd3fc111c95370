"""Mount a Socket.IO server in front of any ASGI app (Quart-Trio's included).

    app.asgi_app = SocketIOMount(app.asgi_app, server, paths=("/socket.io/", "/api/socket.io/"))

Requests whose path is one of ``paths`` (with or without the trailing slash)
go to the Socket.IO server; everything else, lifespan included, goes to the app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._http import ASGIApp, Receive, Scope, Send, respond

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .server import SocketIOServer

__all__ = ("SocketIOMount",)


class SocketIOMount:
    def __init__(
        self,
        app: ASGIApp | None,
        server: SocketIOServer,
        paths: Iterable[str] = ("/socket.io/",),
    ) -> None:
        self.app = app
        self.server = server
        self.paths = frozenset(
            variant for path in paths for variant in (path.rstrip("/") + "/", path.rstrip("/"))
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"] in self.paths:
            await self.server.engine(scope, receive, send)
        elif self.app is not None:
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await respond(send, 404, "not found")
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1000})
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
