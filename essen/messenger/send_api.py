"""The Messenger Send API client: replies, ``mark_seen`` and ``typing_on``.

Every call ends in a typed :data:`~essen.messenger.send_policy.SendResult`
rather than an exception, because the caller's job with a failure is to count
it by category and code (and to turn health degraded on a rejected token),
not to unwind.  Only cancellation and programming errors propagate.

The decisions (what an answer means, whether to try again, when) are the pure
functions of :mod:`essen.messenger.send_policy`; this module makes the
requests, waits for the page's :class:`~essen.messenger.rate_limit.RateLimiter`
before each one, and sleeps between them on the Trio clock.

The page token travels as the ``access_token`` query parameter, as the Graph
API documents.  It never reaches a log line or a result: details pass through
:func:`~essen.messenger.send_policy.redact`, and a logging filter redacts the
URL that httpx itself logs for every request.
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final, assert_never

import httpx
import trio

from essen.messenger.send_policy import (
    Failure,
    FailureCategory,
    GiveUp,
    RetryAt,
    RetryPolicy,
    RetrySchedule,
    SendFailed,
    SendOk,
    SendResult,
    StopReason,
    Success,
    classify,
    redact,
)
from essen.realtime.backoff import Backoff

if TYPE_CHECKING:
    import random
    from collections.abc import Mapping

    from essen.messenger.rate_limit import RateLimiter

__all__ = (
    "DEFAULT_GRAPH_URL",
    "DEFAULT_VERSION",
    "MessagingType",
    "SendApiClient",
    "SendApiStatistics",
    "SenderAction",
    "install_log_redaction",
)

DEFAULT_GRAPH_URL: Final = "https://graph.facebook.com"
DEFAULT_VERSION: Final = "v21.0"

log = logging.getLogger("essen.messenger.send_api")


class MessagingType(enum.StrEnum):
    """``messaging_type`` of a message: a reply inside the 24-hour window is ``RESPONSE``."""

    RESPONSE = "RESPONSE"
    UPDATE = "UPDATE"
    MESSAGE_TAG = "MESSAGE_TAG"


class SenderAction(enum.StrEnum):
    MARK_SEEN = "mark_seen"
    TYPING_ON = "typing_on"
    TYPING_OFF = "typing_off"


@dataclass(frozen=True, slots=True)
class SendApiStatistics:
    """Counters since the client was made.

    ``outcomes`` counts finished calls by ``outcome_key`` (``"ok"``,
    ``"auth:190"``...); ``token_rejected`` is set by an auth failure and
    cleared by the next success, for the health check.
    """

    calls: int
    attempts: int
    retries: int
    outcomes: Mapping[str, int]
    token_rejected: bool
    #: Sender actions skipped because no rate-limit token was free (``if_idle``).
    skipped_actions: int = 0


class _RedactSecrets(logging.Filter):
    """Rewrites a record whose text carries ``access_token=...``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_LOG_FILTER: Final = _RedactSecrets()


def install_log_redaction() -> None:
    """Redact tokens in what httpx and httpcore log (httpx logs each request's URL).

    Idempotent; :class:`SendApiClient` calls it, so it only needs calling
    directly by code that puts tokens in URLs without the client.
    """
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if _LOG_FILTER not in logger.filters:
            logger.addFilter(_LOG_FILTER)


class SendApiClient:
    """Sends for one page through ``http`` (which the caller owns and closes).

    ``rng`` feeds the backoff jitter: a seeded one makes every retry delay
    predictable.  ``limiter`` should be the one shared by everything that
    calls the Graph API with this page token.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        page_token: str,
        graph_url: str = DEFAULT_GRAPH_URL,
        version: str = DEFAULT_VERSION,
        policy: RetryPolicy,
        limiter: RateLimiter,
        rng: random.Random,
    ) -> None:
        if not page_token:
            raise ValueError("page_token is empty")
        self._http = http
        self._token = page_token
        base = f"{graph_url.rstrip('/')}/{version}"
        self._messages_url = f"{base}/me/messages"
        self._me_url = f"{base}/me"
        self._policy = policy
        self._limiter = limiter
        self._rng = rng
        self._calls = 0
        self._attempts = 0
        self._retries = 0
        self._outcomes: Counter[str] = Counter()
        self._token_rejected = False
        self._skipped_actions = 0
        install_log_redaction()

    def __repr__(self) -> str:
        # The default repr would not show the token, but a future field might.
        return f"<SendApiClient {self._messages_url}>"

    async def send_message(
        self,
        psid: str,
        message: Mapping[str, object],
        *,
        messaging_type: MessagingType = MessagingType.RESPONSE,
        tag: str | None = None,
    ) -> SendResult:
        """Send ``message`` (the Send API's ``message`` object) to ``psid``.

        Retries transient failures per the policy.  Returns :class:`SendOk`
        with the ``message_id`` or :class:`SendFailed`; raises only
        ``ValueError`` for an empty ``psid`` or a tag without
        ``MESSAGE_TAG``.  Cancellation propagates; a send cancelled after its
        request went out may still be delivered.
        """
        _check_psid(psid)
        if (tag is not None) != (messaging_type is MessagingType.MESSAGE_TAG):
            raise ValueError("a tag goes with messaging_type MESSAGE_TAG, and only with it")
        body: dict[str, object] = {
            "recipient": {"id": psid},
            "messaging_type": messaging_type.value,
            "message": dict(message),
        }
        if tag is not None:
            body["tag"] = tag
        return await self._call("POST", self._messages_url, body, self._policy)

    async def sender_action(
        self, psid: str, action: SenderAction, *, if_idle: bool = False
    ) -> SendResult | None:
        """Send a sender action (its own request; the Send API takes it alone).

        ``if_idle``: only when a rate-limit token is free at once, else skip
        it and return None.  "Seen" and "typing" are courtesies; under load
        they would take two of every three calls from the page's budget and
        make the answers themselves wait.
        """
        _check_psid(psid)
        if if_idle and not self._limiter.try_acquire(trio.current_time()):
            self._skipped_actions += 1
            return None
        body: dict[str, object] = {"recipient": {"id": psid}, "sender_action": action.value}
        return await self._call("POST", self._messages_url, body, self._policy, prepaid=if_idle)

    async def mark_seen(self, psid: str, *, if_idle: bool = False) -> SendResult | None:
        """Show ``psid``'s last message as seen."""
        return await self.sender_action(psid, SenderAction.MARK_SEEN, if_idle=if_idle)

    async def typing_on(self, psid: str, *, if_idle: bool = False) -> SendResult | None:
        """Show the typing indicator to ``psid`` (Messenger drops it after ~20 s)."""
        return await self.sender_action(psid, SenderAction.TYPING_ON, if_idle=if_idle)

    async def check_token(self) -> SendResult:
        """``GET /me`` once: :class:`SendOk` if the page token works.

        One attempt, bounded by the policy's ``attempt_timeout``: a health
        probe should report what it sees now, not retry its way past it.
        """
        once = RetryPolicy(
            max_attempts=1,
            deadline=self._policy.attempt_timeout,
            attempt_timeout=self._policy.attempt_timeout,
            backoff=self._policy.backoff,
        )
        return await self._call("GET", self._me_url, None, once)

    def statistics(self) -> SendApiStatistics:
        return SendApiStatistics(
            calls=self._calls,
            attempts=self._attempts,
            retries=self._retries,
            outcomes=dict(self._outcomes),
            token_rejected=self._token_rejected,
            skipped_actions=self._skipped_actions,
        )

    # -- the retry loop --------------------------------------------------------

    async def _call(
        self,
        method: str,
        url: str,
        body: dict[str, object] | None,
        policy: RetryPolicy,
        *,
        prepaid: bool = False,
    ) -> SendResult:
        """``prepaid``: the caller took the first attempt's rate-limit token."""
        self._calls += 1
        schedule = RetrySchedule(policy, Backoff(policy.backoff, self._rng), trio.current_time())
        last_failure: Failure | None = None
        while True:
            if prepaid:
                prepaid = False
            else:
                with trio.move_on_at(schedule.deadline):
                    await self._limiter.acquire()
            if trio.current_time() >= schedule.deadline:
                # The limiter ate the rest of the budget.
                return self._finish_failed(
                    last_failure
                    or Failure(
                        FailureCategory.RATE_LIMITED,
                        None,
                        None,
                        "no rate-limiter token before the deadline",
                    ),
                    schedule,
                    StopReason.DEADLINE,
                )
            end_by = schedule.begin_attempt(trio.current_time())
            self._attempts += 1
            outcome = await self._attempt(method, url, body, end_by)
            match outcome:
                case Success(recipient_id=recipient_id, message_id=message_id):
                    self._token_rejected = False
                    return self._finish(
                        SendOk(message_id, recipient_id, schedule.attempts, self._elapsed(schedule))
                    )
                case Failure() as failure:
                    last_failure = failure
                    decision = schedule.after_failure(failure, trio.current_time())
                    match decision:
                        case RetryAt(at=at, delay=delay):
                            log.info(
                                "Send API attempt %d failed (%s: %s); retrying in %.3f s",
                                schedule.attempts,
                                failure.category.value,
                                failure.detail,
                                delay,
                            )
                            self._retries += 1
                            await trio.sleep_until(at)
                        case GiveUp(reason=reason):
                            return self._finish_failed(failure, schedule, reason)
                        case _:
                            assert_never(decision)
                case _:
                    assert_never(outcome)

    async def _attempt(
        self, method: str, url: str, body: dict[str, object] | None, end_by: float
    ) -> Success | Failure:
        with trio.move_on_at(end_by):
            try:
                response = await self._http.request(
                    method, url, params={"access_token": self._token}, json=body
                )
            except httpx.RequestError as exc:
                # httpx's messages do not carry the URL today; scrub anyway.
                detail = f"{type(exc).__name__}: {self._scrub(str(exc))}"
                return Failure(FailureCategory.TRANSPORT, None, None, detail)
            outcome = classify(response.status_code, response.content)
            if isinstance(outcome, Failure) and self._token in outcome.detail:
                # A Graph message quoting the token back: not seen, but cheap to rule out.
                return replace(outcome, detail=self._scrub(outcome.detail))
            return outcome
        return Failure(
            FailureCategory.TRANSPORT, None, None, "no answer before the attempt timed out"
        )

    def _finish_failed(
        self, failure: Failure, schedule: RetrySchedule, reason: StopReason
    ) -> SendResult:
        if failure.category is FailureCategory.AUTH:
            self._token_rejected = True
        result = SendFailed.from_failure(
            failure, attempts=schedule.attempts, elapsed=self._elapsed(schedule), stop=reason
        )
        level = logging.ERROR if result.token_invalid else logging.WARNING
        log.log(
            level,
            "Send API call failed after %d attempt(s) (%s, %s): %s",
            result.attempts,
            result.outcome_key,
            reason.value,
            result.detail,
        )
        return self._finish(result)

    def _finish(self, result: SendResult) -> SendResult:
        self._outcomes[result.outcome_key] += 1
        return result

    def _elapsed(self, schedule: RetrySchedule) -> float:
        return trio.current_time() - schedule.started

    def _scrub(self, text: str) -> str:
        return redact(text).replace(self._token, "[redacted]")


def _check_psid(psid: str) -> None:
    if not psid:
        raise ValueError("psid is empty")
