"""The admin API's Socket.IO hub: who may connect, who may say what, and where it goes.

Auth happens once, on CONNECT, in :meth:`Hub.authenticate`:

* a bot sends ``{service: "bot", secret, instance}``; the secret is compared in
  constant time; it joins room ``services``;
* an admin (a dashboard) sends ``{token}``, a JWT; it joins ``admins``, and is
  disconnected with a reason when the token expires;
* anything else is refused with a connect error that says why (no token,
  expired, bad signature, unknown service...); the reason is logged, never
  the secret.

Only bots may send ``metrics:update``, ``message:processed`` and
``health:changed``; only admins may ``subscribe`` and join conversations.
Every payload from a bot is validated against the contracts in
:mod:`essen.events`: an invalid one gets an error ack, is counted and logged,
and never reaches the dashboards.
"""

from __future__ import annotations

import hmac
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import trio
from pydantic import ValidationError

from essen.errors import AuthError, ConnectionRefused
from essen.events import HealthChanged, MessageBatch, MetricsSnapshot

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from essen.clock import WallClock
    from essen.realtime import Socket, SocketIOServer

__all__ = ("AdminIdentity", "Hub", "HubConfig", "Ingest")

log = logging.getLogger("essen.admin")

_USER = re.compile(r"^u_[a-z0-9]{4,30}$")
_INSTANCE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
#: The feed's log line is written at most this often per bot (with a count).
FEED_LOG_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class AdminIdentity:
    username: str
    #: Wall-clock epoch seconds when the token expires.
    expires_at: float
    #: The token's id (logout revokes it, here or on another admin instance).
    token_id: str = ""


BotPayload = TypeVar("BotPayload", MetricsSnapshot, MessageBatch, HealthChanged)


@dataclass(frozen=True, slots=True)
class Ingest:
    """A validated payload from a bot instance, stamped on the Trio clock."""

    instance: str
    item: MetricsSnapshot | MessageBatch | HealthChanged
    at: float
    #: The admin instance the bot is connected to, when it is another one
    #: (the item came over the cluster bus); ``None``: a bot of this instance.
    origin: str | None = None


@dataclass(frozen=True, slots=True)
class HubConfig:
    service_secret: str


@dataclass
class Hub:
    server: SocketIOServer
    config: HubConfig
    #: Raises :class:`~essen.errors.AuthError` (its ``reason`` goes to the client).
    verify_token: Callable[[str], AdminIdentity]
    ingest: trio.MemorySendChannel[Ingest]
    #: What a dashboard gets in the ``subscribe`` ack (metrics, health, last 50 feed items).
    snapshot: Callable[[], Awaitable[dict[str, Any]]]
    #: A user's sanitized history for ``conversation:join``.
    history: Callable[[str], Awaitable[list[dict[str, Any]]]]
    wall: WallClock
    counters: dict[str, int] = field(
        default_factory=lambda: {
            # Sockets connected now, and connections accepted since start.
            "bots_connected": 0,
            "admins_connected": 0,
            "bot_connections": 0,
            "admin_connections": 0,
            "refused": 0,
            "invalid_payloads": 0,
            "forbidden": 0,
            "expired_disconnects": 0,
            "revoked_disconnects": 0,
        }
    )
    _nursery: trio.Nursery | None = None
    _expiry: dict[str, trio.CancelScope] = field(default_factory=dict)
    #: Live admin sockets by token id, to drop them when the token is revoked.
    _by_token: dict[str, dict[str, Socket]] = field(default_factory=dict)
    _feed_log: dict[str, tuple[float, int]] = field(default_factory=dict)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Install the handlers and own the token-expiry timers until cancelled."""
        self._install()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    # -- connect ------------------------------------------------------------

    async def authenticate(self, socket: Socket, auth: dict[str, Any] | None) -> None:
        try:
            self._authenticate(socket, auth)
        except ConnectionRefused as refusal:
            self.counters["refused"] += 1
            client = socket.handshake.client
            log.warning(
                "refused connection from %s: %s", client[0] if client else "?", refusal.message
            )
            raise

    def _authenticate(self, socket: Socket, auth: dict[str, Any] | None) -> None:
        if not auth:
            raise ConnectionRefused("missing", {"reason": "missing"})
        if "service" in auth:
            if auth.get("service") != "bot":
                raise ConnectionRefused("unknown service", {"reason": "unknown_service"})
            secret = auth.get("secret")
            instance = auth.get("instance")
            expected = self.config.service_secret.encode()
            if not isinstance(secret, str) or not hmac.compare_digest(secret.encode(), expected):
                raise ConnectionRefused("invalid service secret", {"reason": "bad_secret"})
            if not isinstance(instance, str) or not _INSTANCE.match(instance):
                raise ConnectionRefused("invalid instance name", {"reason": "bad_instance"})
            socket.data.update(role="bot", instance=instance)
            socket.join("services")
            self.counters["bots_connected"] += 1
            self.counters["bot_connections"] += 1
            return
        token = auth.get("token")
        if not isinstance(token, str) or not token:
            raise ConnectionRefused("missing", {"reason": "missing"})
        try:
            identity = self.verify_token(token)
        except AuthError as rejected:
            raise ConnectionRefused(rejected.reason, {"reason": rejected.reason}) from None
        socket.data.update(
            role="admin",
            user=identity.username,
            expires_at=identity.expires_at,
            token_id=identity.token_id,
        )
        socket.join("admins")
        self.counters["admins_connected"] += 1
        self.counters["admin_connections"] += 1
        self._by_token.setdefault(identity.token_id, {})[socket.sid] = socket
        self._arm_expiry(socket, identity.expires_at)

    def token_revoked(self, token_id: str) -> None:
        """Drop the live sockets of a logged-out token (logout here or elsewhere)."""
        sockets = self._by_token.pop(token_id, {})
        if not sockets or self._nursery is None:
            return
        for socket in sockets.values():
            scope = self._expiry.pop(socket.sid, None)
            if scope is not None:
                scope.cancel()
            self.counters["revoked_disconnects"] += 1
            log.info("admin %s: token revoked, disconnecting", socket.data.get("user"))
            socket.emit("auth:expired", {"reason": "token revoked"})
            self._nursery.start_soon(socket.disconnect)

    def _arm_expiry(self, socket: Socket, expires_at: float) -> None:
        if self._nursery is None:
            return
        scope = trio.CancelScope()
        self._expiry[socket.sid] = scope

        async def expire() -> None:
            with scope:
                await trio.sleep(max(0.0, expires_at - self.wall.now()))
                if socket.connected:
                    self.counters["expired_disconnects"] += 1
                    log.info("admin %s: token expired, disconnecting", socket.data.get("user"))
                    socket.emit("auth:expired", {"reason": "token expired"})
                    await socket.disconnect()

        self._nursery.start_soon(expire)

    async def on_disconnect(self, socket: Socket, reason: str) -> None:
        scope = self._expiry.pop(socket.sid, None)
        if scope is not None:
            scope.cancel()
        token_id = socket.data.get("token_id")
        if token_id is not None:
            same = self._by_token.get(token_id, {})
            same.pop(socket.sid, None)
            if not same:
                self._by_token.pop(token_id, None)
        role = socket.data.get("role")
        if role in ("bot", "admin"):
            self.counters[f"{role}s_connected"] -= 1
        if role == "bot":
            log.info("bot %s disconnected: %s", socket.data.get("instance"), reason)

    # -- events from bots ---------------------------------------------------

    def _bot(self, socket: Socket) -> str | None:
        if socket.data.get("role") != "bot":
            self.counters["forbidden"] += 1
            return None
        return str(socket.data["instance"])

    def _invalid(self, socket: Socket, event: str, error: str) -> dict[str, Any]:
        self.counters["invalid_payloads"] += 1
        log.warning("invalid %s from %s: %s", event, socket.data.get("instance", "?"), error)
        return {"ok": False, "error": error}

    async def _accept(
        self, socket: Socket, event: str, model: type[BotPayload], payload: Any
    ) -> BotPayload | dict[str, Any]:
        """Validate a bot's payload; the error ack to send back when it is refused."""
        instance = self._bot(socket)
        if instance is None:
            return {"ok": False, "error": f"forbidden: only bots send {event}"}
        try:
            item = model.model_validate(payload)
        except ValidationError as exc:
            return self._invalid(socket, event, _summary(exc))
        events = item.events if isinstance(item, MessageBatch) else ()
        if item.instance != instance or any(e.instance != instance for e in events):
            return self._invalid(socket, event, "instance does not match the socket")
        await self.ingest.send(Ingest(instance, item, trio.current_time()))
        return item

    async def on_metrics(self, socket: Socket, payload: Any = None) -> dict[str, Any]:
        snapshot = await self._accept(socket, "metrics:update", MetricsSnapshot, payload)
        if isinstance(snapshot, dict):
            return snapshot
        log.info("📊 Received metrics:update from bot %s", snapshot.instance)
        return {"ok": True}

    async def on_messages(self, socket: Socket, payload: Any = None) -> dict[str, Any]:
        batch = await self._accept(socket, "message:processed", MessageBatch, payload)
        if isinstance(batch, dict):
            return batch
        self._log_feed(batch.instance, len(batch.events))
        return {"ok": True, "accepted": len(batch.events)}

    def _log_feed(self, instance: str, count: int) -> None:
        now = trio.current_time()
        last, pending = self._feed_log.get(instance, (-FEED_LOG_SECONDS, 0))
        pending += count
        if now - last >= FEED_LOG_SECONDS:
            log.info("💬 Received message:processed from bot %s (%d events)", instance, pending)
            self._feed_log[instance] = (now, 0)
        else:
            self._feed_log[instance] = (last, pending)

    async def on_health(self, socket: Socket, payload: Any = None) -> dict[str, Any]:
        change = await self._accept(socket, "health:changed", HealthChanged, payload)
        return change if isinstance(change, dict) else {"ok": True}

    # -- events from admins -------------------------------------------------

    async def on_subscribe(self, socket: Socket, topic: Any = None) -> dict[str, Any]:
        if socket.data.get("role") != "admin":
            self.counters["forbidden"] += 1
            return {"ok": False, "error": "forbidden: only admins subscribe"}
        if topic != "monitoring":
            return {"ok": False, "error": f"unknown topic {topic!r}"}
        socket.join("monitoring")
        return {"ok": True, "snapshot": await self.snapshot()}

    async def on_join(self, socket: Socket, user: Any = None) -> dict[str, Any]:
        if socket.data.get("role") != "admin":
            self.counters["forbidden"] += 1
            return {"ok": False, "error": "forbidden: only admins join conversations"}
        if not isinstance(user, str) or not _USER.match(user):
            return {"ok": False, "error": "invalid user id"}
        socket.join(f"user-{user}")
        return {"ok": True, "user": user, "history": await self.history(user)}

    async def on_leave(self, socket: Socket, user: Any = None) -> dict[str, Any]:
        if isinstance(user, str) and _USER.match(user):
            socket.leave(f"user-{user}")
        return {"ok": True}

    def _install(self) -> None:
        server = self.server
        server.use(self.authenticate)
        server.on_disconnect(self.on_disconnect)
        server.on("metrics:update")(self.on_metrics)
        server.on("message:processed")(self.on_messages)
        server.on("health:changed")(self.on_health)
        server.on("subscribe")(self.on_subscribe)
        server.on("conversation:join")(self.on_join)
        server.on("conversation:leave")(self.on_leave)


def _summary(error: ValidationError) -> str:
    """A short, payload-free description of what failed validation."""
    errors = error.errors(include_input=False)
    if not errors:
        return "invalid payload"
    where = ".".join(str(part) for part in errors[0]["loc"]) or "payload"
    return f"{error.error_count()} error(s); first at {where}: {errors[0]['msg']}"
