"""Serve a built static site (the dashboard) in front of an ASGI app, in development.

GET/HEAD requests for a file that exists under ``root`` are answered from it
(``/`` is ``index.html``); everything else goes to the app.  Paths are
resolved inside ``root`` only: ``..`` and symlinks out of it are refused.
On App Platform the dashboard is its own static site and this is not used.
"""

from __future__ import annotations

import mimetypes
from typing import TYPE_CHECKING

import trio

from essen.realtime._http import respond

if TYPE_CHECKING:
    from pathlib import Path

    from essen.realtime._http import ASGIApp, Receive, Scope, Send

__all__ = ("StaticFiles",)

MAX_FILE = 16 * 1024 * 1024


class StaticFiles:
    def __init__(self, app: ASGIApp, root: Path) -> None:
        self.app = app
        self.root = root.resolve()

    def _find(self, path: str) -> Path | None:
        relative = path.lstrip("/") or "index.html"
        candidate = (self.root / relative).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        return candidate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            found = self._find(scope["path"])
            if found is not None and found.stat().st_size <= MAX_FILE:
                body = await trio.Path(found).read_bytes()
                kind = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
                if kind.startswith("text/") or kind in ("application/javascript",):
                    kind += "; charset=utf-8"
                # Hashed assets may be cached; the page and its per-deployment
                # config must be revalidated so a new build or config takes effect.
                fresh = found.name in ("index.html", "config.js")
                cache = "no-cache" if fresh else "public, max-age=3600"
                await respond(
                    send,
                    200,
                    b"" if scope["method"] == "HEAD" else body,
                    content_type=kind,
                    headers=[(b"cache-control", cache.encode())],
                )
                return
        await self.app(scope, receive, send)
