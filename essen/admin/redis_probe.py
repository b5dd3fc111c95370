"""A Redis health probe: one PING over RESP, no client library.

The admin API does not use Redis yet (cross-instance fan-out is issue 7), but
when ``REDIS_URL`` is configured its health belongs on the dashboard, and a
PING needs no more than a socket: ``*1\\r\\n$4\\r\\nPING\\r\\n`` → ``+PONG``
(after ``AUTH`` when the URL carries a password).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import trio

__all__ = ("ping_redis",)


def _command(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


async def _reply(stream: trio.abc.Stream) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = await stream.receive_some(512)
        if not chunk:
            raise OSError("Redis closed the connection")
        data += chunk
        if len(data) > 4096:
            raise OSError("Redis answered something unexpected")
    return data


async def ping_redis(url: str) -> str | None:
    """None when Redis answers PING, else why not (wrap in a timeout)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return f"unsupported Redis URL scheme {parts.scheme!r}"
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    try:
        if parts.scheme == "rediss":
            stream: trio.abc.Stream = await trio.open_ssl_over_tcp_stream(host, port)
        else:
            stream = await trio.open_tcp_stream(host, port)
        async with stream:
            if parts.password:
                user = unquote(parts.username) if parts.username else None
                auth = (
                    ("AUTH", user, unquote(parts.password))
                    if user
                    else ("AUTH", unquote(parts.password))
                )
                await stream.send_all(_command(*auth))
                answer = await _reply(stream)
                if not answer.startswith(b"+OK"):
                    return "Redis refused the credentials"
            await stream.send_all(_command("PING"))
            answer = await _reply(stream)
    except (OSError, trio.BrokenResourceError) as exc:
        return f"Redis unreachable: {exc}"
    return None if answer.startswith(b"+PONG") else "Redis did not answer PONG"
