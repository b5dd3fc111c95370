"""The webhook actor: every accepted Messenger event handled once, in per-user order.

Events arrive in the order the webhook accepted them.  Duplicates (Facebook
redelivers) are dropped here, in arrival order, against a bounded, expiring
cache.  Then a keyed worker pool takes over: one task per user with pending
events, at most ``max_active_users`` at once, each draining its user's queue
in order.  So one user's messages are answered in the order sent, different
users are served concurrently, and when every slot is busy the dispatcher
stops reading: the inbox fills and the webhook answers 503, which makes
Facebook retry instead of losing anything.

Each event ends as one ``MessageProcessed`` (inbound, with its outcome and
latency) and, when answered, one outbound; both carry a pseudonymous user id
and sanitized text only.  A rejected page token (Graph error 190) turns the
``graph_api`` component degraded until a send succeeds again.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from essen.actors.health import Signal
from essen.events import HealthStatus, MessageOutcome, MessageProcessed
from essen.messenger.dedupe import DedupeCache
from essen.messenger.rules import ButtonsReply, Handoff, NoReply, RuleBook, TextReply
from essen.messenger.send_policy import SendFailed, SendOk, SendResult
from essen.messenger.webhook import Echo
from essen.metrics.collector import (
    Duplicate,
    MessageHandled,
    Observation,
    SendApiCall,
    WebhookReceived,
)
from essen.metrics.collector import Handoff as HandoffObserved
from essen.pseudonym import pseudonymize
from essen.sanitize import sanitize_text

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from essen.clock import WallClock
    from essen.messenger.send_api import SendApiClient
    from essen.web.bot_app import Inbound

__all__ = ("WebhookConfig", "run")

log = logging.getLogger("essen.webhook")

#: The Send API error rate is judged over this many recent calls (at least ERROR_MIN_CALLS).
ERROR_WINDOW = 50
ERROR_MIN_CALLS = 10

_ANSWERABLE = frozenset({"text", "quick_reply", "attachment", "postback", "referral", "optin"})


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    instance: str
    pseudonym_key: bytes
    max_active_users: int = 16
    #: Events waiting in per-user queues, all users together.
    max_pending: int = 2000
    dedupe_entries: int = 50_000
    dedupe_ttl: float = 6 * 3600.0
    #: How long "talk to a person" pauses the bot for that user.
    handoff_pause: float = 30 * 60.0
    max_paused_users: int = 10_000


def _event_id(identity: str) -> str:
    """The id an event is published under: a hash, so no message id leaves the bot."""
    return hashlib.blake2b(identity.encode(), digest_size=12).hexdigest()


class _Paused:
    """Users handed to a person, each until a deadline (bounded; oldest forgotten first)."""

    def __init__(self, limit: int) -> None:
        self._until: OrderedDict[str, float] = OrderedDict()
        self._limit = limit

    def pause(self, user: str, until: float) -> None:
        self._until[user] = until
        self._until.move_to_end(user)
        while len(self._until) > self._limit:
            self._until.popitem(last=False)

    def resume(self, user: str) -> None:
        self._until.pop(user, None)

    def paused(self, user: str, now: float) -> bool:
        until = self._until.get(user)
        if until is None:
            return False
        if now >= until:
            del self._until[user]
            return False
        return True


class _Handler:
    def __init__(
        self,
        *,
        config: WebhookConfig,
        rules: Callable[[], RuleBook],
        send_api: SendApiClient,
        observe: Callable[[Observation], None],
        publish: Callable[[MessageProcessed], None],
        signal: Callable[[Signal], None],
        wall: WallClock,
    ) -> None:
        self.config = config
        self.rules = rules
        self.send_api = send_api
        self.observe = observe
        self.publish = publish
        self.signal = signal
        self.wall = wall
        self.paused = _Paused(config.max_paused_users)
        self.token_rejected = False
        self.recent: deque[bool] = deque(maxlen=ERROR_WINDOW)
        self.graph_status: HealthStatus = "healthy"

    def _count_send(self, result: SendResult) -> None:
        self.observe(SendApiCall(result.outcome_key, result.elapsed * 1000))
        if isinstance(result, SendFailed) and result.token_invalid:
            self.token_rejected = True
        elif isinstance(result, SendOk):
            self.token_rejected = False
        self.recent.append(isinstance(result, SendFailed))
        self._report_graph_health()

    def _report_graph_health(self) -> None:
        """``graph_api`` is degraded while the token is rejected or most recent sends fail.

        The error rate is taken over the last :data:`ERROR_WINDOW` calls, with
        hysteresis (degraded at half failing, healthy again below a fifth) so a
        flapping Graph API does not flood the admins with transitions.
        """
        failures = sum(self.recent)
        rate = failures / len(self.recent) if self.recent else 0.0
        status: HealthStatus
        reason: str | None
        if self.token_rejected:
            status, reason = "degraded", "page access token rejected (190)"
        elif len(self.recent) >= ERROR_MIN_CALLS and rate >= 0.5:
            status, reason = "degraded", f"Send API error rate {rate:.0%}"
        elif self.graph_status == "degraded" and rate >= 0.2:
            return  # not recovered enough yet
        else:
            status, reason = "healthy", None
        if status != self.graph_status:
            self.graph_status = status
            self.signal(Signal("graph_api", status, reason))

    def fail(self, item: Inbound) -> None:
        """Count and publish an event whose handling crashed: it still ends as one event."""
        event = item.event
        psid = event.user_id
        user = pseudonymize(psid, self.config.pseudonym_key) if psid else "u_page"
        self.observe(MessageHandled(event.kind, "failed", user, None))
        self.publish(
            MessageProcessed(
                instance=self.config.instance,
                id=_event_id(event.identity),
                user=user,
                kind=event.kind,
                direction="in",
                preview=event.preview(),
                outcome="failed",
                at=self.wall.now(),
            )
        )

    async def handle(self, item: Inbound) -> None:
        event = item.event
        psid = event.user_id
        user = pseudonymize(psid, self.config.pseudonym_key) if psid else "u_page"
        kind = event.kind
        now = trio.current_time()
        reply = self.rules().reply_for(event)
        outcome: MessageOutcome
        error_code: int | None = None
        answer_text: str | None = None
        if isinstance(event, Echo) or not psid:
            outcome = "ignored"  # our own echo, or an item with no one to answer
        elif kind in _ANSWERABLE and self.paused.paused(psid, now):
            outcome = "paused"
        else:
            match reply:
                case NoReply():
                    outcome = "counted"
                case TextReply() | ButtonsReply() | Handoff():
                    # Courtesies, sent only while the page's rate budget has room.
                    for action in (self.send_api.mark_seen, self.send_api.typing_on):
                        if (courtesy := await action(psid, if_idle=True)) is not None:
                            self._count_send(courtesy)
                    result = await self.send_api.send_message(psid, reply.to_message())
                    self._count_send(result)
                    if isinstance(result, SendOk):
                        outcome = "handoff" if isinstance(reply, Handoff) else "answered"
                        answer_text = reply.text
                    else:
                        outcome, error_code = "failed", result.code
                        log.warning(
                            "answer to %s failed: %s after %d attempts",
                            user,
                            result.outcome_key,
                            result.attempts,
                        )
                    if isinstance(reply, Handoff):
                        self.paused.pause(psid, now + self.config.handoff_pause)
                        self.observe(HandoffObserved())
        latency_ms = (trio.current_time() - item.received_at) * 1000
        answered = outcome in ("answered", "handoff")
        self.observe(MessageHandled(kind, outcome, user, latency_ms if answered else None))
        at = self.wall.now()
        event_id = _event_id(event.identity)
        self.publish(
            MessageProcessed(
                instance=self.config.instance,
                id=event_id,
                user=user,
                kind=kind,
                direction="in",
                preview=event.preview(),
                outcome=outcome,
                at=at,
                latency_ms=round(latency_ms, 3) if answered else None,
                error_code=error_code,
            )
        )
        if answer_text is not None:
            self.publish(
                MessageProcessed(
                    instance=self.config.instance,
                    id=f"{event_id}-r",
                    user=user,
                    kind=kind,
                    direction="out",
                    preview=sanitize_text(answer_text),
                    outcome=outcome,
                    at=at,
                    latency_ms=round(latency_ms, 3),
                )
            )


async def run(
    inbox: trio.MemoryReceiveChannel[Inbound],
    *,
    config: WebhookConfig,
    rules: Callable[[], RuleBook],
    send_api: SendApiClient,
    observe: Callable[[Observation], None],
    publish: Callable[[MessageProcessed], None],
    signal: Callable[[Signal], None],
    wall: WallClock,
    claim: Callable[[str], Awaitable[bool]] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Handle the inbox until cancelled or it closes (then finish what is pending).

    ``claim``, with several bot instances, is asked about every event new to
    this instance: False means another instance has it (see
    :mod:`essen.messenger.fleet_dedupe`).
    """
    handler = _Handler(
        config=config,
        rules=rules,
        send_api=send_api,
        observe=observe,
        publish=publish,
        signal=signal,
        wall=wall,
    )
    dedupe = DedupeCache(config.dedupe_entries, config.dedupe_ttl)
    queues: dict[str, deque[Inbound]] = {}
    slots = trio.Semaphore(config.max_active_users)
    room = trio.Semaphore(config.max_pending)

    async def serve_user(user: str) -> None:
        queue = queues[user]
        try:
            while queue:
                item = queue.popleft()
                try:
                    await handler.handle(item)
                except Exception:
                    # One event's failure must not stop this user's queue, let
                    # alone the webhook: it is logged and counted as failed.
                    log.exception("handling a %s event failed", item.event.kind)
                    handler.fail(item)
                finally:
                    room.release()
        finally:
            del queues[user]
            slots.release()

    async with trio.open_nursery() as nursery:
        task_status.started()
        # The inbox belongs to the assembly, not to this run: a restarted actor
        # reads the same channel, so nothing queued is lost to a crash.
        async for item in inbox:
            if dedupe.seen(item.event.identity, trio.current_time()) or (
                claim is not None and not await claim(item.event.identity)
            ):
                handler.observe(Duplicate())
                continue
            # Counted here, after dedupe: "received" means distinct events,
            # so a redelivery storm does not inflate the dashboard's rates.
            handler.observe(WebhookReceived({item.event.kind: 1}))
            await room.acquire()
            user = item.event.user_id
            queue = queues.get(user)
            if queue is not None:
                queue.append(item)
                continue
            await slots.acquire()
            queues[user] = deque((item,))
            nursery.start_soon(serve_user, user)
