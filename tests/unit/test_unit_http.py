"""ASGI helpers (``essen.realtime._http``) and ``SocketIOMount`` routing."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from essen.realtime import ServerOptions, SocketIOMount, SocketIOServer
from essen.realtime._http import (
    CorsPolicy,
    header,
    json_error,
    query_params,
    read_body,
    respond,
)

Message = dict[str, Any]


class Recorder:
    """An ASGI ``send`` that keeps what it was sent."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(dict(message))


def receiver(*messages: Message) -> Any:
    queue = list(messages)

    async def receive() -> Message:
        await trio.lowlevel.checkpoint()
        return queue.pop(0)

    return receive


# -- header / query ------------------------------------------------------------


def test_header_first_value_latin1() -> None:
    scope = {"headers": [(b"x-a", b"1"), (b"origin", b"http://\xe9"), (b"x-a", b"2")]}
    assert header(scope, b"x-a") == "1"
    assert header(scope, b"origin") == "http://é"
    assert header(scope, b"missing") is None
    assert header({}, b"x-a") is None


def test_query_params() -> None:
    scope = {"query_string": b"EIO=4&transport=polling&sid=abc&sid=second&empty=&t=N%2Fx"}
    assert query_params(scope) == {
        "EIO": "4",
        "transport": "polling",
        "sid": "abc",  # first value wins
        "empty": "",
        "t": "N/x",
    }
    assert query_params({}) == {}
    assert query_params({"query_string": b"&&novalue"}) == {"novalue": ""}


def test_json_error_shape() -> None:
    assert json.loads(json_error(1, "Session ID unknown")) == {
        "code": 1,
        "message": "Session ID unknown",
    }


# -- respond / read_body ----------------------------------------------------------


async def test_respond() -> None:
    with trio.fail_after(5):
        send = Recorder()
        await respond(send, 200, "héllo", headers=[(b"x-extra", b"1")])
        start, body = send.messages
        assert start["type"] == "http.response.start"
        assert start["status"] == 200
        headers = dict(start["headers"])
        assert headers[b"content-type"] == b"text/plain; charset=UTF-8"
        assert headers[b"content-length"] == str(len("héllo".encode())).encode()
        assert headers[b"cache-control"] == b"no-store"
        assert headers[b"x-extra"] == b"1"
        assert body == {"type": "http.response.body", "body": "héllo".encode(), "more_body": False}


async def test_read_body_chunks() -> None:
    with trio.fail_after(5):
        receive = receiver(
            {"type": "http.request", "body": b"ab", "more_body": True},
            {"type": "http.request", "body": b"", "more_body": True},
            {"type": "http.request", "body": b"cd"},
        )
        assert await read_body(receive, limit=4) == b"abcd"


async def test_read_body_limit() -> None:
    with trio.fail_after(5):
        receive = receiver(
            {"type": "http.request", "body": b"abc", "more_body": True},
            {"type": "http.request", "body": b"de", "more_body": False},
        )
        assert await read_body(receive, limit=4) is None


async def test_read_body_disconnect() -> None:
    with trio.fail_after(5):
        receive = receiver(
            {"type": "http.request", "body": b"a", "more_body": True}, {"type": "http.disconnect"}
        )
        with pytest.raises(ConnectionAbortedError):
            await read_body(receive, limit=100)


async def test_read_empty_body() -> None:
    with trio.fail_after(5):
        assert await read_body(receiver({"type": "http.request"}), limit=0) == b""


# -- CORS -------------------------------------------------------------------------


def test_cors_no_origin_is_not_cross_site() -> None:
    assert CorsPolicy().allows(None, "example.com")
    assert CorsPolicy().response_headers(None) == []


def test_cors_listed_origin() -> None:
    policy = CorsPolicy(("https://admin.example",))
    assert policy.allows("https://admin.example", "api.example")
    assert not policy.allows("https://evil.example", "api.example")
    assert not policy.allows("https://admin.example.evil", "api.example")
    assert not policy.allows("null", "api.example")


def test_cors_same_origin() -> None:
    policy = CorsPolicy()
    assert policy.allows("http://localhost:8000", "localhost:8000")
    assert not policy.allows("http://localhost:8001", "localhost:8000")
    assert not policy.allows("http://localhost:8000", None)


def test_cors_wildcard() -> None:
    assert CorsPolicy(("*",)).allows("https://anything.example", None)


def test_cors_response_headers_echo_origin() -> None:
    assert dict(CorsPolicy(("https://a.example",)).response_headers("https://a.example")) == {
        b"access-control-allow-origin": b"https://a.example",
        b"access-control-allow-credentials": b"true",
        b"vary": b"Origin",
    }


# -- SocketIOMount -----------------------------------------------------------------


class FakeEngine:
    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])


class FakeServer:
    def __init__(self) -> None:
        self.engine = FakeEngine()


def mount(
    app: Any = None, paths: tuple[str, ...] = ("/socket.io/",)
) -> tuple[SocketIOMount, FakeEngine]:
    server = FakeServer()
    return SocketIOMount(app, server, paths=paths), server.engine  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["/socket.io/", "/socket.io"])
async def test_mount_routes_both_slash_forms(path: str) -> None:
    with trio.fail_after(5):
        app, engine = mount()
        await app({"type": "http", "path": path}, receiver(), Recorder())
        await app({"type": "websocket", "path": path}, receiver(), Recorder())
        assert engine.paths == [path, path]


async def test_mount_several_paths() -> None:
    with trio.fail_after(5):
        app, engine = mount(paths=("/socket.io/", "/api/socket.io"))
        for path in ("/socket.io", "/api/socket.io/", "/api/socket.io"):
            await app({"type": "http", "path": path}, receiver(), Recorder())
        assert engine.paths == ["/socket.io", "/api/socket.io/", "/api/socket.io"]


async def test_mount_passes_everything_else_to_the_app() -> None:
    with trio.fail_after(5):
        seen: list[tuple[str, str | None]] = []

        async def inner(scope: Any, receive: Any, send: Any) -> None:
            seen.append((scope["type"], scope.get("path")))

        app, engine = mount(inner)
        await app({"type": "http", "path": "/socket.io/x"}, receiver(), Recorder())
        await app({"type": "http", "path": "/"}, receiver(), Recorder())
        await app({"type": "lifespan"}, receiver(), Recorder())
        assert seen == [("http", "/socket.io/x"), ("http", "/"), ("lifespan", None)]
        assert engine.paths == []


async def test_mount_without_app_404s() -> None:
    with trio.fail_after(5):
        app, _ = mount()
        send = Recorder()
        await app({"type": "http", "path": "/other"}, receiver(), send)
        assert send.messages[0]["status"] == 404
        send = Recorder()
        await app({"type": "websocket", "path": "/other"}, receiver(), send)
        assert send.messages == [{"type": "websocket.close", "code": 1000}]


async def test_mount_without_app_answers_lifespan() -> None:
    app, _ = mount()
    send = Recorder()
    with trio.fail_after(5):
        await app(
            {"type": "lifespan"},
            receiver({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}),
            send,
        )
    assert send.messages == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]


def test_mount_accepts_a_real_server() -> None:
    server = SocketIOServer(ServerOptions())
    app = SocketIOMount(None, server)
    assert app.paths == {"/socket.io/", "/socket.io"}
