"""``classify``, the retry schedule and ``redact``: pure, synchronous, no trio."""

from __future__ import annotations

import json
import random

import pytest

from essen.messenger.send_policy import (
    Failure,
    FailureCategory,
    GiveUp,
    GraphError,
    RetryAt,
    RetryPolicy,
    RetrySchedule,
    SendFailed,
    SendOk,
    StopReason,
    Success,
    classify,
    redact,
)
from essen.realtime.backoff import Backoff, BackoffPolicy

C = FailureCategory


def fb_error(code, subcode=None, *, is_transient=None, message="boom"):
    error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbC1"}
    if subcode is not None:
        error["error_subcode"] = subcode
    if is_transient is not None:
        error["is_transient"] = is_transient
    return {"error": error}


# -- success -------------------------------------------------------------------


def test_success_carries_message_and_recipient_ids() -> None:
    body = json.dumps({"recipient_id": "1254", "message_id": "m_AG5Hz2"}).encode()
    assert classify(200, body) == Success(200, "1254", "m_AG5Hz2")


def test_sender_action_success_has_no_message_id() -> None:
    assert classify(200, '{"recipient_id": "1254"}') == Success(200, "1254", None)


def test_numeric_ids_are_read_as_strings() -> None:
    assert classify(200, {"recipient_id": 1254, "id": 9}) == Success(200, "1254", None)


def test_2xx_without_json_is_a_permanent_failure_not_a_retry() -> None:
    # A retry could deliver the message twice if Facebook did take it.
    for body in (b"", b"<html>ok</html>", b"[1, 2]", None):
        outcome = classify(200, body)
        assert isinstance(outcome, Failure)
        assert outcome.category is C.PERMANENT
        assert not outcome.retryable


# -- Facebook error codes --------------------------------------------------------

CASES = [
    # status, body, category, retryable
    (500, fb_error(1200), C.TRANSIENT, True),
    (500, fb_error(2), C.TRANSIENT, True),
    (400, fb_error(4), C.RATE_LIMITED, True),
    (400, fb_error(17), C.RATE_LIMITED, True),
    (400, fb_error(32), C.RATE_LIMITED, True),
    (400, fb_error(613), C.RATE_LIMITED, True),
    (400, fb_error(4, 2018354), C.RATE_LIMITED, True),
    (400, fb_error(9999, is_transient=True), C.TRANSIENT, True),
    (400, fb_error(551), C.USER_UNAVAILABLE, False),
    (400, fb_error(100), C.PERMANENT, False),
    (400, fb_error(100, 2018001), C.PERMANENT, False),
    (400, fb_error(10), C.WINDOW, False),
    (400, fb_error(10, 2018278), C.WINDOW, False),
    (400, fb_error(10, 2018065), C.WINDOW, False),
    (400, fb_error(190), C.AUTH, False),
    (401, fb_error(190, 463), C.AUTH, False),
    (400, fb_error(102), C.AUTH, False),
    # Known permanent codes win over is_transient: retrying cannot help.
    (400, fb_error(551, is_transient=True), C.USER_UNAVAILABLE, False),
    (400, fb_error(190, is_transient=True), C.AUTH, False),
    (400, fb_error(100, is_transient=True), C.PERMANENT, False),
    # Unknown codes: is_transient, then the status, decide.
    (400, fb_error(12345), C.PERMANENT, False),
    (500, fb_error(12345), C.TRANSIENT, True),
    (500, fb_error(12345, is_transient=False), C.PERMANENT, False),
    (429, fb_error(12345), C.RATE_LIMITED, True),
    # No Graph body at all: the status decides.
    (502, b"<html>Bad Gateway</html>", C.TRANSIENT, True),
    (503, None, C.TRANSIENT, True),
    (429, b"", C.RATE_LIMITED, True),
    (404, b"not found", C.PERMANENT, False),
    (400, {"error": "a string, not an object"}, C.PERMANENT, False),
]


@pytest.mark.parametrize(("status", "body", "category", "retryable"), CASES)
def test_error_categories(status, body, category, retryable) -> None:
    forms = [body]
    if isinstance(body, dict):
        forms += [json.dumps(body).encode(), json.dumps(body)]
    for form in forms:
        outcome = classify(status, form)
        assert isinstance(outcome, Failure)
        assert outcome.category is category
        assert outcome.retryable is retryable
        assert outcome.status == status


def test_graph_error_fields_are_kept() -> None:
    outcome = classify(400, fb_error(10, 2018278, is_transient=False, message="outside window"))
    assert isinstance(outcome, Failure)
    assert outcome.error == GraphError(
        code=10,
        subcode=2018278,
        type="OAuthException",
        message="outside window",
        fbtrace_id="AbC1",
        is_transient=False,
    )
    assert outcome.detail == "HTTP 400 (#10/2018278) outside window"
    prefixed = classify(400, fb_error(551, message="(#551) This person isn't available right now."))
    assert isinstance(prefixed, Failure)
    assert prefixed.detail == "HTTP 400 (#551) This person isn't available right now."


def test_missing_subcode_and_odd_field_types() -> None:
    body = {"error": {"code": "613", "error_subcode": True, "message": 5, "is_transient": "yes"}}
    outcome = classify(400, body)
    assert isinstance(outcome, Failure)
    assert outcome.error == GraphError(613, None, None, "", None, None)
    assert outcome.category is C.RATE_LIMITED


def test_invalid_utf8_and_invalid_json_do_not_raise() -> None:
    assert classify(500, b"\xff\xfe{").category is C.TRANSIENT  # type: ignore[union-attr]
    assert classify(400, b"{").category is C.PERMANENT  # type: ignore[union-attr]


def test_long_messages_are_cut_and_tokens_in_them_redacted() -> None:
    leak = "see https://graph.facebook.com/v21.0/me?access_token=EAAB123 " + "x" * 1000
    outcome = classify(400, fb_error(100, message=leak))
    assert isinstance(outcome, Failure)
    assert "EAAB123" not in outcome.detail
    assert "access_token=[redacted]" in outcome.detail
    assert len(outcome.detail) < 400


# -- redact --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "https://graph.facebook.com/v21.0/me/messages?access_token=EAAB.x-y_z",
            "https://graph.facebook.com/v21.0/me/messages?access_token=[redacted]",
        ),
        (
            "POST /me?fields=id&access_token=abc&appsecret_proof=def#frag",
            "POST /me?fields=id&access_token=[redacted]&appsecret_proof=[redacted]#frag",
        ),
        ("'http://x/?ACCESS_TOKEN=abc' 200", "'http://x/?ACCESS_TOKEN=[redacted]' 200"),
        ("next=%3Faccess_token%3Dabc", "next=%3Faccess_token%3D[redacted]"),
        ("no secrets here", "no secrets here"),
    ],
)
def test_redact(text, expected) -> None:
    assert redact(text) == expected


# -- results ---------------------------------------------------------------------


def test_outcome_keys() -> None:
    def failed(category, code, subcode):
        return SendFailed(category, code, subcode, 400, "", None, 1, 0.0, StopReason.NOT_RETRYABLE)

    assert SendOk("m_1", "1", 1, 0.0).outcome_key == "ok"
    assert failed(C.WINDOW, 10, 2018278).outcome_key == "window:10/2018278"
    assert failed(C.USER_UNAVAILABLE, 551, None).outcome_key == "user_unavailable:551"
    assert failed(C.TRANSPORT, None, None).outcome_key == "transport"
    assert failed(C.AUTH, 190, None).token_invalid
    assert not failed(C.PERMANENT, 100, None).token_invalid


# -- the retry schedule --------------------------------------------------------

TRANSIENT = Failure(C.TRANSIENT, 500, None, "")
PERMANENT = Failure(C.PERMANENT, 400, None, "")


def test_schedule_delays_are_the_backoff_of_the_injected_rng() -> None:
    backoff_policy = BackoffPolicy(initial=1.0, factor=2.0, maximum=30.0, jitter=0.5)
    policy = RetryPolicy(max_attempts=5, deadline=100.0, backoff=backoff_policy)
    schedule = RetrySchedule(policy, Backoff(backoff_policy, random.Random(7)), started=10.0)
    twin = Backoff(backoff_policy, random.Random(7))
    now = 10.0
    for attempt in range(1, 5):
        assert schedule.begin_attempt(now) == now + policy.attempt_timeout
        assert schedule.attempts == attempt
        decision = schedule.after_failure(TRANSIENT, now)
        delay = twin.next()
        assert decision == RetryAt(now + delay, delay)
        now += delay
    schedule.begin_attempt(now)
    assert schedule.after_failure(TRANSIENT, now) == GiveUp(StopReason.ATTEMPTS_EXHAUSTED)


def test_schedule_gives_up_on_permanent_failures_at_once() -> None:
    schedule = RetrySchedule(RetryPolicy(), Backoff(rng=random.Random(0)), started=0.0)
    schedule.begin_attempt(0.0)
    assert schedule.after_failure(PERMANENT, 0.0) == GiveUp(StopReason.NOT_RETRYABLE)


def test_schedule_does_not_sleep_past_the_deadline() -> None:
    no_jitter = BackoffPolicy(initial=1.0, factor=2.0, maximum=30.0, jitter=0.0)
    policy = RetryPolicy(max_attempts=10, deadline=5.0, attempt_timeout=2.0, backoff=no_jitter)
    schedule = RetrySchedule(policy, Backoff(no_jitter), started=0.0)
    assert schedule.begin_attempt(0.0) == 2.0
    assert schedule.after_failure(TRANSIENT, 0.0) == RetryAt(1.0, 1.0)
    assert schedule.begin_attempt(1.0) == 3.0
    assert schedule.after_failure(TRANSIENT, 1.0) == RetryAt(3.0, 2.0)
    assert schedule.begin_attempt(3.0) == 5.0  # the attempt timeout is cut to the deadline
    assert schedule.after_failure(TRANSIENT, 3.0) == GiveUp(StopReason.DEADLINE)


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"deadline": 0.0}, {"attempt_timeout": -1.0}]
)
def test_invalid_policies_are_refused(kwargs) -> None:
    with pytest.raises(ValueError, match="invalid retry policy"):
        RetryPolicy(**kwargs)
