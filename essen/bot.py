"""The facebook-bot service, assembled: channels, actors under a supervisor, the web app.

::

    POST /webhook ──Inbound──▶ [webhook] ──Send API──▶ Facebook
                                  │ observations ──▶ [metrics] ──snapshots──┐
                                  │ MessageProcessed ─▶ feed (SSE) ──────────┤
                                  │                  └─────────────────────▶ [uplink] ──▶ admin API
                                  └ signals ──▶ [health] ──health:changed──┘

Every arrow is a bounded memory channel created here; the actors receive
their ends explicitly and never close an inbox (a restarted actor reads the
same channel).  :func:`run_bot` is what ``essen bot`` runs, what ``essen dev``
runs beside the admin API, and what the harness runs without sockets.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
import trio

from essen.actors import health, metrics, uplink, webhook
from essen.actors.feed import FeedHub
from essen.actors.health import HealthBoard, HealthConfig, Signal
from essen.actors.metrics import MetricsHandle, MetricsInbox
from essen.actors.supervisor import ChildEvent, ChildSpec, Restart, Supervisor
from essen.actors.uplink import UplinkConfig, UplinkItem, UplinkStats
from essen.actors.webhook import WebhookConfig
from essen.clock import SystemWallClock, WallClock
from essen.events import HealthChanged
from essen.messenger.rate_limit import RateLimiter
from essen.messenger.rules import RuleBook, RuleBookFile
from essen.messenger.send_api import SendApiClient
from essen.messenger.send_policy import RetryPolicy, SendOk
from essen.metrics.collector import InboxRejected, MetricsCollector
from essen.metrics.system import system_stats
from essen.realtime.client import ClientState, ClientStatus
from essen.web.bot_app import BotRuntime, Inbound, create_bot_app
from essen.web.serving import serve_app

if TYPE_CHECKING:
    from essen.config import BotSettings
    from essen.events import MessageProcessed
    from essen.messenger.fleet_dedupe import FleetDedupe
    from essen.messenger.webhook import MessengerEvent
    from essen.realtime.transports import NetworkTransports

__all__ = ("BotHandles", "run_bot")

log = logging.getLogger("essen.bot")

RULES_RELOAD_SECONDS = 2.0


@dataclass
class BotHandles:
    """What a running bot exposes to its starter (the CLI, ``essen dev``, the harness)."""

    app: Any
    runtime: BotRuntime
    metrics: MetricsHandle
    uplink_stats: UplinkStats
    supervisor: Supervisor
    urls: list[str] = field(default_factory=list)


async def run_bot(
    settings: BotSettings,
    *,
    host: str = "0.0.0.0",
    serve: bool = True,
    graph_http: httpx.AsyncClient | None = None,
    uplink_network: NetworkTransports | None = None,
    wall: WallClock | None = None,
    rng: random.Random | None = None,
    retry_policy: RetryPolicy | None = None,
    task_status: trio.TaskStatus[BotHandles] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the bot until cancelled.  ``task_status`` receives its :class:`BotHandles`.

    Args:
        serve: listen on ``host:settings.port``; False builds the app without a
            listener (the harness calls it in-process).
        graph_http: the HTTP client for the Graph API (default: a new httpx client).
        uplink_network: the uplink's network (default: the real one).
        wall, rng: injectable for deterministic runs.
    """
    wall = wall or SystemWallClock()
    rng = rng or random.Random()
    started = trio.current_time()
    inbox_send, inbox_receive = trio.open_memory_channel[Inbound](settings.inbox_size)
    metrics_send, metrics_receive = trio.open_memory_channel[MetricsInbox](10_000)
    uplink_send, uplink_receive = trio.open_memory_channel[UplinkItem](2_000)
    health_send, health_receive = trio.open_memory_channel[Signal](256)
    feed: FeedHub[MessageProcessed] = FeedHub()
    board = HealthBoard()
    metrics_handle = MetricsHandle(metrics_send)
    uplink_stats = UplinkStats()
    dropped_feed = 0

    def signal(item: Signal) -> None:
        try:
            health_send.send_nowait(item)
        except trio.WouldBlock:
            log.warning("health signal for %s dropped: health inbox full", item.component)

    def publish(item: MessageProcessed) -> None:
        nonlocal dropped_feed
        feed.publish(item)
        try:
            uplink_send.send_nowait(item)
        except trio.WouldBlock:
            dropped_feed += 1

    def on_uplink_status(status: ClientStatus) -> None:
        match status.state:
            case ClientState.CONNECTED:
                signal(Signal("uplink", "healthy"))
            case ClientState.RECONNECTING:
                signal(Signal("uplink", "degraded", status.reason or "reconnecting"))
            case ClientState.CLOSED:
                signal(Signal("uplink", "down", status.reason or "closed"))
            case _:
                pass

    def current_health() -> list[HealthChanged]:
        return [
            HealthChanged(
                instance=settings.bot_instance,
                component=c.component,
                status=c.status,
                since=c.since,
                reason=c.reason,
            )
            for c in board.components.values()
        ]

    def on_child(event: ChildEvent) -> None:
        if event.kind == "crashed":
            signal(Signal("actors", "degraded", f"{event.child} restarted: {event.error}"))
        elif event.kind == "started" and event.restarts:
            signal(Signal("actors", "healthy", f"{event.child} restarted {event.restarts}x"))

    def on_webhook(events: list[MessengerEvent]) -> None:
        # Distinct events are counted by the webhook actor, after dedupe.
        pass

    def on_rejected(count: int) -> None:
        for _ in range(count):
            metrics_handle.observe(InboxRejected())

    content = RuleBookFile(settings.content_file) if settings.content_file else None
    default_book = RuleBook.load(None) if content is None else None

    def current_rules() -> RuleBook:
        if content is not None:
            return content.book
        assert default_book is not None
        return default_book

    async def reload_rules(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        while content is not None:
            await trio.sleep(RULES_RELOAD_SECONDS)
            result = await trio.to_thread.run_sync(content.reload_if_changed)
            if result.error is not None:
                log.error("content file %s not reloaded: %s", content.path, result.error)
            elif result.status.name == "RELOADED":
                log.info("content file %s reloaded", content.path)

    runtime = BotRuntime(
        settings=settings,
        inbox=inbox_send,
        inbox_size=settings.inbox_size,
        request_metrics=metrics_handle.snapshot,
        system_stats=lambda: dict(system_stats(started=started)),
        on_webhook=on_webhook,
        on_rejected=on_rejected,
        feed=feed,
        health=board,
        started_at=started,
    )
    app = create_bot_app(runtime)
    owned_http = graph_http is None
    http = graph_http or httpx.AsyncClient(timeout=httpx.Timeout(15.0))
    try:
        send_api = SendApiClient(
            http,
            page_token=settings.fb_page_access_token.get_secret_value(),
            graph_url=settings.fb_graph_url,
            version=settings.fb_graph_version,
            policy=retry_policy or RetryPolicy(),
            limiter=RateLimiter(rate=settings.send_api_rate, burst=settings.send_api_burst),
            rng=rng,
        )

        async def check_token(*, task_status: trio.TaskStatus[None]) -> None:
            task_status.started()
            result = await send_api.check_token()
            if isinstance(result, SendOk):
                signal(Signal("graph_api", "healthy"))
            else:
                signal(Signal("graph_api", "degraded", f"token check: {result.outcome_key}"))

        collector = MetricsCollector(settings.bot_instance, wall, start=started)
        webhook_config = WebhookConfig(
            settings.bot_instance,
            settings.pseudonym_key.get_secret_value().encode(),
            max_active_users=settings.workers,
        )
        fleet: FleetDedupe | None = None
        if settings.redis_url:
            # Imported here: a single bot does not load coredis.
            from essen.messenger.fleet_dedupe import FleetDedupe

            fleet = FleetDedupe(
                settings.redis_url,
                cluster=settings.essen_cluster,
                instance=settings.bot_instance,
                ttl=webhook_config.dedupe_ttl,
                signal=signal,
            )
        children = [
            ChildSpec(
                "metrics",
                partial(
                    metrics.run,
                    metrics_receive,
                    uplink_send,
                    collector=collector,
                    interval=settings.metrics_interval,
                ),
            ),
            ChildSpec(
                "health",
                partial(
                    health.run,
                    health_receive,
                    uplink_send,
                    config=HealthConfig(settings.bot_instance),
                    wall=wall,
                    board=board,
                ),
            ),
            ChildSpec(
                "webhook",
                partial(
                    webhook.run,
                    inbox_receive,
                    config=webhook_config,
                    rules=current_rules,
                    send_api=send_api,
                    observe=metrics_handle.observe,
                    publish=publish,
                    signal=signal,
                    wall=wall,
                    claim=fleet.claim if fleet is not None else None,
                ),
            ),
            ChildSpec(
                "uplink",
                partial(
                    uplink.run,
                    uplink_receive,
                    config=UplinkConfig(
                        url=settings.admin_backend_url,
                        secret=settings.bot_service_secret.get_secret_value(),
                        instance=settings.bot_instance,
                        path=settings.admin_socket_path,
                        transports=settings.uplink_transports,
                    ),
                    request_metrics=metrics_handle.snapshot,
                    on_status=on_uplink_status,
                    current_health=current_health,
                    network=uplink_network,
                    rng=rng,
                    stats=uplink_stats,
                ),
            ),
            *([ChildSpec("rules-reload", reload_rules)] if content is not None else []),
            ChildSpec("token-check", check_token, restart=Restart.TEMPORARY),
        ]
        supervisor = Supervisor(children, rng=rng, on_event=on_child)
        handles = BotHandles(app, runtime, metrics_handle, uplink_stats, supervisor)
        async with trio.open_nursery() as nursery:
            if fleet is not None:
                await nursery.start(fleet.run)
            await nursery.start(supervisor.run)
            if serve:
                handles.urls = await nursery.start(partial(serve_app, app, host, settings.port))
                for url in handles.urls:
                    log.info("facebook-bot %s listening on %s", settings.bot_instance, url)
            task_status.started(handles)
    finally:
        if owned_http:
            with trio.CancelScope(shield=True):
                await http.aclose()
