"""What a Send API answer means, and whether (and when) to try again.

Pure: no I/O, no clock reads.  :func:`classify` turns one HTTP answer into a
:class:`Success` or a :class:`Failure` with a :class:`FailureCategory`;
:class:`RetrySchedule` decides from a failure, the policy and ``now`` whether
another attempt fits and when.  :mod:`essen.messenger.send_api` does the I/O.

Theory of operation.  Facebook reports errors as
``{"error": {"message", "type", "code", "error_subcode", "is_transient",
"fbtrace_id"}}``; the *code* (and for a few, the *subcode*) says what
happened, the HTTP status only roughly.  So the code decides first, and the
status only when the code is unknown or absent (a proxy's 502 has no Graph
body at all).  Known permanent codes win even over ``is_transient: true``:
retrying a send to a user who blocked the page, or with a revoked token, can
only fail again and burns the page's rate budget.

Retrying a send is not free of risk: the Send API has no idempotency key, so
a 5xx or a broken connection after Facebook accepted the message can deliver
it twice.  The retry budget is therefore small (attempts and a total
deadline), and the caller gets the attempt count to see it happen.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, assert_never

from essen.realtime.backoff import BackoffPolicy

if TYPE_CHECKING:
    from collections.abc import Mapping

    from essen.realtime.backoff import Backoff

__all__ = (
    "AUTH_CODES",
    "DEFAULT_BACKOFF",
    "RATE_LIMIT_CODES",
    "TRANSIENT_CODES",
    "WINDOW_SUBCODES",
    "Classification",
    "Failure",
    "FailureCategory",
    "GiveUp",
    "GraphError",
    "RetryAt",
    "RetryPolicy",
    "RetrySchedule",
    "SendFailed",
    "SendOk",
    "SendResult",
    "StopReason",
    "Success",
    "classify",
    "redact",
)

#: Token invalid, expired or revoked (190), or an invalid session (102):
#: nothing works until an operator replaces the page token.
AUTH_CODES = frozenset({102, 190})
#: Throttling: application (4), user (17), page (32) and custom (613) limits.
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613})
#: "An unexpected error has occurred" (2), "Temporary send message failure" (1200).
TRANSIENT_CODES = frozenset({2, 1200})
#: "This message is sent outside of allowed window" (under code 10, sometimes others).
WINDOW_SUBCODES = frozenset({2018278, 2018065})
_WINDOW_CODE = 10
_USER_UNAVAILABLE_CODE = 551
_INVALID_PARAMETER_CODE = 100

#: Graph error messages are kept to this many characters (they end up in logs).
MAX_DETAIL = 300


class FailureCategory(enum.Enum):
    """Why a call failed, at the grain a caller acts on (and counts by)."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"
    AUTH = "auth"
    WINDOW = "window"
    USER_UNAVAILABLE = "user_unavailable"
    RATE_LIMITED = "rate_limited"
    TRANSPORT = "transport"

    @property
    def retryable(self) -> bool:
        match self:
            case (
                FailureCategory.TRANSIENT | FailureCategory.RATE_LIMITED | FailureCategory.TRANSPORT
            ):
                return True
            case (
                FailureCategory.PERMANENT
                | FailureCategory.AUTH
                | FailureCategory.WINDOW
                | FailureCategory.USER_UNAVAILABLE
            ):
                return False
            case _:
                assert_never(self)


@dataclass(frozen=True, slots=True)
class GraphError:
    """The ``error`` object of a Graph API answer, fields as Facebook names them."""

    code: int | None
    subcode: int | None
    type: str | None
    message: str
    fbtrace_id: str | None
    is_transient: bool | None


@dataclass(frozen=True, slots=True)
class Success:
    """A 2xx answer without an error: the Send API took the request."""

    status: int
    recipient_id: str | None
    message_id: str | None


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed attempt; ``detail`` is safe to log (no token, bounded length)."""

    category: FailureCategory
    status: int | None
    error: GraphError | None
    detail: str

    @property
    def retryable(self) -> bool:
        return self.category.retryable


Classification = Success | Failure


def redact(text: str) -> str:
    """``text`` with the values of ``access_token`` and ``appsecret_proof`` replaced.

    Works on URLs and on any text that embeds one (log lines, exception
    messages), so it can be applied to whatever is about to be written out.
    """
    return _SECRET_PARAM.sub(r"\1[redacted]", text)


_SECRET_PARAM = re.compile(r"(?i)((?:access_token|appsecret_proof)(?:=|%3D))[^&#\s'\"]*")


def classify(status: int, body: bytes | str | Mapping[str, object] | None) -> Classification:
    """What one Send API (or Graph API) answer means.

    ``body`` is the raw body or its parsed JSON; anything that is not a JSON
    object counts as "no Graph body" (a proxy's HTML error page, say).
    Never raises: a malformed answer is a failure with a category, not an
    exception.
    """
    document = _as_object(body)
    error = _graph_error(document)
    if error is not None:
        category = _category_of(error, status)
        return Failure(category, status, error, _describe(status, error))
    if 200 <= status < 300:
        if document is None:
            # Facebook accepted something, or a middlebox answered 200: either
            # way a retry could duplicate a message, so this is not retried.
            return Failure(
                FailureCategory.PERMANENT, status, None, f"HTTP {status} without a JSON body"
            )
        return Success(
            status,
            _str_or_none(document.get("recipient_id")),
            _str_or_none(document.get("message_id")),
        )
    if status == 429:
        category = FailureCategory.RATE_LIMITED
    elif status >= 500:
        category = FailureCategory.TRANSIENT
    else:
        category = FailureCategory.PERMANENT
    return Failure(category, status, None, f"HTTP {status} without a Graph error")


def _category_of(error: GraphError, status: int) -> FailureCategory:
    code, subcode = error.code, error.subcode
    if code in AUTH_CODES:
        return FailureCategory.AUTH
    if code == _WINDOW_CODE or subcode in WINDOW_SUBCODES:
        return FailureCategory.WINDOW
    if code == _USER_UNAVAILABLE_CODE:
        return FailureCategory.USER_UNAVAILABLE
    if code == _INVALID_PARAMETER_CODE:
        return FailureCategory.PERMANENT
    if code in RATE_LIMIT_CODES:
        return FailureCategory.RATE_LIMITED
    if code in TRANSIENT_CODES or error.is_transient:
        return FailureCategory.TRANSIENT
    if error.is_transient is None and status >= 500:
        return FailureCategory.TRANSIENT
    if error.is_transient is None and status == 429:
        return FailureCategory.RATE_LIMITED
    return FailureCategory.PERMANENT


def _as_object(body: bytes | str | Mapping[str, object] | None) -> Mapping[str, object] | None:
    if body is None:
        return None
    if isinstance(body, bytes | str):
        try:
            parsed = json.loads(body)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
            return None
    else:
        parsed = body
    return parsed if isinstance(parsed, dict) else None


def _graph_error(document: Mapping[str, object] | None) -> GraphError | None:
    if document is None:
        return None
    error = document.get("error")
    if not isinstance(error, dict):
        return None
    message = error.get("message")
    transient = error.get("is_transient")
    return GraphError(
        code=_int_or_none(error.get("code")),
        subcode=_int_or_none(error.get("error_subcode")),
        type=_str_or_none(error.get("type")),
        message=message[:MAX_DETAIL] if isinstance(message, str) else "",
        fbtrace_id=_str_or_none(error.get("fbtrace_id")),
        is_transient=transient if isinstance(transient, bool) else None,
    )


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _str_or_none(value: object) -> str | None:
    if isinstance(value, str):
        return value[:MAX_DETAIL]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # some Graph ids come back as numbers
    return None


def _describe(status: int, error: GraphError) -> str:
    code = "?" if error.code is None else str(error.code)
    message = error.message
    # Facebook often starts the message with "(#code)" itself; say it once.
    message = message.removeprefix(f"(#{code})").lstrip()
    if error.subcode is not None:
        code = f"{code}/{error.subcode}"
    return redact(f"HTTP {status} (#{code}) {message}".rstrip())


# -- results -------------------------------------------------------------------


class StopReason(enum.Enum):
    """Why the client stopped trying."""

    NOT_RETRYABLE = "not_retryable"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    DEADLINE = "deadline"


@dataclass(frozen=True, slots=True)
class SendOk:
    """Facebook took the request after ``attempts`` tries, ``elapsed`` Trio seconds in all."""

    message_id: str | None
    recipient_id: str | None
    attempts: int
    elapsed: float

    @property
    def ok(self) -> bool:
        return True

    @property
    def outcome_key(self) -> str:
        """The label this outcome is counted under (``"ok"``)."""
        return "ok"


@dataclass(frozen=True, slots=True)
class SendFailed:
    """The last attempt's failure, and why no further attempt was made.

    ``attempts`` counts HTTP requests made (0 if the deadline passed while
    waiting for the rate limiter).  ``detail`` never holds the page token.
    """

    category: FailureCategory
    code: int | None
    subcode: int | None
    status: int | None
    detail: str
    fbtrace_id: str | None
    attempts: int
    elapsed: float
    stop: StopReason

    @property
    def ok(self) -> bool:
        return False

    @property
    def token_invalid(self) -> bool:
        """Facebook rejected the page token: health should turn degraded."""
        return self.category is FailureCategory.AUTH

    @property
    def outcome_key(self) -> str:
        """The label to count this outcome under: ``category[:code[/subcode]]``.

        E.g. ``"window:10/2018278"``, ``"user_unavailable:551"``, ``"transport"``.
        """
        if self.code is None:
            return self.category.value
        if self.subcode is None:
            return f"{self.category.value}:{self.code}"
        return f"{self.category.value}:{self.code}/{self.subcode}"

    @classmethod
    def from_failure(
        cls, failure: Failure, *, attempts: int, elapsed: float, stop: StopReason
    ) -> SendFailed:
        error = failure.error
        return cls(
            category=failure.category,
            code=None if error is None else error.code,
            subcode=None if error is None else error.subcode,
            status=failure.status,
            detail=failure.detail,
            fbtrace_id=None if error is None else error.fbtrace_id,
            attempts=attempts,
            elapsed=elapsed,
            stop=stop,
        )


SendResult = SendOk | SendFailed


# -- retry schedule ------------------------------------------------------------

#: Half a second, doubling, at most 8 s, each delay moved by up to half of itself.
DEFAULT_BACKOFF = BackoffPolicy(initial=0.5, factor=2.0, maximum=8.0, jitter=0.5)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one call tries (all times in seconds of the Trio clock).

    ``max_attempts`` counts the first try; ``deadline`` bounds the whole call
    from its start, rate-limiter waits and backoff sleeps included;
    ``attempt_timeout`` bounds one HTTP request.
    """

    max_attempts: int = 5
    deadline: float = 30.0
    attempt_timeout: float = 10.0
    backoff: BackoffPolicy = DEFAULT_BACKOFF

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or not (self.deadline > 0 and self.attempt_timeout > 0):
            raise ValueError(f"invalid retry policy {self}")


@dataclass(frozen=True, slots=True)
class RetryAt:
    """Try again at ``at`` (``delay`` after the failure)."""

    at: float
    delay: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: StopReason


@dataclass(slots=True)
class RetrySchedule:
    """The attempts of one call: counts them and decides about the next.

    ``backoff`` carries the injected RNG, so with a seeded one every delay is
    known in advance.  A retry whose start would fall at or past the deadline
    is not scheduled: the call gives up at once rather than sleep for nothing.
    """

    policy: RetryPolicy
    backoff: Backoff
    started: float
    attempts: int = 0

    @property
    def deadline(self) -> float:
        return self.started + self.policy.deadline

    def begin_attempt(self, now: float) -> float:
        """Count an attempt starting at ``now``; returns the time it must end by."""
        self.attempts += 1
        return min(self.deadline, now + self.policy.attempt_timeout)

    def after_failure(self, failure: Failure, now: float) -> RetryAt | GiveUp:
        """What to do after ``failure`` was seen at ``now``."""
        if not failure.retryable:
            return GiveUp(StopReason.NOT_RETRYABLE)
        if self.attempts >= self.policy.max_attempts:
            return GiveUp(StopReason.ATTEMPTS_EXHAUSTED)
        delay = self.backoff.next()
        if now + delay >= self.deadline:
            return GiveUp(StopReason.DEADLINE)
        return RetryAt(now + delay, delay)
