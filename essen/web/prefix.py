"""Answer the same routes with and without an ``/api`` prefix, in one layer.

App Platform's ingress strips ``/api`` before a request reaches the admin
API; locally nothing strips it.  This middleware marks the prefix as the
mount point (``root_path``, as ASGI intends) when it is there, so each route
is declared once, without the prefix, and answers at both addresses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from essen.realtime._http import ASGIApp, Receive, Scope, Send

__all__ = ("StripPrefix",)


class StripPrefix:
    def __init__(self, app: ASGIApp, prefix: str = "/api") -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path: str = scope["path"]
            if path == self.prefix or path.startswith(self.prefix + "/"):
                # ASGI: ``path`` keeps the full path and ``root_path`` names the
                # mount point; the framework routes on what follows it.
                scope = dict(scope)
                scope["root_path"] = scope.get("root_path", "") + self.prefix
        await self.app(scope, receive, send)
