"""Small ASGI helpers shared by the Engine.IO server routes: responses, bodies, CORS."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = (
    "ASGIApp",
    "CorsPolicy",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "header",
    "query_params",
    "read_body",
    "respond",
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (``name`` lower-case), decoded as latin-1."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def query_params(scope: Scope) -> dict[str, str]:
    """The query string as a dict (first value wins; malformed pairs dropped)."""
    raw = scope.get("query_string", b"").decode("latin-1")
    params: dict[str, str] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        params.setdefault(key, value)
    return params


async def respond(
    send: Send,
    status: int,
    body: bytes | str = b"",
    *,
    content_type: str = "text/plain; charset=UTF-8",
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    data = body.encode("utf-8") if isinstance(body, str) else body
    all_headers = [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", str(len(data)).encode("latin-1")),
        (b"cache-control", b"no-store"),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})


def json_error(code: int, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}).encode("utf-8")


async def read_body(receive: Receive, *, limit: int) -> bytes | None:
    """Read a request body; ``None`` when it grows beyond ``limit`` bytes.

    Raises:
        ConnectionAbortedError: the client went away before the body was complete.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("client disconnected during the request body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    """Which browser origins may talk to the server.

    ``origins`` lists allowed origins (``"https://admin.example.com"``); ``"*"``
    allows any (development only).  A request with no ``Origin`` header is not
    a cross-site browser request and is always allowed, and so is a request
    whose origin is the server's own host (same-origin).
    """

    origins: tuple[str, ...] = ()

    def allows(self, origin: str | None, host: str | None) -> bool:
        if origin is None:
            return True
        if "*" in self.origins or origin in self.origins:
            return True
        return host is not None and urlsplit(origin).netloc == host

    def response_headers(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        """Headers that let an allowed browser origin read the response with credentials."""
        if origin is None:
            return []
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-credentials", b"true"),
            (b"vary", b"Origin"),
        ]
