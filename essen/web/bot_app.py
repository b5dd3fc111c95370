"""The facebook-bot's HTTP face: the Messenger webhook and the debug endpoints.

The routes do no conversation work.  ``POST /webhook`` verifies, parses and
puts the events in the bounded inbox, then answers at once: 200 when every
event was accepted, 503 (so Facebook retries the whole POST, and dedupe drops
what was already taken) when the inbox cannot take them all, never 200 and drop.
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio
from quart import Response, jsonify, request
from quart_trio import QuartTrio

from essen.errors import MalformedWebhook
from essen.messenger.webhook import parse_webhook, verify_signature, verify_subscription

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from essen.actors.feed import FeedHub
    from essen.actors.health import HealthBoard
    from essen.config import BotSettings
    from essen.events import MessageProcessed, MetricsSnapshot
    from essen.messenger.webhook import MessengerEvent

__all__ = ("BotRuntime", "Inbound", "create_bot_app")

log = logging.getLogger("essen.bot")

#: Messenger batches at most 1000 items per POST.
MAX_EVENTS_PER_POST = 1000
KEEPALIVE_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class Inbound:
    """One Messenger event accepted by the webhook, stamped on the Trio clock."""

    event: MessengerEvent
    received_at: float


@dataclass
class BotRuntime:
    """What the routes need from the running bot (its actors' ends)."""

    settings: BotSettings
    inbox: trio.MemorySendChannel[Inbound]
    inbox_size: int
    request_metrics: Callable[[], Awaitable[MetricsSnapshot]]
    system_stats: Callable[[], dict[str, Any]]
    on_webhook: Callable[[list[MessengerEvent]], None]
    on_rejected: Callable[[int], None]
    feed: FeedHub[MessageProcessed]
    health: HealthBoard
    started_at: float


def _authorized(runtime: BotRuntime) -> bool:
    header = request.headers.get("Authorization", "")
    expected = runtime.settings.debug_token.get_secret_value()
    if not expected or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].encode(), expected.encode())


def _unauthorized() -> Response:
    response = jsonify({"error": "unauthorized", "message": "a valid bearer token is required"})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="essen-debug"'
    return response


def create_bot_app(runtime: BotRuntime) -> QuartTrio:
    app = QuartTrio("essen-bot")
    app.config["MAX_CONTENT_LENGTH"] = runtime.settings.webhook_max_body
    settings = runtime.settings

    @app.get("/webhook")
    async def subscribe() -> Any:
        challenge = verify_subscription(
            request.args.get("hub.mode"),
            request.args.get("hub.verify_token"),
            request.args.get("hub.challenge"),
            settings.fb_verify_token.get_secret_value(),
        )
        if challenge is None:
            log.warning("webhook verification refused")
            return "verification failed", 403
        return challenge, 200, {"Content-Type": "text/plain; charset=utf-8"}

    @app.post("/webhook")
    async def receive() -> Any:
        raw = await request.get_data(cache=False, as_text=False)
        body = raw if isinstance(raw, bytes) else raw.encode()
        signature = request.headers.get("X-Hub-Signature-256")
        if not verify_signature(body, signature, settings.fb_app_secret.get_secret_value()):
            log.warning("webhook POST with a missing or wrong signature refused")
            return jsonify({"error": "invalid signature"}), 403
        try:
            events = parse_webhook(body, max_events=MAX_EVENTS_PER_POST)
        except MalformedWebhook as exc:
            return jsonify({"error": "malformed webhook", "message": str(exc)}), 400
        free = runtime.inbox_size - runtime.inbox.statistics().current_buffer_used
        if len(events) > free:
            # All or nothing: no await between this check and the sends below.
            runtime.on_rejected(len(events))
            log.warning("inbox full: refused %d events with 503 (Facebook retries)", len(events))
            return jsonify({"error": "busy"}), 503, {"Retry-After": "1"}
        now = trio.current_time()
        for event in events:
            runtime.inbox.send_nowait(Inbound(event, now))
        runtime.on_webhook(events)
        return "EVENT_RECEIVED", 200

    @app.get("/debug/health-quick")
    async def health_quick() -> Any:
        board = runtime.health
        status = board.overall
        body = {
            "status": status,
            "instance": settings.bot_instance,
            "uptime_s": round(trio.current_time() - runtime.started_at, 1),
        }
        return jsonify(body), 503 if status == "down" else 200

    @app.get("/debug/metrics")
    async def metrics() -> Any:
        if not _authorized(runtime):
            return _unauthorized()
        with trio.move_on_after(5):
            snapshot = await runtime.request_metrics()
            return Response(snapshot.model_dump_json(), mimetype="application/json")
        return jsonify({"error": "metrics unavailable"}), 503

    @app.get("/debug/system-stats")
    async def system_stats() -> Any:
        if not _authorized(runtime):
            return _unauthorized()
        stats = dict(runtime.system_stats())
        stats["event_loop_lag_ms"] = round(runtime.health.loop_lag * 1000, 3)
        stats["health"] = {
            name: component.model_dump(mode="json")
            for name, component in runtime.health.components.items()
        }
        return jsonify(stats)

    @app.get("/debug/message-stream")
    async def message_stream() -> Any:
        if not _authorized(runtime):
            return _unauthorized()
        try:
            channel = runtime.feed.subscribe()
        except OverflowError:
            return jsonify({"error": "too many stream subscribers"}), 503

        async def stream() -> AsyncIterator[bytes]:
            yield b": connected\n\n"
            async with channel:
                while True:
                    item: MessageProcessed | None = None
                    with trio.move_on_after(KEEPALIVE_SECONDS):
                        try:
                            item = await channel.receive()
                        except trio.EndOfChannel:
                            # Dropped for falling behind: end the stream; the
                            # client reconnects and resumes from live.
                            return
                    if item is None:
                        yield b": keep-alive\n\n"
                    else:
                        data = json.dumps(item.model_dump(mode="json"), separators=(",", ":"))
                        yield f"event: message:processed\ndata: {data}\n\n".encode()

        response = Response(stream(), mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Accel-Buffering"] = "no"
        response.timeout = None
        return response

    return app
