"""The harness's trace: what crossed the transports, with Trio time, as JSON lines."""

from __future__ import annotations

import json
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
    """Entries ``{"t", "link", "kind", "detail"}``, times relative to the system's start."""

    t0: float = 0.0
    entries: list[dict[str, Any]] = field(default_factory=list)
    #: Beyond this many entries the oldest are dropped (and counted).
    limit: int = 1_000_000
    dropped: int = 0

    def record(self, link: str, kind: str, detail: str) -> None:
        self.entries.append(
            {
                "t": round(trio.current_time() - self.t0, 6),
                "link": link,
                "kind": kind,
                "detail": detail,
            }
        )
        if len(self.entries) > self.limit:
            del self.entries[: len(self.entries) - self.limit]
            self.dropped += 1

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
