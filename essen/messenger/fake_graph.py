"""A fake Graph API that speaks the Send API contract, for development and tests.

``essen dev`` points the bot's ``FB_GRAPH_URL`` at it, and the tests run the
Send API client against it in-process (httpx's ``ASGITransport``) or over a
loopback port.  It checks what the real one checks and answers in its shapes:

* the page token (``access_token`` query parameter, or a bearer header): a
  wrong or missing one gets error 190 (``OAuthException``), HTTP 400;
* the body of ``POST /{version}/me/messages``: ``recipient.id``, then either a
  ``sender_action`` alone or a ``message`` (``text`` or ``attachment``,
  optional ``quick_replies``) with a ``messaging_type``; a bad one gets
  error 100;
* a good request gets ``{"recipient_id", "message_id": "m_..."}`` (a sender
  action only ``{"recipient_id"}``), and ``GET /{version}/me`` the page.

Failures are injected on demand (:meth:`FakeGraph.fail_next`, by count, and
:meth:`FakeGraph.fail_rate`, by a probability drawn from the injected RNG);
only requests that passed the token and body checks can be picked, so a test
counts injected failures exactly.  Latency is a ``trio.sleep``, so MockClock
runs it in no real time.  Every request is recorded (:attr:`FakeGraph.received`,
bounded by a :class:`RecordPolicy`), the token itself never, and a test waits
with :meth:`FakeGraph.wait_for`, which wakes on a Trio event per record rather
than polling.

The same controls are served over HTTP for another process (no auth: bind the
fake to loopback):

* ``POST /_fake/fail`` ``{"count": n}`` and/or ``{"rate": p}``, with optional
  ``status``, ``code``, ``subcode``, ``message``, ``type``, ``is_transient``;
  ``{"clear": true}`` drops pending and rate failures first;
* ``POST /_fake/latency`` ``{"seconds": s}``; ``POST /_fake/reset``;
* ``GET /_fake/received?since=SEQ&at_least=N&timeout=S``: the records (from
  sequence number ``since``), after waiting up to ``S`` seconds for ``N``
  answered requests in all.
"""

from __future__ import annotations

import base64
import collections
import enum
import hmac
import json
import random
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import trio
from quart import Response, request
from quart_trio import QuartTrio

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = (
    "Endpoint",
    "FakeGraph",
    "FakeGraphStatistics",
    "InjectedFailure",
    "Overflow",
    "ReceivedRequest",
    "RecordPolicy",
    "create_fake_graph",
)

_VERSION = re.compile(r"v\d+\.\d+")
_MESSAGING_TYPES = frozenset({"RESPONSE", "UPDATE", "MESSAGE_TAG"})
_SENDER_ACTIONS = frozenset({"mark_seen", "typing_on", "typing_off"})
#: Facebook's limits on a message.
MAX_TEXT = 2000
MAX_QUICK_REPLIES = 13
#: ``GET /_fake/received`` waits at most this long, whatever it is asked.
MAX_ADMIN_WAIT = 60.0

#: Facebook's wording for the codes the fake is usually told to fail with.
DEFAULT_MESSAGES: Final[Mapping[int, str]] = {
    2: "An unexpected error has occurred. Please retry your request later.",
    4: "(#4) Application request limit reached",
    10: "(#10) This message is sent outside of allowed window.",
    100: "(#100) Invalid parameter",
    190: "Invalid OAuth access token - Cannot parse access token",
    551: "(#551) This person isn't available right now.",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    1200: "(#1200) Temporary send message failure. Please try again later",
}


class Endpoint(enum.Enum):
    MESSAGES = "messages"
    ME = "me"


class Overflow(enum.Enum):
    """What the record list does when it is full (the counters go on either way)."""

    DROP_OLDEST = "drop_oldest"  # keep the latest: a long dev session
    DROP_NEWEST = "drop_newest"  # keep the first: a test that looks at the start


@dataclass(frozen=True, slots=True)
class RecordPolicy:
    max_records: int = 10_000
    overflow: Overflow = Overflow.DROP_OLDEST

    def __post_init__(self) -> None:
        if self.max_records < 1:
            raise ValueError("max_records must be at least 1")


@dataclass(frozen=True, slots=True)
class InjectedFailure:
    """An error to answer with instead of the real outcome.

    ``code=None`` answers with a body that is not Graph JSON at all, as a
    proxy in front of Facebook would.  ``message`` defaults to Facebook's
    text for the code.
    """

    status: int = 500
    code: int | None = 1200
    subcode: int | None = None
    message: str | None = None
    error_type: str = "OAuthException"
    is_transient: bool | None = None

    def __post_init__(self) -> None:
        if not 400 <= self.status <= 599:
            raise ValueError(f"an injected failure needs an error status, not {self.status}")


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request as the fake saw it, and what it answered.

    Times are Trio-clock seconds.  ``answered_at`` and ``status`` are None
    when the client went away before the answer (cancelled mid-latency).
    ``body`` is the parsed JSON body (None if absent or not a JSON object);
    ``message`` is its ``message`` object.
    """

    seq: int
    endpoint: Endpoint
    version: str
    received_at: float
    answered_at: float | None
    token_valid: bool
    body: Mapping[str, Any] | None
    recipient_id: str | None
    messaging_type: str | None
    sender_action: str | None
    message: Mapping[str, Any] | None
    status: int | None
    error_code: int | None
    error_subcode: int | None
    message_id: str | None
    injected: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "endpoint": self.endpoint.value,
            "version": self.version,
            "received_at": self.received_at,
            "answered_at": self.answered_at,
            "token_valid": self.token_valid,
            "body": self.body,
            "recipient_id": self.recipient_id,
            "messaging_type": self.messaging_type,
            "sender_action": self.sender_action,
            "message": self.message,
            "status": self.status,
            "error_code": self.error_code,
            "error_subcode": self.error_subcode,
            "message_id": self.message_id,
            "injected": self.injected,
        }


@dataclass(frozen=True, slots=True)
class FakeGraphStatistics:
    total: int
    recorded: int
    dropped: int
    injected: int
    pending_failures: int
    failure_rate: float
    latency: float


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    payload: dict[str, Any] | str  # str: not JSON (an injected proxy error)
    injected: bool = False


class FakeGraph:
    """The fake's state and its ASGI ``app``; make one with :func:`create_fake_graph`."""

    def __init__(
        self,
        *,
        page_token: str,
        page_id: str,
        page_name: str,
        rng: random.Random,
        record_policy: RecordPolicy,
    ) -> None:
        self._token = page_token.encode()
        self.page_id = page_id
        self.page_name = page_name
        self._rng = rng
        self._policy = record_policy
        self._records: collections.deque[ReceivedRequest] = collections.deque()
        self._next_seq = 0
        self._total = 0
        self._dropped = 0
        self._injected = 0
        self._pending: collections.deque[InjectedFailure] = collections.deque()
        self._rate = 0.0
        self._rate_failure = InjectedFailure()
        self._latency = 0.0
        self._changed = trio.Event()
        self.app = self._build_app()

    # -- controls --------------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 500,
        code: int | None = 1200,
        subcode: int | None = None,
        message: str | None = None,
        error_type: str = "OAuthException",
        is_transient: bool | None = None,
    ) -> None:
        """Answer the next ``n`` well-formed, authorised Send API requests with this error.

        Calls queue up: ``fail_next(2); fail_next(1, status=400, code=551)``
        fails two with 1200, then one with 551.  Takes precedence over
        :meth:`fail_rate`.
        """
        if n < 0:
            raise ValueError("n must not be negative")
        failure = InjectedFailure(status, code, subcode, message, error_type, is_transient)
        self._pending.extend([failure] * n)

    def fail_rate(
        self,
        p: float,
        *,
        status: int = 500,
        code: int | None = 1200,
        subcode: int | None = None,
        message: str | None = None,
        error_type: str = "OAuthException",
        is_transient: bool | None = None,
    ) -> None:
        """Fail each well-formed, authorised Send API request with probability ``p``.

        ``p=0`` turns it off.  The draws come from the RNG given to
        :func:`create_fake_graph`, one per eligible request.
        """
        if not 0.0 <= p <= 1.0:
            raise ValueError("p must be between 0 and 1")
        self._rate_failure = InjectedFailure(
            status, code, subcode, message, error_type, is_transient
        )
        self._rate = p

    def latency(self, seconds: float) -> None:
        """Delay every answer by ``seconds`` of the Trio clock."""
        if not seconds >= 0:
            raise ValueError("latency must not be negative")
        self._latency = seconds

    def clear_failures(self) -> None:
        """Forget pending and rate failures (latency stays)."""
        self._pending.clear()
        self._rate = 0.0

    def reset(self) -> None:
        """Back to a fresh fake: no failures, no latency, no records, counters at 0.

        Sequence numbers keep counting, so records from before and after a
        reset are never confused.
        """
        self.clear_failures()
        self._latency = 0.0
        self._records.clear()
        self._total = self._dropped = self._injected = 0
        self._notify()

    # -- observation -----------------------------------------------------------

    @property
    def received(self) -> tuple[ReceivedRequest, ...]:
        """The recorded requests, in the order they were answered."""
        return tuple(self._records)

    async def wait_for(
        self, condition: int | Callable[[Sequence[ReceivedRequest]], bool]
    ) -> tuple[ReceivedRequest, ...]:
        """Wait until ``condition`` holds; returns the records at that moment.

        An ``int`` waits until that many requests have been answered in all
        (dropped records count too); a callable is asked about the recorded
        requests after every new one.  Takes no timeout: wrap it in
        ``trio.fail_after``.  Always checkpoints.
        """
        if isinstance(condition, int):
            target = condition

            def check() -> bool:
                return self._total >= target
        else:

            def check() -> bool:
                return condition(self.received)

        if check():
            await trio.lowlevel.checkpoint()
        while not check():
            await self._changed.wait()
        return self.received

    def statistics(self) -> FakeGraphStatistics:
        return FakeGraphStatistics(
            total=self._total,
            recorded=len(self._records),
            dropped=self._dropped,
            injected=self._injected,
            pending_failures=len(self._pending),
            failure_rate=self._rate,
            latency=self._latency,
        )

    # -- the Graph API ---------------------------------------------------------

    def _build_app(self) -> QuartTrio:
        app = QuartTrio("essen-fake-graph")

        @app.post("/<version>/me/messages")
        async def messages(version: str) -> Response:
            return await self._serve(Endpoint.MESSAGES, version)

        @app.get("/<version>/me")
        async def me(version: str) -> Response:
            return await self._serve(Endpoint.ME, version)

        @app.post("/_fake/fail")
        async def admin_fail() -> Response:
            return self._admin_fail(await request.get_json(force=True, silent=True))

        @app.post("/_fake/latency")
        async def admin_latency() -> Response:
            spec = await request.get_json(force=True, silent=True)
            seconds = spec.get("seconds") if isinstance(spec, dict) else None
            if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
                return _json(400, {"error": "expected {'seconds': a number >= 0}"})
            self.latency(float(seconds))
            return self._admin_state()

        @app.post("/_fake/reset")
        async def admin_reset() -> Response:
            self.reset()
            return self._admin_state()

        @app.get("/_fake/received")
        async def admin_received() -> Response:
            try:
                since = int(request.args.get("since", "0"))
                at_least = int(request.args.get("at_least", "0"))
                timeout = min(float(request.args.get("timeout", "0")), MAX_ADMIN_WAIT)
            except ValueError:
                return _json(400, {"error": "since and at_least are integers, timeout a number"})
            if at_least > self._total and timeout > 0:
                with trio.move_on_after(timeout):
                    await self.wait_for(at_least)
            records = [r.to_json() for r in self._records if r.seq >= since]
            return _json(200, {**self._state(), "received": records})

        return app

    async def _serve(self, endpoint: Endpoint, version: str) -> Response:
        received_at = trio.current_time()
        seq = self._next_seq
        self._next_seq += 1
        token_valid = self._token_ok()
        body: dict[str, Any] | None = None
        if endpoint is Endpoint.MESSAGES:
            raw = await request.get_data(cache=True, as_text=False, parse_form_data=False)
            body = _parse_object(raw)
        reply: _Reply | None = None
        try:
            if self._latency:
                await trio.sleep(self._latency)
            reply = self._decide(endpoint, version, token_valid, body)
        finally:
            # In ``finally`` so that a request abandoned mid-latency is recorded too.
            self._record(seq, endpoint, version, received_at, token_valid, body, reply)
        if isinstance(reply.payload, str):
            return Response(reply.payload, reply.status, content_type="text/html")
        return _json(reply.status, reply.payload)

    def _token_ok(self) -> bool:
        offered = request.args.get("access_token")
        if offered is None:
            authorization = request.headers.get("Authorization", "")
            if authorization[:7].lower() == "bearer ":
                offered = authorization[7:]
        return offered is not None and hmac.compare_digest(offered.encode(), self._token)

    def _decide(
        self, endpoint: Endpoint, version: str, token_valid: bool, body: Mapping[str, Any] | None
    ) -> _Reply:
        if not _VERSION.fullmatch(version):
            return self._error(400, 2500, None, f"Unknown path components: /{version}")
        if not token_valid:
            # 467: "Invalid access token" (expired, revoked or otherwise invalid).
            return self._error(400, 190, 467, DEFAULT_MESSAGES[190])
        match endpoint:
            case Endpoint.ME:
                return _Reply(200, {"id": self.page_id, "name": self.page_name})
            case Endpoint.MESSAGES:
                if body is None:
                    return self._error(400, 100, None, "(#100) The parameter recipient is required")
                problem = _check_send_body(body)
                if problem is not None:
                    return self._error(400, 100, None, problem)
                failure = self._draw_failure()
                if failure is not None:
                    self._injected += 1
                    return self._inject(failure)
                recipient_id = body["recipient"]["id"]
                if "sender_action" in body:
                    return _Reply(200, {"recipient_id": recipient_id})
                message_id = "m_" + self._random_text(24)
                return _Reply(200, {"recipient_id": recipient_id, "message_id": message_id})
        raise AssertionError(endpoint)  # pragma: no cover - the match is exhaustive

    def _draw_failure(self) -> InjectedFailure | None:
        if self._pending:
            return self._pending.popleft()
        if self._rate and self._rng.random() < self._rate:
            return self._rate_failure
        return None

    def _inject(self, failure: InjectedFailure) -> _Reply:
        if failure.code is None:
            page = f"<html><body><h1>{failure.status}</h1></body></html>"
            return _Reply(failure.status, page, injected=True)
        reply = self._error(
            failure.status,
            failure.code,
            failure.subcode,
            failure.message,
            error_type=failure.error_type,
            is_transient=failure.is_transient,
        )
        return _Reply(reply.status, reply.payload, injected=True)

    def _error(
        self,
        status: int,
        code: int,
        subcode: int | None,
        message: str | None,
        *,
        error_type: str = "OAuthException",
        is_transient: bool | None = None,
    ) -> _Reply:
        """Facebook's error shape; absent fields are left out, as Facebook does."""
        error: dict[str, Any] = {
            "message": message if message is not None else DEFAULT_MESSAGES.get(code, "Error"),
            "type": error_type,
            "code": code,
        }
        if subcode is not None:
            error["error_subcode"] = subcode
        if is_transient is not None:
            error["is_transient"] = is_transient
        error["fbtrace_id"] = "A" + self._random_text(8)
        return _Reply(status, {"error": error})

    def _record(
        self,
        seq: int,
        endpoint: Endpoint,
        version: str,
        received_at: float,
        token_valid: bool,
        body: Mapping[str, Any] | None,
        reply: _Reply | None,
    ) -> None:
        payload = reply.payload if reply is not None else None
        error = payload.get("error") if isinstance(payload, dict) else None
        message = body.get("message") if body is not None else None
        record = ReceivedRequest(
            seq=seq,
            endpoint=endpoint,
            version=version,
            received_at=received_at,
            answered_at=None if reply is None else trio.current_time(),
            token_valid=token_valid,
            body=body,
            recipient_id=_str_field(body.get("recipient") if body is not None else None, "id"),
            messaging_type=_str_field(body, "messaging_type"),
            sender_action=_str_field(body, "sender_action"),
            message=message if isinstance(message, dict) else None,
            status=None if reply is None else reply.status,
            error_code=error.get("code") if isinstance(error, dict) else None,
            error_subcode=error.get("error_subcode") if isinstance(error, dict) else None,
            message_id=_str_field(payload, "message_id"),
            injected=reply is not None and reply.injected,
        )
        self._total += 1
        if len(self._records) < self._policy.max_records:
            self._records.append(record)
        else:
            self._dropped += 1
            match self._policy.overflow:
                case Overflow.DROP_OLDEST:
                    self._records.popleft()
                    self._records.append(record)
                case Overflow.DROP_NEWEST:
                    pass
        self._notify()

    def _notify(self) -> None:
        # Waiters hold the old event; each record wakes them once to re-check.
        self._changed.set()
        self._changed = trio.Event()

    def _random_text(self, n_bytes: int) -> str:
        return base64.urlsafe_b64encode(self._rng.randbytes(n_bytes)).decode().rstrip("=")

    # -- the admin API ---------------------------------------------------------

    def _admin_fail(self, spec: object) -> Response:
        if not isinstance(spec, dict):
            return _json(400, {"error": "expected a JSON object"})
        try:
            failure = _failure_from_json(spec)
            count = spec.get("count")
            rate = spec.get("rate")
            if count is not None and (not isinstance(count, int) or isinstance(count, bool)):
                raise ValueError("count must be an integer")
            if rate is not None and (not isinstance(rate, int | float) or isinstance(rate, bool)):
                raise ValueError("rate must be a number")
            if count is not None and count < 0:
                raise ValueError("count must not be negative")
            if rate is not None and not 0 <= rate <= 1:
                raise ValueError("rate must be between 0 and 1")
        except ValueError as exc:
            return _json(400, {"error": str(exc)})
        if spec.get("clear"):
            self.clear_failures()
        if count is not None:
            self._pending.extend([failure] * count)
        if rate is not None:
            self._rate_failure = failure
            self._rate = float(rate)
        return self._admin_state()

    def _admin_state(self) -> Response:
        return _json(200, self._state())

    def _state(self) -> dict[str, Any]:
        stats = self.statistics()
        return {
            "total": stats.total,
            "recorded": stats.recorded,
            "dropped": stats.dropped,
            "injected": stats.injected,
            "pending_failures": stats.pending_failures,
            "failure_rate": stats.failure_rate,
            "latency": stats.latency,
        }


def create_fake_graph(
    *,
    page_token: str,
    page_id: str = "100000000000001",
    page_name: str = "ESSEN Fake Page",
    rng: random.Random | None = None,
    record_policy: RecordPolicy | None = None,
) -> FakeGraph:
    """A fake Graph API that accepts ``page_token``; serve ``.app`` with any ASGI server.

    ``rng`` drives rate failures, message ids and trace ids; the default is
    seeded (0), so a run that does not care still repeats itself.
    """
    if not page_token:
        raise ValueError("page_token is empty")
    return FakeGraph(
        page_token=page_token,
        page_id=page_id,
        page_name=page_name,
        rng=rng if rng is not None else random.Random(0),
        record_policy=record_policy or RecordPolicy(),
    )


def _check_send_body(body: Mapping[str, Any]) -> str | None:
    """What Facebook would object to in a Send API body (its wording), or None."""
    recipient = body.get("recipient")
    if not isinstance(recipient, dict) or "id" not in recipient:
        return "(#100) The parameter recipient is required"
    if not isinstance(recipient["id"], str) or not recipient["id"]:
        return '(#100) Param recipient[id] must be a valid ID string (e.g., "123")'
    has_message, has_action = "message" in body, "sender_action" in body
    if has_message and has_action:
        return "(#100) Cannot send both message and sender_action in the same request"
    if not (has_message or has_action):
        return "(#100) Must send either message or state"
    if has_action:
        if body["sender_action"] not in _SENDER_ACTIONS:
            return "(#100) Param sender_action must be one of {MARK_SEEN, TYPING_ON, TYPING_OFF}"
        return None
    messaging_type = body.get("messaging_type")
    if messaging_type not in _MESSAGING_TYPES:
        return "(#100) Param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}"
    if messaging_type == "MESSAGE_TAG" and not isinstance(body.get("tag"), str):
        return "(#100) The parameter tag is required for messaging_type MESSAGE_TAG"
    return _check_message(body["message"])


def _check_message(message: object) -> str | None:
    if not isinstance(message, dict):
        return "(#100) Param message must be a JSON object"
    text, attachment = message.get("text"), message.get("attachment")
    if text is None and attachment is None:
        return "(#100) Message must contain text or attachment"
    if text is not None and attachment is not None:
        return "(#100) Only one of text or attachment can be specified"
    if text is not None and (not isinstance(text, str) or not text):
        return "(#100) Param message[text] must be a non-empty UTF-8 encoded string"
    if isinstance(text, str) and len(text) > MAX_TEXT:
        return f"(#100) Length of param message[text] must be less than or equal to {MAX_TEXT}"
    if attachment is not None and not isinstance(attachment, dict):
        return "(#100) Param message[attachment] must be a JSON object"
    quick_replies = message.get("quick_replies")
    if quick_replies is not None and (
        not isinstance(quick_replies, list)
        or not 1 <= len(quick_replies) <= MAX_QUICK_REPLIES
        or not all(isinstance(reply, dict) for reply in quick_replies)
    ):
        return (
            "(#100) Param message[quick_replies] must be an array of 1 to "
            f"{MAX_QUICK_REPLIES} quick reply objects"
        )
    return None


def _failure_from_json(spec: Mapping[str, Any]) -> InjectedFailure:
    def optional_int(key: str, default: int | None) -> int | None:
        value = spec.get(key, default)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValueError(f"{key} must be an integer or null")
        return value

    status = optional_int("status", 500)
    message, error_type = spec.get("message"), spec.get("type", "OAuthException")
    is_transient = spec.get("is_transient")
    if status is None:
        raise ValueError("status must be an integer")
    if message is not None and not isinstance(message, str):
        raise ValueError("message must be a string or null")
    if not isinstance(error_type, str):
        raise ValueError("type must be a string")
    if is_transient is not None and not isinstance(is_transient, bool):
        raise ValueError("is_transient must be a boolean or null")
    return InjectedFailure(
        status=status,
        code=optional_int("code", 1200),
        subcode=optional_int("subcode", None),
        message=message,
        error_type=error_type,
        is_transient=is_transient,
    )


def _parse_object(raw: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _str_field(container: object, key: str) -> str | None:
    if isinstance(container, dict):
        value = container.get(key)
        if isinstance(value, str):
            return value
    return None


def _json(status: int, payload: Mapping[str, Any]) -> Response:
    return Response(json.dumps(payload), status, content_type="application/json")
