"""Engine.IO error responses over real HTTP and WebSocket, and session isolation.

The codes and messages are engine.io's (``Server.errors``): 0 "Transport
unknown", 1 "Session ID unknown", 2 "Bad handshake method", 3 "Bad request",
4 "Forbidden", 5 "Unsupported protocol version".  A session that misbehaves
(oversized or malformed POST, oversized WebSocket message) is closed; every
other session goes on.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio

from essen.realtime import EngineConfig, ServerOptions

from ._app import ALLOWED_ORIGIN, TOKEN, InteropApp, serving
from ._raw import (
    RS,
    RawPolling,
    next_event,
    raw_websocket,
    websocket_rejection,
    ws_connect_namespace,
)

pytestmark = pytest.mark.integration

AUTH = {"token": TOKEN, "user": "raw"}


def error_of(response: httpx.Response) -> tuple[int, Any]:
    assert response.headers["content-type"].startswith("application/json"), response.headers
    return response.status_code, response.json()


async def test_polling_handshake_errors(how):
    async with serving(InteropApp(), how) as server, httpx.AsyncClient(base_url=server.url) as http:
        with trio.fail_after(10):
            base = "/socket.io/"
            unknown_transport = {"code": 0, "message": "Transport unknown"}
            assert error_of(
                await http.get(base, params={"EIO": "4", "transport": "carrier-pigeon"})
            ) == (
                400,
                unknown_transport,
            )
            assert error_of(await http.get(base, params={"EIO": "4"})) == (400, unknown_transport)

            unknown_sid = {"code": 1, "message": "Session ID unknown"}
            query = {"EIO": "4", "transport": "polling", "sid": "no-such-session"}
            assert error_of(await http.get(base, params=query)) == (400, unknown_sid)
            assert error_of(await http.post(base, params=query, content=b"40")) == (
                400,
                unknown_sid,
            )

            bad_method = {"code": 2, "message": "Bad handshake method"}
            query = {"EIO": "4", "transport": "polling"}
            assert error_of(await http.post(base, params=query, content=b"40")) == (400, bad_method)

            unsupported = {"code": 5, "message": "Unsupported protocol version"}
            for eio in ("3", "5", ""):
                query = {"EIO": eio, "transport": "polling"}
                assert error_of(await http.get(base, params=query)) == (400, unsupported)
            assert error_of(await http.get(base, params={"transport": "polling"})) == (
                400,
                unsupported,
            )

            # The second mount path answers the same way; anything else is not ours.
            assert error_of(
                await http.get("/api/socket.io/", params={"EIO": "3", "transport": "polling"})
            ) == (400, unsupported)
            assert (
                await http.get("/elsewhere/", params={"EIO": "4", "transport": "polling"})
            ).status_code == 404

            # None of these opened a session.
            assert server.app.server.statistics()["engine_sessions"] == 0


async def test_websocket_handshake_errors(how):
    async with serving(InteropApp(), how) as server:
        with trio.fail_after(10):
            url = server.url
            assert await websocket_rejection(url, EIO="3") == (
                400,
                {"code": 5, "message": "Unsupported protocol version"},
            )
            assert await websocket_rejection(url, sid="no-such-session") == (
                400,
                {"code": 1, "message": "Session ID unknown"},
            )
            assert await websocket_rejection(url, transport="polling") == (
                400,
                {"code": 0, "message": "Transport unknown"},
            )
            assert server.app.server.statistics()["engine_sessions"] == 0


async def open_connected(http: httpx.AsyncClient, url: str) -> tuple[RawPolling, str]:
    session = await RawPolling(http, url).open()
    return session, await session.connect_namespace(AUTH)


async def assert_gone(session: RawPolling) -> None:
    response = await session.get()
    assert error_of(response) == (400, {"code": 1, "message": "Session ID unknown"})


async def assert_still_working(app: InteropApp, session: RawPolling, tick: int) -> None:
    """Both ways: a broadcast reaches ``session``, and its ack'ed event is answered."""
    assert app.server.emit("tick", tick) >= 1
    packets = await session.packets()
    assert len(packets) == 1
    assert json.loads(packets[0][2:])[:2] == ["tick", tick]
    assert (await session.post('427["sum",1,2]')).status_code == 200
    assert await session.packets() == ["437[3]"]


async def test_post_bigger_than_max_payload_closes_that_session_only(how):
    app = InteropApp(
        ServerOptions(cors_origins=(ALLOWED_ORIGIN,), engine=EngineConfig(max_payload=10_000))
    )
    async with (
        serving(app, how) as server,
        httpx.AsyncClient(base_url=server.url, timeout=None) as http,
    ):
        with trio.fail_after(10):
            victim, _ = await open_connected(http, server.url)
            bystander, _ = await open_connected(http, server.url)
            assert victim.handshake["maxPayload"] == 10_000

            response = await victim.post("4" + "x" * 10_000)
            assert response.status_code == 413
            await assert_gone(victim)
            await assert_still_working(app, bystander, 1)

            # A body of exactly maxPayload bytes is fine.
            padding = 10_000 - len('42["pad",""]')
            body = '42["pad","' + "y" * padding + '"]'
            assert len(body) == 10_000
            assert (await bystander.post(body)).status_code == 200
            await assert_still_working(app, bystander, 2)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("9nine is not a packet type", id="engineio-unknown-type"),
        pytest.param("", id="engineio-empty-payload"),
        pytest.param("bnot*base64", id="engineio-bad-base64"),
        pytest.param('42["unterminated', id="socketio-bad-json"),
        pytest.param('42{"not":"a list"}', id="socketio-event-not-a-list"),
        pytest.param("47-x", id="socketio-unknown-type"),
        pytest.param("bAAEC", id="socketio-attachment-without-packet"),
        pytest.param('40"not an object"', id="socketio-connect-not-an-object"),
        pytest.param('44{"message":"nope"}', id="socketio-connect-error-from-client"),
        pytest.param('42["ok"]' + RS + "9", id="engineio-garbage-after-a-good-packet"),
    ],
)
async def test_malformed_post_closes_that_session_only(body, how):
    app = InteropApp()
    async with (
        serving(app, how) as server,
        httpx.AsyncClient(base_url=server.url, timeout=None) as http,
    ):
        with trio.fail_after(10):
            victim, victim_sid = await open_connected(http, server.url)
            bystander, _ = await open_connected(http, server.url)
            async with raw_websocket(server.url) as ws:
                ws_sid = await ws_connect_namespace(ws, AUTH)

                await victim.post(body)  # 200 or 400: the protocol does not say which
                await assert_gone(victim)
                assert app.socket(victim_sid) is None

                # Other clients, on either transport, keep receiving events.
                await assert_still_working(app, bystander, 1)
                assert (await next_event(ws))[:2] == ["tick", 1]
                assert app.socket(ws_sid) is not None
            assert app.server.statistics()["closed_by_reason"].get("parse error") == 1


async def test_websocket_message_bigger_than_max_payload_closes_that_session_only(how):
    app = InteropApp(
        ServerOptions(cors_origins=(ALLOWED_ORIGIN,), engine=EngineConfig(max_payload=10_000))
    )
    async with (
        serving(app, how) as server,
        httpx.AsyncClient(base_url=server.url, timeout=None) as http,
    ):
        with trio.fail_after(10):
            bystander, _ = await open_connected(http, server.url)
            async with raw_websocket(server.url) as ws:
                sid = await ws_connect_namespace(ws, AUTH)
                await ws.send_message("4" + "x" * 10_000)

                def reason() -> str | None:
                    return next((r for s, r in app.seen.disconnects if s == sid), None)

                # Both ways of serving run the same Engine.IO session, which closes an
                # oversized frame as "payload too large" (not a recoverable reason).
                assert await app.wait_for(reason) == "payload too large"
                assert app.server.statistics()["closed_by_reason"] == {"payload too large": 1}
            await assert_still_working(app, bystander, 1)
