"""The admin API's REST face (Quart-Trio).

Routes are declared once, without ``/api``; :class:`essen.web.prefix.StripPrefix`
makes them answer at ``/api/...`` too (App Platform's ingress strips the
prefix, local runs do not).  Everything under ``/monitoring`` needs an admin
bearer token; ``/health`` is the platform's public liveness check.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import trio
from quart import Response, jsonify, request
from quart_trio import QuartTrio

from essen.errors import AuthError, LoginThrottled

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from essen.admin.hub import AdminIdentity

__all__ = ("AdminAuth", "AdminRoutes", "LoginResult", "create_admin_app")

log = logging.getLogger("essen.admin")

RANGES = {"24h": 24, "7d": 24 * 7}


@dataclass(frozen=True, slots=True)
class LoginResult:
    token: str
    username: str
    expires_at: float


class AdminAuth(Protocol):
    """Raises :class:`~essen.errors.AuthError` subclasses; their ``reason`` is the answer."""

    async def login(self, username: str, password: str, client: str) -> LoginResult: ...
    def verify(self, token: str) -> AdminIdentity: ...
    def revoke(self, token: str) -> None: ...


@dataclass
class AdminRoutes:
    """What the routes need from the running admin API."""

    auth: AdminAuth
    ask: Callable[[str], Awaitable[Any]]
    history: Callable[[int], Awaitable[list[dict[str, Any]]]]
    details: Callable[[], Awaitable[dict[str, Any]]]
    cors_origins: tuple[str, ...]


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:] if header.startswith("Bearer ") else None


def _error(status: int, reason: str, **extra: Any) -> Response:
    response = jsonify({"error": reason, **extra})
    response.status_code = status
    return response


def create_admin_app(routes: AdminRoutes) -> QuartTrio:
    app = QuartTrio("essen-admin")
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024

    def identity() -> AdminIdentity | Response:
        token = _bearer()
        if token is None:
            return _error(401, "missing")
        try:
            return routes.auth.verify(token)
        except AuthError as rejected:
            return _error(401, rejected.reason)

    @app.before_request
    async def preflight() -> Response | None:
        if request.method == "OPTIONS":
            return Response("", status=204)
        return None

    @app.after_request
    async def cors(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin and ("*" in routes.cors_origins or origin.rstrip("/") in routes.cors_origins):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Vary"] = "Origin"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.get("/health")
    async def health() -> Any:
        return jsonify({"status": "ok"})

    @app.post("/auth/login")
    async def login() -> Any:
        body = await request.get_json(silent=True)
        if not isinstance(body, dict):
            return _error(400, "invalid_request", message="a JSON object is required")
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            return _error(400, "invalid_request", message="username and password are required")
        client = request.remote_addr or "unknown"
        try:
            result = await routes.auth.login(username, password, client)
        except LoginThrottled as throttled:
            # Rounded up: a client that waits what it is told is never refused again.
            wait = max(1, math.ceil(throttled.retry_after))
            response = _error(429, throttled.reason, retry_after=wait)
            response.headers["Retry-After"] = str(wait)
            return response
        except AuthError as refused:
            return _error(401, refused.reason)
        return jsonify(
            {"token": result.token, "username": result.username, "expires_at": result.expires_at}
        )

    @app.get("/auth/me")
    async def me() -> Any:
        who = identity()
        if isinstance(who, Response):
            return who
        return jsonify({"username": who.username, "expires_at": who.expires_at})

    @app.post("/auth/logout")
    async def logout() -> Any:
        token = _bearer()
        who = identity()
        if isinstance(who, Response) or token is None:
            return who if isinstance(who, Response) else _error(401, "missing")
        routes.auth.revoke(token)
        return Response("", status=204)

    @app.get("/monitoring/metrics")
    async def metrics() -> Any:
        who = identity()
        if isinstance(who, Response):
            return who
        wanted = request.args.get("range")
        with trio.move_on_after(5):
            if wanted is None:
                return jsonify(await routes.ask("metrics"))
            if wanted not in RANGES:
                return _error(400, "invalid_range", allowed=sorted(RANGES))
            return jsonify({"range": wanted, "hours": await routes.history(RANGES[wanted])})
        return _error(503, "unavailable")

    @app.get("/monitoring/health-comprehensive")
    async def health_comprehensive() -> Any:
        who = identity()
        if isinstance(who, Response):
            return who
        with trio.move_on_after(5):
            return jsonify(await routes.details())
        return _error(503, "unavailable")

    return app
