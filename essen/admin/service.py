"""The admin-api service, assembled: hub, actors under a supervisor, REST, one port.

::

    bots ──Socket.IO──▶ [hub] ──Ingest──▶ [ingest] ──Broadcast──▶ [fan-out] ──▶ dashboards
                          │ subscribe/join ◀── questions ──┘  │
    dashboards ──REST──▶ [app] ◀──────────────────────────────┤
                                        rollups, message log ─▶ [store writer] ──▶ SQLite/PostgreSQL
                                        [probes] ── store ping ─▶ [ingest]

Socket.IO answers at ``/socket.io/`` and ``/api/socket.io/`` (WebSockets on
the raw fast path), REST at ``/...`` and ``/api/...`` (one prefix layer), the
dashboard's static files at ``/`` when a build is configured.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import trio

from essen.actors.supervisor import ChildEvent, ChildSpec, Supervisor
from essen.admin import broadcast, cluster, ingest
from essen.admin.aggregate import Aggregator
from essen.admin.app import AdminRoutes, LoginResult, create_admin_app
from essen.admin.broadcast import Broadcast
from essen.admin.feed import RecentFeed
from essen.admin.hub import AdminIdentity, Hub, HubConfig
from essen.admin.ingest import ComponentReport, IngestInbox, ask
from essen.auth.passwords import Passwords
from essen.auth.rate_limit import LoginLimiter
from essen.auth.tokens import TokenSettings
from essen.auth.users import authenticate
from essen.clock import SystemWallClock, WallClock
from essen.errors import AuthError, LoginRefused, StoreUnavailable
from essen.metrics.system import system_stats
from essen.protocol.engine_server import Transport
from essen.realtime import EngineConfig, ServerOptions, SocketIOMount, SocketIOServer
from essen.store.store import Store
from essen.store.writer import RetentionPolicy, StoreItem, StoreWriter, prune_periodically
from essen.web.prefix import StripPrefix
from essen.web.serving import serve_app
from essen.web.static import StaticFiles

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from essen.config import AdminSettings
    from essen.store.rows import AdminUser, MessageLogEntry, Rollup

__all__ = ("AdminHandles", "AdminStore", "TokenRevoked", "run_admin")

log = logging.getLogger("essen.admin")

PROBE_SECONDS = 10.0
#: Logged-out tokens remembered until they expire; beyond this the oldest go first.
MAX_REVOKED = 10_000


class AdminStore(Protocol):
    """What the admin API needs of a store (:class:`essen.store.store.Store` is one;
    the harness uses an in-memory one, so no thread runs under MockClock)."""

    @property
    def backend(self) -> str: ...
    async def get_admin(self, username: str) -> AdminUser | None: ...
    async def create_admin(self, username: str, password_hash: str) -> AdminUser: ...
    async def set_password_hash(self, username: str, password_hash: str) -> bool: ...
    async def append_messages(self, batch: Sequence[MessageLogEntry]) -> None: ...
    async def upsert_rollups(self, rollups: Iterable[Rollup]) -> int: ...
    async def rollups(
        self, since_epoch: float, until_epoch: float, instance: str | None = None
    ) -> list[Rollup]: ...
    async def messages_for_user(self, user: str, limit: int = 50) -> list[MessageLogEntry]: ...
    async def prune_messages(self, before_epoch: float) -> int: ...
    async def ping(self) -> None: ...


class TokenRevoked(AuthError):
    """The token was valid but its holder logged out."""

    reason = "revoked"


class _Auth:
    """Admin login and tokens: argon2 passwords, HS256 JWTs, throttled logins, logout."""

    def __init__(
        self,
        store: AdminStore,
        tokens: TokenSettings,
        wall: WallClock,
        passwords: Passwords | None = None,
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._wall = wall
        self._passwords = passwords or Passwords()
        self._limiter = LoginLimiter()
        #: jti -> exp of tokens logged out before they expired (bounded; expired ones go).
        self._revoked: OrderedDict[str, int] = OrderedDict()
        #: Tells the other admin instances of a logout (set when there are any).
        self.on_revoke: Callable[[str, int], None] | None = None
        #: Drops the live sockets of a revoked token (the hub's).
        self.on_revoked: Callable[[str], None] | None = None

    async def login(self, username: str, password: str, client: str) -> LoginResult:
        try:
            issued = await authenticate(
                self._store,
                self._limiter,
                username,
                password,
                client,
                trio.current_time(),
                tokens=self._tokens,
                now_wall=self._wall.now(),
                passwords=self._passwords,
            )
        except LoginRefused:
            log.info("login refused for an admin account from %s", client)
            raise
        log.info("admin %s logged in", username)
        return LoginResult(issued.token, username, float(issued.claims.exp))

    def verify(self, token: str) -> AdminIdentity:
        claims = self._tokens.verify(token, now_wall=self._wall.now())
        if claims.jti in self._revoked:
            raise TokenRevoked()
        return AdminIdentity(claims.sub, float(claims.exp), claims.jti)

    def revoke(self, token: str) -> None:
        claims = self._tokens.verify(token, now_wall=self._wall.now())
        self.add_revoked(claims.jti, claims.exp)
        if self.on_revoke is not None:
            self.on_revoke(claims.jti, claims.exp)

    def add_revoked(self, jti: str, exp: int) -> None:
        """Refuse ``jti`` until ``exp`` (a logout here or on another admin instance)."""
        now = self._wall.now()
        known = jti in self._revoked
        self._revoked[jti] = exp
        if not known and self.on_revoked is not None:
            self.on_revoked(jti)
        for old, old_exp in list(self._revoked.items()):
            if old_exp < now:
                del self._revoked[old]
        while len(self._revoked) > MAX_REVOKED:
            self._revoked.popitem(last=False)


@dataclass
class AdminHandles:
    """What a running admin API exposes to its starter (CLI, ``essen dev``, harness)."""

    app: Any
    server: SocketIOServer
    hub: Hub
    store: AdminStore
    supervisor: Supervisor
    asgi: Any
    urls: list[str]


async def run_admin(
    settings: AdminSettings,
    *,
    host: str = "0.0.0.0",
    serve: bool = True,
    wall: WallClock | None = None,
    rng: random.Random | None = None,
    passwords: Passwords | None = None,
    store: AdminStore | None = None,
    task_status: trio.TaskStatus[AdminHandles] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the admin API until cancelled; ``task_status`` receives its :class:`AdminHandles`.

    Args:
        store: an already open store (kept open); by default the one
            ``settings.store_url`` names is opened here and closed on exit.

    Raises:
        StoreUnavailable / StoreError: the store cannot be opened at start.
    """
    wall = wall or SystemWallClock()
    serve_with = partial(
        _run,
        settings,
        host=host,
        serve=serve,
        wall=wall,
        rng=rng or random.Random(),
        passwords=passwords,
        task_status=task_status,
    )
    if store is not None:
        await serve_with(store)
        return
    opened = await Store.open(settings.store_url, wall_clock=wall)
    try:
        await serve_with(opened)
    finally:
        with trio.CancelScope(shield=True):
            await opened.close()


async def _run(
    settings: AdminSettings,
    store: AdminStore,
    *,
    host: str,
    serve: bool,
    wall: WallClock,
    rng: random.Random,
    passwords: Passwords | None,
    task_status: trio.TaskStatus[AdminHandles],
) -> None:
    server = SocketIOServer(
        ServerOptions(
            cors_origins=settings.origins,
            engine=EngineConfig(transports=tuple(Transport(t) for t in settings.transports)),
        ),
        rng=rng,
    )
    ingest_send, ingest_receive = trio.open_memory_channel[IngestInbox](10_000)
    fanout_send, fanout_receive = trio.open_memory_channel[Broadcast](10_000)
    store_send, store_receive = trio.open_memory_channel[StoreItem](10_000)
    bus_send, bus_receive = trio.open_memory_channel[cluster.Outgoing](cluster.OUTBOX_SIZE)
    cluster_stats = cluster.ClusterStatistics()
    aggregator = Aggregator(
        stale_after=settings.bot_stale_after, down_after=settings.bot_down_after
    )
    feed = RecentFeed()
    tokens = TokenSettings(
        secret=settings.jwt_secret.get_secret_value(),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=settings.token_ttl,
    )
    auth = _Auth(store, tokens, wall, passwords)
    if settings.redis_url:

        def share_revocation(jti: str, exp: int) -> None:
            try:
                bus_send.send_nowait(cluster.Revocation(jti, exp))
            except trio.WouldBlock:
                log.warning("logout not shared with the other admin instances: outbox full")

        auth.on_revoke = share_revocation

    def report(component: str) -> Any:
        def send(status: Any, reason: str | None) -> None:
            try:
                ingest_send.send_nowait(ComponentReport(component, status, reason))
            except trio.WouldBlock:
                log.warning("health report for %s dropped: ingest inbox full", component)

        return send

    writer = StoreWriter(on_health=report("store"), rng=rng)

    async def snapshot() -> dict[str, Any]:
        result: dict[str, Any] = await ask(ingest_send, "snapshot")
        return result

    async def history(user: str) -> list[dict[str, Any]]:
        live: list[dict[str, Any]] = await ask(ingest_send, "history", user)
        if live:
            return live
        with trio.move_on_after(2):
            stored = await store.messages_for_user(user, 50)
            return [
                {
                    "v": 1,
                    "instance": e.instance,
                    "id": e.id,
                    "user": e.user,
                    "kind": e.kind,
                    "direction": e.direction,
                    "preview": e.preview,
                    "outcome": e.outcome,
                    "at": e.at,
                    "latency_ms": e.latency_ms,
                    "error_code": e.error_code,
                }
                for e in reversed(stored)
            ]
        return []

    async def hours(count: int) -> list[dict[str, Any]]:
        now = wall.now()
        until = (int(now) // 3600 + 1) * 3600
        rows = await store.rollups(until - count * 3600, until)
        merged: dict[int, dict[str, int]] = {}
        for row in rows:
            entry = merged.setdefault(
                row.hour_epoch,
                {"hour_epoch": row.hour_epoch, "received": 0, "answered": 0, "failed": 0},
            )
            entry["received"] += row.received
            entry["answered"] += row.answered
            entry["failed"] += row.failed
        return [merged[hour] for hour in sorted(merged)]

    started = trio.current_time()

    async def details() -> dict[str, Any]:
        health: dict[str, Any] = await ask(ingest_send, "health")
        realtime = server.statistics()
        return {
            **health,
            "admin": {"instance": settings.admin_instance, **system_stats(started=started)},
            "sockets": {
                "rooms": realtime["rooms"].get("/", {}),
                "connected": realtime["sockets"].get("/", 0),
                "sessions": realtime["engine_sessions"],
                # Of the sessions connected now: what slow dashboards lost to
                # their bounded queues, and metrics updates replaced by newer ones.
                "dropped_messages": realtime["dropped_messages"],
                "coalesced_messages": realtime["coalesced_messages"],
            },
            "store": {"backend": store.backend, **_dataclass_dict(writer.statistics())},
            "redis": {
                "configured": bool(settings.redis_url),
                **(_dataclass_dict(cluster_stats) if settings.redis_url else {}),
            },
            "hub": dict(hub.counters),
        }

    hub = Hub(
        server,
        HubConfig(settings.bot_service_secret.get_secret_value()),
        auth.verify,
        ingest_send,
        snapshot,
        history,
        wall,
    )
    auth.on_revoked = hub.token_revoked
    routes = AdminRoutes(auth, partial(ask, ingest_send), hours, details, settings.origins)
    app = create_admin_app(routes)
    # Quart types its ASGI callable with its own TypedDicts; plain ASGI flows at run time.
    inner: Any = app
    if settings.dashboard_dir is not None and settings.dashboard_dir.is_dir():
        inner = StaticFiles(inner, settings.dashboard_dir)
    mount = SocketIOMount(StripPrefix(inner), server, ("/socket.io/", "/api/socket.io/"))

    async def probe_store(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        status_ok: bool | None = None
        while True:
            ok = False
            with trio.move_on_after(3):
                try:
                    await store.ping()
                    ok = True
                except StoreUnavailable as exc:
                    log.warning("store ping failed: %s", exc)
            if ok != status_ok:
                status_ok = ok
                report("store:ping")(
                    "healthy" if ok else "down", None if ok else "the database does not answer"
                )
            await trio.sleep(PROBE_SECONDS)

    def on_child(event: ChildEvent) -> None:
        if event.kind == "crashed":
            report("admin:actors")("degraded", f"{event.child} restarted: {event.error}")
        elif event.kind == "started" and event.restarts:
            report("admin:actors")("healthy", f"{event.child} restarted {event.restarts}x")

    children = [
        ChildSpec(
            "ingest",
            partial(
                ingest.run,
                ingest_receive,
                fanout_send,
                store_send,
                bus=bus_send if settings.redis_url else None,
                admin_instance=settings.admin_instance,
                aggregator=aggregator,
                feed=feed,
                wall=wall,
            ),
        ),
        ChildSpec("fanout", partial(broadcast.run, fanout_receive, server=server)),
        ChildSpec("store-writer", partial(writer.run, store_receive, store=store)),
        ChildSpec(
            "store-retention",
            partial(
                prune_periodically,
                store,
                policy=RetentionPolicy(keep=settings.message_retention_days * 86_400.0),
                wall_clock=wall,
            ),
        ),
        ChildSpec("store-probe", probe_store),
        *(
            [
                ChildSpec(
                    "cluster",
                    partial(
                        cluster.run,
                        bus_receive,
                        ingest_send,
                        config=cluster.ClusterConfig(
                            settings.redis_url,
                            settings.admin_instance,
                            channel=f"{settings.essen_cluster}:fleet",
                            revoked_key=f"{settings.essen_cluster}:revoked",
                        ),
                        on_health=report("redis"),
                        on_revoked=auth.add_revoked,
                        now_wall=wall.now,
                        rng=rng,
                        statistics=cluster_stats,
                    ),
                )
            ]
            if settings.redis_url
            else []
        ),
        ChildSpec("hub", hub.run),
    ]
    supervisor = Supervisor(children, rng=rng, on_event=on_child)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        await nursery.start(supervisor.run)
        urls: list[str] = []
        if serve:
            urls = await nursery.start(
                partial(serve_app, mount, host, settings.port, socketio=mount)
            )
            for url in urls:
                log.info("admin-api %s listening on %s", settings.admin_instance, url)
        task_status.started(AdminHandles(app, server, hub, store, supervisor, mount, urls))


def _dataclass_dict(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in getattr(value, "__slots__", ())}
