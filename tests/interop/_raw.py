"""A raw Engine.IO v4 client over real HTTP (httpx) and WebSocket (trio-websocket).

Only what the protocol-level tests need: it sends exactly the requests a test
asks for, so a test can reproduce a precise sequence (a stale poll during an
upgrade, an oversized body, a malformed packet) that a full client would never
produce on purpose.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import trio
from trio_websocket import ConnectionRejected, wrap_client_stream

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx
    from trio_websocket import WebSocketConnection

RS = "\x1e"


class RawPolling:
    """One Engine.IO session on the polling transport."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, path: str = "/socket.io/") -> None:
        self.http = http
        self.base_url = base_url
        self.path = path
        self.sid: str | None = None
        self.handshake: dict[str, Any] = {}

    def url(self, **params: str) -> str:
        query = {"EIO": "4", "transport": "polling", **params}
        if self.sid is not None and "sid" not in params:
            query["sid"] = self.sid
        return f"{self.base_url}{self.path}?" + "&".join(f"{k}={v}" for k, v in query.items())

    async def open(self) -> RawPolling:
        response = await self.http.get(self.url())
        assert response.status_code == 200, response.text
        assert response.text.startswith("0"), response.text
        self.handshake = json.loads(response.text[1:])
        self.sid = self.handshake["sid"]
        return self

    async def get(self) -> httpx.Response:
        return await self.http.get(self.url())

    async def post(self, body: str | bytes) -> httpx.Response:
        data = body.encode() if isinstance(body, str) else body
        return await self.http.post(
            self.url(), content=data, headers={"content-type": "text/plain;charset=UTF-8"}
        )

    async def packets(self) -> list[str]:
        """One long-poll: the packets it returned."""
        response = await self.get()
        assert response.status_code == 200, (response.status_code, response.text)
        return response.text.split(RS)

    async def connect_namespace(self, auth: dict[str, Any]) -> str:
        """Socket.IO CONNECT to "/"; returns the socket id."""
        response = await self.post("40" + json.dumps(auth))
        assert response.status_code == 200, response.text
        packets = await self.packets()
        assert packets[0].startswith("40{"), packets
        sid: str = json.loads(packets[0][2:])["sid"]
        return sid


def ws_url(base_url: str, path: str = "/socket.io/", **params: str) -> str:
    query = {"EIO": "4", "transport": "websocket", **params}
    return f"ws{base_url.removeprefix('http')}{path}?" + "&".join(
        f"{k}={v}" for k, v in query.items()
    )


def _target(base_url: str, path: str, params: dict[str, str]) -> tuple[str, int, str, str]:
    url = urlsplit(ws_url(base_url, path, **params))
    assert url.hostname is not None
    assert url.port is not None
    return url.hostname, url.port, url.netloc, f"{url.path}?{url.query}"


@asynccontextmanager
async def raw_websocket(
    base_url: str, path: str = "/socket.io/", *, origin: str | None = None, **params: str
) -> AsyncIterator[WebSocketConnection]:
    """A WebSocket on a TCP stream we own, so it is closed however the peer behaves
    (trio-websocket's own connect leaves the socket open when the server closes first)."""
    host, port, netloc, resource = _target(base_url, path, params)
    headers = [(b"origin", origin.encode())] if origin is not None else []
    stream = await trio.open_tcp_stream(host, port)
    async with stream, trio.open_nursery() as nursery:
        ws = await wrap_client_stream(
            nursery, stream, netloc, resource, extra_headers=headers, max_message_size=1 << 24
        )
        try:
            yield ws
        finally:
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + 2
                await ws.aclose()
            nursery.cancel_scope.cancel()


async def websocket_rejection(
    base_url: str, path: str = "/socket.io/", *, origin: str | None = None, **params: str
) -> tuple[int, Any]:
    """Open a WebSocket that must be refused; returns (HTTP status, JSON body or None).

    The TCP stream is ours and closed here: trio-websocket leaves its own stream
    open when the handshake is rejected.
    """
    host, port, netloc, resource = _target(base_url, path, params)
    headers = [(b"origin", origin.encode())] if origin is not None else []
    rejected: ConnectionRejected | None = None
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        try:
            async with trio.open_nursery() as nursery:
                ws = await wrap_client_stream(
                    nursery, stream, netloc, resource, extra_headers=headers
                )
                await ws.aclose()
        except* ConnectionRejected as group:
            exc = group.exceptions[0]
            assert isinstance(exc, ConnectionRejected)
            rejected = exc
    if rejected is None:
        raise AssertionError("the WebSocket was accepted")
    body = json.loads(rejected.body) if rejected.body else None
    return rejected.status_code, body


async def ws_connect_namespace(ws: WebSocketConnection, auth: dict[str, Any]) -> str:
    """On a fresh Engine.IO WebSocket session: read OPEN, CONNECT to "/", return the socket id."""
    opened = await ws.get_message()
    assert isinstance(opened, str), opened
    assert opened.startswith("0{"), opened
    await ws.send_message("40" + json.dumps(auth))
    reply = await ws.get_message()
    assert isinstance(reply, str), reply
    assert reply.startswith("40{"), reply
    sid: str = json.loads(reply[2:])["sid"]
    return sid


async def next_event(ws: WebSocketConnection) -> list[Any]:
    """The next Socket.IO EVENT on a WebSocket session, answering pings on the way."""
    while True:
        message = await ws.get_message()
        assert isinstance(message, str), message
        if message == "2":
            await ws.send_message("3")
            continue
        assert message.startswith("42"), message
        event: list[Any] = json.loads(message[2:])
        return event
