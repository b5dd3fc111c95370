"""Browser-origin checks over real HTTP and WebSocket.

The server allows ``ALLOWED_ORIGIN`` only.  A polling request from another
origin gets 403 ``{"code": 4, "message": "Forbidden"}``, and so does a
WebSocket handshake: browsers do not apply CORS to WebSockets, so without this
check any site could open a WebSocket with the user's cookies (cross-site
WebSocket hijacking).  Requests without ``Origin`` (not from a browser) and
same-origin requests are allowed.
"""

from __future__ import annotations

import httpx
import pytest
import trio

from ._app import ALLOWED_ORIGIN, TOKEN, InteropApp, serving
from ._raw import RawPolling, raw_websocket, websocket_rejection, ws_connect_namespace

pytestmark = pytest.mark.integration

EVIL = "https://evil.example"
FORBIDDEN = {"code": 4, "message": "Forbidden"}
HANDSHAKE = {"EIO": "4", "transport": "polling"}


async def test_polling_from_a_foreign_origin_is_forbidden(how):
    app = InteropApp()
    async with serving(app, how) as server, httpx.AsyncClient(base_url=server.url) as http:
        with trio.fail_after(10):
            refused = await http.get("/socket.io/", params=HANDSHAKE, headers={"origin": EVIL})
            assert refused.status_code == 403
            assert refused.json() == FORBIDDEN
            assert "access-control-allow-origin" not in refused.headers

            preflight = await http.options(
                "/socket.io/",
                params=HANDSHAKE,
                headers={"origin": EVIL, "access-control-request-method": "POST"},
            )
            assert preflight.status_code == 403

            # A foreign origin cannot use an existing session either.
            session = await RawPolling(http, server.url).open()
            post = await http.post(
                session.url(), content=b'40{"token":"x"}', headers={"origin": EVIL}
            )
            assert (post.status_code, post.json()) == (403, FORBIDDEN)
            assert app.seen.auths == []
            assert app.server.statistics()["engine_sessions"] == 1


async def test_polling_from_allowed_and_same_origin(how):
    async with serving(InteropApp(), how) as server, httpx.AsyncClient(base_url=server.url) as http:
        with trio.fail_after(10):
            allowed = await http.get(
                "/socket.io/", params=HANDSHAKE, headers={"origin": ALLOWED_ORIGIN}
            )
            assert allowed.status_code == 200
            assert allowed.text.startswith("0{")
            assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
            assert allowed.headers["access-control-allow-credentials"] == "true"

            preflight = await http.options(
                "/socket.io/",
                params=HANDSHAKE,
                headers={"origin": ALLOWED_ORIGIN, "access-control-request-method": "POST"},
            )
            assert preflight.status_code == 204
            assert preflight.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
            assert "POST" in preflight.headers["access-control-allow-methods"]

            same = await http.get("/socket.io/", params=HANDSHAKE, headers={"origin": server.url})
            assert same.status_code == 200

            anonymous = await http.get("/socket.io/", params=HANDSHAKE)
            assert anonymous.status_code == 200
            assert "access-control-allow-origin" not in anonymous.headers


async def test_websocket_from_a_foreign_origin_is_refused(how):
    app = InteropApp()
    async with serving(app, how) as server, httpx.AsyncClient(base_url=server.url) as http:
        with trio.fail_after(10):
            assert await websocket_rejection(server.url, origin=EVIL) == (403, FORBIDDEN)
            # Nor may a foreign page take over a polling session by upgrading it.
            session = await RawPolling(http, server.url).open()
            assert session.sid is not None
            assert await websocket_rejection(server.url, origin=EVIL, sid=session.sid) == (
                403,
                FORBIDDEN,
            )
            assert app.server.statistics()["engine_sessions"] == 1

            async with raw_websocket(server.url, origin=ALLOWED_ORIGIN) as ws:
                sid = await ws_connect_namespace(ws, {"token": TOKEN, "user": "ws-allowed"})
            async with raw_websocket(server.url, "/api/socket.io/", origin=server.url) as ws:
                await ws_connect_namespace(ws, {"token": TOKEN, "user": "ws-same-origin"})
            assert [user for _, user, _ in app.seen.connects] == ["ws-allowed", "ws-same-origin"]
            assert app.seen.connects[0][0] == sid
