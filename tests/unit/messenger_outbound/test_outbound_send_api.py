"""The Send API client against the fake Graph API, in-process under MockClock.

httpx's ``ASGITransport`` runs the fake's app in the calling task, so every
time below is Trio-clock time and exact: the backoff delays come from the
seeded RNG given to the client, and the fake stamps each request it receives.
"""

from __future__ import annotations

import itertools
import logging
import random
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx
import pytest
import trio

from essen.messenger.fake_graph import FakeGraph, create_fake_graph
from essen.messenger.rate_limit import RateLimiter
from essen.messenger.send_api import MessagingType, SendApiClient
from essen.messenger.send_policy import (
    FailureCategory,
    RetryPolicy,
    SendFailed,
    SendOk,
    StopReason,
)
from essen.realtime.backoff import Backoff, BackoffPolicy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

TOKEN = "EAAB-page-token-DO-NOT-LEAK"
GRAPH = "http://graph.test"
NO_JITTER = BackoffPolicy(initial=1.0, factor=2.0, maximum=30.0, jitter=0.0)


@asynccontextmanager
async def client_for(
    fake: FakeGraph,
    *,
    policy: RetryPolicy | None = None,
    limiter: RateLimiter | None = None,
    seed: int = 7,
    token: str = TOKEN,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[SendApiClient]:
    transport = transport or httpx.ASGITransport(app=fake.app)
    async with httpx.AsyncClient(transport=transport) as http:
        yield SendApiClient(
            http,
            page_token=token,
            graph_url=GRAPH,
            policy=policy or RetryPolicy(),
            limiter=limiter or RateLimiter(rate=1000.0, burst=100),
            rng=random.Random(seed),
        )


def new_fake(seed: int = 1) -> FakeGraph:
    return create_fake_graph(page_token=TOKEN, rng=random.Random(seed))


# -- request shapes ------------------------------------------------------------


async def test_send_message_posts_the_documented_body(autojump_clock) -> None:
    fake = new_fake()
    async with client_for(fake) as client:
        with trio.fail_after(10):
            result = await client.send_message("4242", {"text": "Hallo"})
    (seen,) = fake.received
    assert seen.body == {
        "recipient": {"id": "4242"},
        "messaging_type": "RESPONSE",
        "message": {"text": "Hallo"},
    }
    assert seen.token_valid
    assert seen.version == "v21.0"
    assert result == SendOk(seen.message_id, "4242", attempts=1, elapsed=0.0)
    assert result.message_id is not None
    assert result.message_id.startswith("m_")


async def test_message_tag_goes_with_its_messaging_type(autojump_clock) -> None:
    fake = new_fake()
    async with client_for(fake) as client:
        with trio.fail_after(10):
            result = await client.send_message(
                "1", {"text": "x"}, messaging_type=MessagingType.MESSAGE_TAG, tag="ACCOUNT_UPDATE"
            )
        assert result.ok
        assert fake.received[0].body == {
            "recipient": {"id": "1"},
            "messaging_type": "MESSAGE_TAG",
            "message": {"text": "x"},
            "tag": "ACCOUNT_UPDATE",
        }
        with pytest.raises(ValueError, match="tag"):
            await client.send_message("1", {"text": "x"}, tag="ACCOUNT_UPDATE")
        with pytest.raises(ValueError, match="tag"):
            await client.send_message("1", {"text": "x"}, messaging_type=MessagingType.MESSAGE_TAG)
        with pytest.raises(ValueError, match="psid"):
            await client.send_message("", {"text": "x"})


async def test_sender_actions_are_their_own_requests(autojump_clock) -> None:
    fake = new_fake()
    async with client_for(fake) as client:
        with trio.fail_after(10):
            seen_result = await client.mark_seen("77")
            typing_result = await client.typing_on("77")
    assert [r.body for r in fake.received] == [
        {"recipient": {"id": "77"}, "sender_action": "mark_seen"},
        {"recipient": {"id": "77"}, "sender_action": "typing_on"},
    ]
    assert seen_result == SendOk(None, "77", 1, 0.0)
    assert typing_result == SendOk(None, "77", 1, 0.0)


async def test_check_token(autojump_clock) -> None:
    fake = new_fake()
    async with client_for(fake) as good, client_for(fake, token="wrong") as bad:
        with trio.fail_after(10):
            ok = await good.check_token()
            rejected = await bad.check_token()
    assert ok == SendOk(None, None, 1, 0.0)
    assert isinstance(rejected, SendFailed)
    assert rejected.token_invalid
    assert (rejected.code, rejected.attempts) == (190, 1)


# -- retries -------------------------------------------------------------------


async def test_retry_schedule_is_exactly_the_injected_rngs(autojump_clock) -> None:
    backoff = BackoffPolicy(initial=1.0, factor=2.0, maximum=30.0, jitter=0.5)
    policy = RetryPolicy(max_attempts=5, deadline=120.0, backoff=backoff)
    fake = new_fake()
    fake.fail_next(3)  # 500, code 1200
    async with client_for(fake, policy=policy, seed=11) as client:
        with trio.fail_after(200):
            result = await client.send_message("9", {"text": "retry me"})
    twin = Backoff(backoff, random.Random(11))
    delays = [twin.next() for _ in range(3)]
    times = [r.received_at for r in fake.received]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps == pytest.approx(delays)
    assert len(set(delays)) == 3  # the jitter really did something
    assert [r.status for r in fake.received] == [500, 500, 500, 200]
    assert isinstance(result, SendOk)
    assert result.attempts == 4
    assert result.elapsed == pytest.approx(sum(delays))
    assert result.message_id == fake.received[-1].message_id
    stats = client.statistics()
    assert (stats.calls, stats.attempts, stats.retries) == (1, 4, 3)
    assert stats.outcomes == {"ok": 1}


OUTCOMES = [
    # fail_next kwargs, category, code, subcode, attempts (max 3), outcome_key
    ({"code": 1200}, FailureCategory.TRANSIENT, 1200, None, 3, "transient:1200"),
    ({"code": 2}, FailureCategory.TRANSIENT, 2, None, 3, "transient:2"),
    ({"status": 400, "code": 4}, FailureCategory.RATE_LIMITED, 4, None, 3, "rate_limited:4"),
    ({"status": 400, "code": 613}, FailureCategory.RATE_LIMITED, 613, None, 3, "rate_limited:613"),
    (
        {"status": 400, "code": 777, "is_transient": True},
        FailureCategory.TRANSIENT,
        777,
        None,
        3,
        "transient:777",
    ),
    ({"status": 503, "code": None}, FailureCategory.TRANSIENT, None, None, 3, "transient"),
    (
        {"status": 400, "code": 551},
        FailureCategory.USER_UNAVAILABLE,
        551,
        None,
        1,
        "user_unavailable:551",
    ),
    ({"status": 400, "code": 100}, FailureCategory.PERMANENT, 100, None, 1, "permanent:100"),
    (
        {"status": 400, "code": 10, "subcode": 2018278},
        FailureCategory.WINDOW,
        10,
        2018278,
        1,
        "window:10/2018278",
    ),
    (
        {"status": 400, "code": 190, "subcode": 463},
        FailureCategory.AUTH,
        190,
        463,
        1,
        "auth:190/463",
    ),
]


@pytest.mark.parametrize(("inject", "category", "code", "subcode", "attempts", "key"), OUTCOMES)
async def test_outcome_for_each_error_code(
    autojump_clock, inject, category, code, subcode, attempts, key
) -> None:
    policy = RetryPolicy(max_attempts=3, deadline=60.0, backoff=NO_JITTER)
    fake = new_fake()
    fake.fail_next(10, **inject)
    async with client_for(fake, policy=policy) as client:
        with trio.fail_after(100):
            result = await client.send_message("5", {"text": "hi"})
    assert isinstance(result, SendFailed)
    assert (result.category, result.code, result.subcode) == (category, code, subcode)
    assert result.attempts == attempts == len(fake.received)
    assert result.outcome_key == key
    assert result.status == inject.get("status", 500)
    assert result.stop is (
        StopReason.ATTEMPTS_EXHAUSTED if attempts > 1 else StopReason.NOT_RETRYABLE
    )
    assert result.elapsed == pytest.approx([0.0, 0.0, 0.0, 3.0][attempts])  # delays 1 + 2
    assert result.token_invalid is (category is FailureCategory.AUTH)
    assert client.statistics().outcomes == {key: 1}


async def test_rejected_token_flags_health_until_a_success(autojump_clock) -> None:
    fake = new_fake()
    async with client_for(fake) as client, client_for(fake, token="revoked") as revoked:
        with trio.fail_after(10):
            result = await revoked.send_message("1", {"text": "x"})
            assert isinstance(result, SendFailed)
            assert (result.category, result.code, result.subcode) == (
                FailureCategory.AUTH,
                190,
                467,
            )
            assert revoked.statistics().token_rejected
            fake.fail_next(1, status=400, code=190)
            await client.send_message("1", {"text": "x"})
            assert client.statistics().token_rejected
            await client.send_message("1", {"text": "x"})
            assert not client.statistics().token_rejected
    assert client.statistics().outcomes == {"auth:190": 1, "ok": 1}


async def test_total_deadline_stops_retries_early(autojump_clock) -> None:
    policy = RetryPolicy(max_attempts=10, deadline=5.0, attempt_timeout=2.0, backoff=NO_JITTER)
    fake = new_fake()
    fake.fail_next(10)
    async with client_for(fake, policy=policy) as client:
        with trio.fail_after(60):
            result = await client.send_message("1", {"text": "x"})
    # Attempts at 0, 1, 3; the next would start at 7, past the 5 s deadline.
    assert [r.received_at for r in fake.received] == pytest.approx([0.0, 1.0, 3.0], abs=1e-9)
    assert isinstance(result, SendFailed)
    assert (result.attempts, result.stop) == (3, StopReason.DEADLINE)
    assert result.elapsed == pytest.approx(3.0)


async def test_slow_answers_time_out_per_attempt(autojump_clock) -> None:
    policy = RetryPolicy(max_attempts=3, deadline=60.0, attempt_timeout=2.0, backoff=NO_JITTER)
    fake = new_fake()
    fake.latency(30.0)
    async with client_for(fake, policy=policy) as client:
        with trio.fail_after(100):
            result = await client.send_message("1", {"text": "x"})
    assert isinstance(result, SendFailed)
    assert result.category is FailureCategory.TRANSPORT
    assert (result.attempts, result.stop) == (3, StopReason.ATTEMPTS_EXHAUSTED)
    assert result.elapsed == pytest.approx(2 + 1 + 2 + 2 + 2)
    # The fake saw each request go away unanswered.
    assert [(r.status, r.answered_at) for r in fake.received] == [(None, None)] * 3


async def test_rate_limiter_paces_sends(autojump_clock) -> None:
    fake = new_fake()
    async with client_for(fake, limiter=RateLimiter(rate=2.0, burst=1)) as client:
        with trio.fail_after(10):
            start = trio.current_time()
            for i in range(5):
                assert (await client.send_message(str(i), {"text": "x"})).ok
    offsets = [r.received_at - start for r in fake.received]
    assert offsets == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])


async def test_courtesy_actions_are_skipped_when_the_budget_has_no_room(autojump_clock) -> None:
    """Under load "seen" and "typing" give way: the answers get the whole budget."""
    fake = new_fake()
    async with client_for(fake, limiter=RateLimiter(rate=2.0, burst=2)) as client:
        with trio.fail_after(10):
            # Idle: a token is free, the courtesy goes out and takes it.
            assert await client.mark_seen("1", if_idle=True) == SendOk(None, "1", 1, 0.0)
            assert (await client.send_message("1", {"text": "a"})).ok
            # The bucket is empty now: skipped at once, nothing waits.
            start = trio.current_time()
            assert await client.typing_on("2", if_idle=True) is None
            assert trio.current_time() == start
            assert (await client.send_message("2", {"text": "b"})).ok
    assert [r.sender_action or r.message["text"] for r in fake.received] == [  # type: ignore[index]
        "mark_seen",
        "a",
        "b",
    ]
    assert client.statistics().skipped_actions == 1


async def test_retries_wait_for_the_limiter_too(autojump_clock) -> None:
    fake = new_fake()
    fake.fail_next(1)
    policy = RetryPolicy(backoff=BackoffPolicy(initial=0.1, maximum=1.0, jitter=0.0))
    limiter = RateLimiter(rate=1.0, burst=1)
    async with client_for(fake, policy=policy, limiter=limiter) as client:
        with trio.fail_after(10):
            result = await client.send_message("1", {"text": "x"})
    assert [r.received_at for r in fake.received] == pytest.approx([0.0, 1.0], abs=1e-9)
    assert result == SendOk(fake.received[-1].message_id, "1", 2, pytest.approx(1.0))


async def test_no_token_before_the_deadline(autojump_clock) -> None:
    fake = new_fake()
    limiter = RateLimiter(rate=0.01, burst=1)
    policy = RetryPolicy(deadline=5.0)
    async with client_for(fake, policy=policy, limiter=limiter) as client:
        with trio.fail_after(60):
            assert (await client.send_message("1", {"text": "x"})).ok
            result = await client.send_message("2", {"text": "y"})
    assert isinstance(result, SendFailed)
    assert (result.category, result.attempts, result.stop) == (
        FailureCategory.RATE_LIMITED,
        0,
        StopReason.DEADLINE,
    )
    assert result.elapsed == pytest.approx(5.0)
    assert len(fake.received) == 1


async def test_cancellation_propagates(autojump_clock) -> None:
    fake = new_fake()
    fake.latency(10.0)
    async with client_for(fake) as client:
        with trio.fail_after(60):
            with trio.move_on_after(1.0) as scope:
                await client.send_message("1", {"text": "x"})
    assert scope.cancelled_caught
    assert client.statistics().outcomes == {}


# -- the token stays secret ------------------------------------------------------


def refusing_transport() -> httpx.MockTransport:
    def refuse(request: httpx.Request) -> httpx.Response:
        # Worst case: a transport error that quotes the URL, token and all.
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    return httpx.MockTransport(refuse)


async def test_transport_errors_are_retried_and_redacted(autojump_clock) -> None:
    policy = RetryPolicy(max_attempts=3, backoff=NO_JITTER)
    async with client_for(new_fake(), policy=policy, transport=refusing_transport()) as client:
        with trio.fail_after(60):
            result = await client.send_message("1", {"text": "x"})
    assert isinstance(result, SendFailed)
    assert (result.category, result.attempts) == (FailureCategory.TRANSPORT, 3)
    assert result.detail.startswith("ConnectError: cannot reach http://graph.test/v21.0/me/")
    assert TOKEN not in repr(result)
    assert "[redacted]" in result.detail


async def test_token_never_reaches_the_logs(autojump_clock, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    fake = new_fake()
    policy = RetryPolicy(max_attempts=2, backoff=NO_JITTER)
    async with client_for(fake, policy=policy) as client:
        with trio.fail_after(60):
            fake.fail_next(5, message=f"echoing {TOKEN} back")
            await client.send_message("1", {"text": "x"})
            fake.fail_next(1, status=400, code=190)
            await client.mark_seen("1")
            await client.send_message("1", {"text": "x"})
            assert TOKEN not in repr(client)
    async with client_for(fake, policy=policy, transport=refusing_transport()) as client:
        with trio.fail_after(60):
            await client.typing_on("1")
    assert TOKEN not in caplog.text
    # httpx did log the request URLs, redacted.
    assert "access_token=[redacted]" in caplog.text
    assert "Send API call failed after 2 attempt(s) (transient:1200" in caplog.text
