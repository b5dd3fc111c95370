"""Serve an ASGI app with Hypercorn's Trio worker inside the caller's nursery."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

if TYPE_CHECKING:
    from essen.realtime._http import ASGIApp

__all__ = ("hypercorn_config", "serve_app")

log = logging.getLogger("essen.web")


def hypercorn_config(host: str, port: int) -> Config:
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    # Graceful drain on shutdown: a second, then connections are cut.
    config.graceful_timeout = 1.0
    # Engine.IO enforces its own maxPayload; this only stops absurd frames early.
    config.websocket_max_message_size = 16 * 1024 * 1024
    return config


async def serve_app(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until cancelled; ``task_status`` receives the bound URLs.

    Port 0 picks a free port (the URL tells which).
    """
    config = hypercorn_config(host, port)
    await serve(app, config, task_status=task_status)  # type: ignore[arg-type]
