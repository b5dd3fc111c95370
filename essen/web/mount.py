"""Mount the Socket.IO server on a Quart(-Trio) app, as ASGI middleware."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from essen.realtime import SocketIOMount

if TYPE_CHECKING:
    from collections.abc import Iterable

    from quart import Quart

    from essen.realtime import SocketIOServer
    from essen.realtime._http import ASGIApp

__all__ = ("mount_socketio",)


def mount_socketio(app: Quart, server: SocketIOServer, paths: Iterable[str]) -> SocketIOMount:
    """Answer Socket.IO at every path of ``paths``; everything else stays Quart's.

    One middleware serves all the paths (``/socket.io/`` and ``/api/socket.io/``
    for the admin API), so no route is duplicated.  Pass the returned mount to
    :func:`essen.web.serving.serve_app` to serve its WebSockets on the fast path.
    """
    # Quart types its ASGI callables with its own TypedDicts; the middleware
    # speaks plain ASGI mappings, which is what flows at run time.
    mount = SocketIOMount(cast("ASGIApp", app.asgi_app), server, paths)
    app.asgi_app = cast("Any", mount)  # type: ignore[method-assign]
    return mount
