"""The Engine.IO server's ASGI routes, driven in process: polling over httpx's
ASGI transport, WebSocket over raw ASGI messages.  Checks the protocol's HTTP
errors (``{code, message}``), CORS, the polling lifecycle, and the upgrade."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
import trio.testing

from essen.protocol.engine_server import EngineConfig, Transport
from essen.realtime import ServerOptions, SocketIOMount, SocketIOServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from essen.realtime import Socket

PATH = "/socket.io/"
TIMEOUT = 10


@dataclass
class Env:
    server: SocketIOServer
    app: SocketIOMount
    client: httpx.AsyncClient
    nursery: trio.Nursery

    async def request(
        self,
        method: str,
        *,
        sid: str | None = None,
        body: bytes | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        query = {"EIO": "4", "transport": "polling"} if params is None else params
        if sid is not None:
            query = {**query, "sid": sid}
        return await self.client.request(method, PATH, params=query, content=body, headers=headers)

    async def handshake(self) -> str:
        response = await self.request("GET")
        assert response.status_code == 200
        return str(json.loads(response.text[1:])["sid"])

    async def get(self, sid: str) -> str:
        response = await self.request("GET", sid=sid)
        assert response.status_code == 200, response.text
        return response.text

    async def post(self, sid: str, body: str) -> httpx.Response:
        return await self.request("POST", sid=sid, body=body.encode())

    async def connect(self, sid: str) -> dict[str, Any]:
        assert (await self.post(sid, "40")).text == "ok"
        text = await self.get(sid)
        assert text.startswith("40{")
        return dict(json.loads(text[2:]))


@asynccontextmanager
async def serve(options: ServerOptions | None = None) -> AsyncIterator[Env]:
    server = SocketIOServer(options or ServerOptions(cors_origins=("https://admin.example",)))

    @server.on("echo")
    async def echo(socket: Socket, *args: Any) -> tuple[Any, ...]:
        return args

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            app = SocketIOMount(None, server)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                yield Env(server, app, c, nursery)
            nursery.cancel_scope.cancel()


def assert_error(response: httpx.Response, status: int, code: int, message: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"code": code, "message": message}


# -- handshake and errors -----------------------------------------------------------------


async def test_polling_handshake() -> None:
    async with serve() as env:
        response = await env.request("GET")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert response.text[0] == "0"
        body = json.loads(response.text[1:])
        assert set(body) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
        assert body["upgrades"] == ["websocket"]
        assert (body["pingInterval"], body["pingTimeout"]) == (25000, 20000)
        assert body["maxPayload"] == 1_000_000
        assert body["sid"] in env.server.engine.sessions
        assert await env.handshake() != body["sid"]


async def test_polling_only_server_offers_no_upgrade() -> None:
    options = ServerOptions(engine=EngineConfig(transports=(Transport.POLLING,)))
    async with serve(options) as env:
        response = await env.request("GET")
        assert json.loads(response.text[1:])["upgrades"] == []


@pytest.mark.parametrize(
    "params",
    [{"EIO": "4"}, {"EIO": "4", "transport": "carrier-pigeon"}, {"EIO": "4", "transport": ""}],
)
async def test_unknown_transport(params: dict[str, str]) -> None:
    async with serve() as env:
        assert_error(await env.request("GET", params=params), 400, 0, "Transport unknown")


@pytest.mark.parametrize("eio", [None, "3", "5", ""])
async def test_unsupported_protocol_version(eio: str | None) -> None:
    params = {"transport": "polling"} | ({"EIO": eio} if eio is not None else {})
    async with serve() as env:
        assert_error(
            await env.request("GET", params=params), 400, 5, "Unsupported protocol version"
        )


async def test_handshake_must_be_get() -> None:
    async with serve() as env:
        assert_error(await env.request("POST", body=b"40"), 400, 2, "Bad handshake method")
        assert env.server.engine.sessions == {}


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_unknown_sid(method: str) -> None:
    async with serve() as env:
        response = await env.request(method, sid="nope", body=b"40" if method == "POST" else None)
        assert_error(response, 400, 1, "Session ID unknown")


async def test_unsupported_method_on_a_session() -> None:
    async with serve() as env:
        sid = await env.handshake()
        assert_error(await env.request("PUT", sid=sid, body=b"x"), 400, 3, "Bad request")


async def test_too_many_sessions() -> None:
    async with serve(ServerOptions(max_sessions=2)) as env:
        await env.handshake()
        await env.handshake()
        response = await env.request("GET")
        assert response.status_code == 503
        assert response.json()["code"] == 3


# -- CORS ---------------------------------------------------------------------------------


async def test_cross_site_request_refused() -> None:
    async with serve() as env:
        response = await env.request("GET", headers={"origin": "https://evil.example"})
        assert_error(response, 403, 4, "Forbidden")
        assert "access-control-allow-origin" not in response.headers
        assert env.server.engine.sessions == {}


async def test_allowed_origin_gets_cors_headers() -> None:
    async with serve() as env:
        response = await env.request("GET", headers={"origin": "https://admin.example"})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://admin.example"
        assert response.headers["access-control-allow-credentials"] == "true"
        # Errors carry them too, so the browser can read the error.
        response = await env.request("GET", sid="nope", headers={"origin": "https://admin.example"})
        assert response.status_code == 400
        assert response.headers["access-control-allow-origin"] == "https://admin.example"


async def test_preflight() -> None:
    async with serve() as env:
        response = await env.request(
            "OPTIONS",
            headers={
                "origin": "https://admin.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type, x-token",
            },
        )
        assert response.status_code == 204
        assert response.headers["access-control-allow-origin"] == "https://admin.example"
        assert "POST" in response.headers["access-control-allow-methods"]
        assert response.headers["access-control-allow-headers"] == "content-type, x-token"


async def test_same_origin_is_allowed() -> None:
    async with serve() as env:
        response = await env.request("GET", headers={"origin": "http://testserver"})
        assert response.status_code == 200


# -- polling lifecycle ----------------------------------------------------------------------


async def test_post_answers_ok() -> None:
    async with serve() as env:
        sid = await env.handshake()
        response = await env.post(sid, "40")
        assert response.status_code == 200
        assert response.text == "ok"
        connected = json.loads((await env.get(sid))[2:])
        assert set(connected) == {"sid", "pid"}
        assert connected["sid"] != sid


async def test_get_waits_for_data() -> None:
    async with serve() as env:
        sid = await env.handshake()
        await env.connect(sid)
        result: list[str] = []

        async def poll() -> None:
            result.append(await env.get(sid))

        env.nursery.start_soon(poll)
        await trio.testing.wait_all_tasks_blocked()
        assert result == []
        env.server.emit("tick", 1)
        while not result:
            await trio.testing.wait_all_tasks_blocked()
        [payload] = result
        assert payload.startswith('42["tick",1,')


async def test_client_close_packet() -> None:
    async with serve() as env:
        sid = await env.handshake()
        response = await env.post(sid, "1")
        assert (response.status_code, response.text) == (200, "ok")
        await trio.testing.wait_all_tasks_blocked()
        assert_error(await env.request("GET", sid=sid), 400, 1, "Session ID unknown")
        assert env.server.engine.closed_by_reason == {"transport close": 1}


async def test_malformed_post_closes_only_that_session() -> None:
    async with serve() as env:
        sid = await env.handshake()
        other = await env.handshake()
        assert_error(await env.post(sid, "9junk"), 400, 3, "Bad request")
        await trio.testing.wait_all_tasks_blocked()
        assert sid not in env.server.engine.sessions
        assert other in env.server.engine.sessions
        assert env.server.engine.closed_by_reason == {"parse error": 1}


async def test_payload_too_large() -> None:
    options = ServerOptions(engine=EngineConfig(max_payload=100))
    async with serve(options) as env:
        sid = await env.handshake()
        assert (await env.post(sid, "4" + "x" * 99)).text == "ok"
        response = await env.post(sid, "4" + "x" * 100)
        assert_error(response, 413, 3, "Payload too large")
        await trio.testing.wait_all_tasks_blocked()
        assert sid not in env.server.engine.sessions


async def test_overlapping_gets_close_the_session() -> None:
    async with serve() as env:
        sid = await env.handshake()
        first: list[httpx.Response] = []

        async def poll() -> None:
            first.append(await env.request("GET", sid=sid))

        env.nursery.start_soon(poll)
        await trio.testing.wait_all_tasks_blocked()
        assert_error(await env.request("GET", sid=sid), 400, 3, "Bad request")
        while not first:
            await trio.testing.wait_all_tasks_blocked()
        # The waiting poll is released with a CLOSE packet.
        assert (first[0].status_code, first[0].text) == (200, "1")
        await trio.testing.wait_all_tasks_blocked()
        assert sid not in env.server.engine.sessions
        assert env.server.engine.closed_by_reason == {"poll overlap": 1}


async def test_server_close_is_delivered_as_close_packet() -> None:
    async with serve() as env:
        sid = await env.handshake()
        await env.connect(sid)
        [socket] = env.server.namespaces["/"].sockets.values()
        await socket.disconnect(close_connection=True)
        payload = await env.get(sid)
        assert payload.split("\x1e") == ["41", "1"]
        await trio.testing.wait_all_tasks_blocked()
        assert sid not in env.server.engine.sessions


async def test_abandoned_poll_closes_the_session() -> None:
    """A GET whose client goes away (``http.disconnect``) ends the session's transport."""
    async with serve() as env:
        sid = await env.handshake()
        gone = trio.Event()
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            if not sent:
                sent.append({"type": "http.request"})
                return sent[0]
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "GET",
            "path": PATH,
            "query_string": f"EIO=4&transport=polling&sid={sid}".encode(),
            "headers": [(b"host", b"testserver")],
        }
        env.nursery.start_soon(env.app, scope, receive, send)
        await trio.testing.wait_all_tasks_blocked()
        assert sid in env.server.engine.sessions
        gone.set()
        await trio.testing.wait_all_tasks_blocked()
        assert sid not in env.server.engine.sessions
        assert env.server.engine.closed_by_reason == {"transport error": 1}


# -- WebSocket (raw ASGI) ----------------------------------------------------------------


class AsgiWebSocketClient:
    """The client side of one ASGI WebSocket connection to the app."""

    def __init__(self, env: Env, query: str, *, http_response_extension: bool = False) -> None:
        self.env = env
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "path": PATH,
            "query_string": query.encode(),
            "headers": [(b"host", b"testserver")],
            "extensions": {"websocket.http.response": {}} if http_response_extension else {},
        }
        self._to_app, self._app_inbox = trio.open_memory_channel[dict[str, Any]](100)
        self._app_outbox, self._from_app = trio.open_memory_channel[dict[str, Any]](100)
        self.finished = trio.Event()

    async def start(self) -> None:
        async def run() -> None:
            try:
                await self.env.app(self.scope, self._app_inbox.receive, self._app_outbox.send)
            finally:
                self.finished.set()

        self.env.nursery.start_soon(run)
        await self._to_app.send({"type": "websocket.connect"})

    async def next_message(self) -> dict[str, Any]:
        return await self._from_app.receive()

    async def expect_accept(self) -> None:
        assert await self.next_message() == {"type": "websocket.accept"}

    async def receive_text(self) -> str:
        message = await self.next_message()
        assert message["type"] == "websocket.send", message
        return str(message["text"])

    async def send_text(self, text: str) -> None:
        await self._to_app.send({"type": "websocket.receive", "text": text})

    async def disconnect(self) -> None:
        await self._to_app.send({"type": "websocket.disconnect", "code": 1000})


async def test_websocket_handshake_and_messages() -> None:
    async with serve() as env:
        ws = AsgiWebSocketClient(env, "EIO=4&transport=websocket")
        await ws.start()
        await ws.expect_accept()
        opened = await ws.receive_text()
        assert opened[0] == "0"
        body = json.loads(opened[1:])
        assert body["upgrades"] == []
        await ws.send_text("40")
        assert (await ws.receive_text()).startswith("40{")
        await ws.send_text('421["echo","hi"]')
        assert await ws.receive_text() == '431["hi"]'
        await ws.disconnect()
        await ws.finished.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert body["sid"] not in env.server.engine.sessions
        assert env.server.engine.closed_by_reason == {"transport close": 1}


@pytest.mark.parametrize(
    ("query", "code", "status"),
    [
        ("EIO=4&transport=websocket&sid=nope", 1, 400),
        ("EIO=4&transport=polling", 0, 400),
        ("EIO=3&transport=websocket", 5, 400),
    ],
)
async def test_websocket_rejections(query: str, code: int, status: int) -> None:
    async with serve() as env:
        ws = AsgiWebSocketClient(env, query, http_response_extension=True)
        await ws.start()
        start = await ws.next_message()
        assert start["type"] == "websocket.http.response.start"
        assert start["status"] == status
        body = await ws.next_message()
        assert json.loads(body["body"])["code"] == code
        # Without the extension, a policy-violation close.
        ws = AsgiWebSocketClient(env, query)
        await ws.start()
        assert await ws.next_message() == {"type": "websocket.close", "code": 1008}


async def test_websocket_upgrade() -> None:
    async with serve() as env:
        sid = await env.handshake()
        await env.connect(sid)
        pending: list[str] = []

        async def poll() -> None:
            pending.append(await env.get(sid))

        env.nursery.start_soon(poll)
        await trio.testing.wait_all_tasks_blocked()

        ws = AsgiWebSocketClient(env, f"EIO=4&transport=websocket&sid={sid}")
        await ws.start()
        await ws.expect_accept()
        await ws.send_text("2probe")
        assert await ws.receive_text() == "3probe"
        # The waiting poll is released with a noop so the client can pause polling.
        while not pending:
            await trio.testing.wait_all_tasks_blocked()
        assert pending == ["6"]
        await ws.send_text("5")
        await trio.testing.wait_all_tasks_blocked()
        conn = env.server.engine.sessions[sid]
        assert conn.session.transport is Transport.WEBSOCKET
        # Now data flows on the WebSocket, and polling on this session is refused.
        env.server.emit("after", "upgrade")
        assert (await ws.receive_text()).startswith('42["after","upgrade"')
        assert_error(await env.request("GET", sid=sid), 400, 3, "Bad request")
        await ws.send_text('421["echo",2]')
        assert await ws.receive_text() == "431[2]"


@pytest.mark.parametrize("first", ["5", "2", "4hello", "3probe"])
async def test_failed_upgrade_keeps_polling(first: str) -> None:
    async with serve() as env:
        sid = await env.handshake()
        await env.connect(sid)
        ws = AsgiWebSocketClient(env, f"EIO=4&transport=websocket&sid={sid}")
        await ws.start()
        await ws.expect_accept()
        await ws.send_text(first)
        assert (await ws.next_message())["type"] == "websocket.close"
        await ws.finished.wait()
        conn = env.server.engine.sessions[sid]
        assert conn.session.transport is Transport.POLLING
        assert (await env.post(sid, '421["echo","still polling"]')).text == "ok"
        assert await env.get(sid) == '431["still polling"]'


async def test_second_upgrade_attempt_is_refused() -> None:
    async with serve() as env:
        sid = await env.handshake()
        ws = AsgiWebSocketClient(env, f"EIO=4&transport=websocket&sid={sid}")
        await ws.start()
        await ws.expect_accept()
        again = AsgiWebSocketClient(env, f"EIO=4&transport=websocket&sid={sid}")
        await again.start()
        assert await again.next_message() == {"type": "websocket.close", "code": 1008}
        await ws.send_text("2probe")
        assert await ws.receive_text() == "3probe"


async def test_websocket_message_too_large() -> None:
    async with serve(ServerOptions(engine=EngineConfig(max_payload=50))) as env:
        ws = AsgiWebSocketClient(env, "EIO=4&transport=websocket")
        await ws.start()
        await ws.expect_accept()
        sid = json.loads((await ws.receive_text())[1:])["sid"]
        await ws.send_text("4" + "x" * 60)
        message = await ws.next_message()
        assert message["type"] == "websocket.close"
        await ws.finished.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert sid not in env.server.engine.sessions
        assert env.server.engine.closed_by_reason == {"payload too large": 1}
