"""The harness's trace: what crossed the transports, with Trio time, as JSON lines."""

from __future__ import annotations

import hashlib
import json
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import trio

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ("Trace", "TracingTransport")

#: Trace details longer than this are cut (with a digest of the whole).
MAX_DETAIL = 400


@dataclass
class Trace:
    """Entries ``{"t", "link", "kind", "detail"}``, times relative to the system's start.

    A detail longer than :data:`MAX_DETAIL` characters (a ``metrics:update``
    frame is several KiB, and one crosses every few seconds) is cut, with its
    length and a digest of the whole, so two traces are still equal only if
    everything that crossed was.
    """

    t0: float = 0.0
    #: Beyond this many entries the oldest are dropped (and counted).
    limit: int = 1_000_000
    entries: deque[dict[str, Any]] = field(init=False)
    dropped: int = 0

    def __post_init__(self) -> None:
        self.entries = deque(maxlen=self.limit)

    def record(self, link: str, kind: str, detail: str) -> None:
        if len(detail) > MAX_DETAIL:
            digest = hashlib.blake2b(detail.encode("utf-8", "surrogatepass"), digest_size=8)
            detail = f"{detail[:MAX_DETAIL]}…[{len(detail)} chars, {digest.hexdigest()}]"
        if len(self.entries) == self.limit:
            self.dropped += 1
        self.entries.append(
            {
                "t": round(trio.current_time() - self.t0, 6),
                "link": link,
                "kind": kind,
                "detail": detail,
            }
        )

    def recorder(self, link: str) -> Any:
        return lambda kind, detail: self.record(link, kind, detail)

    def write(self, path: Path) -> None:
        with path.open("w", encoding="utf-8") as out:
            for entry in self.entries:
                out.write(json.dumps(entry, ensure_ascii=False) + "\n")


class TracingTransport(httpx.AsyncBaseTransport):
    """An httpx transport that records each request and response in the trace."""

    def __init__(self, inner: httpx.AsyncBaseTransport, trace: Trace, link: str) -> None:
        self._inner = inner
        self._trace = trace
        self._link = link

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = request.content if request.content else b""
        path = request.url.path
        self._trace.record(self._link, "http>", f"{request.method} {path} {body[:300]!r}")
        response = await self._inner.handle_async_request(request)
        await response.aread()
        self._trace.record(
            self._link,
            "http<",
            f"{request.method} {path} {response.status_code} {response.content[:300]!r}",
        )
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
