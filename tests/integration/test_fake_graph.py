"""The Send API client and the fake Graph API over real HTTP on loopback.

The fake is served by Hypercorn (``serve_app``, port 0); the client uses a
plain ``httpx.AsyncClient``; a second client plays "another process" driving
the fake through its ``/_fake/`` admin API.  Real clock: backoff delays are
kept to milliseconds, every test is bounded by ``fail_after``, and nothing
waits by sleeping.
"""

from __future__ import annotations

import random
from collections import Counter
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx
import pytest
import trio

from essen.messenger.fake_graph import FakeGraph, create_fake_graph
from essen.messenger.rate_limit import RateLimiter
from essen.messenger.send_api import SendApiClient
from essen.messenger.send_policy import FailureCategory, RetryPolicy, SendFailed, SendOk
from essen.realtime.backoff import BackoffPolicy
from essen.web.serving import serve_app

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.integration

TOKEN = "EAAB-integration-token"
QUICK = BackoffPolicy(initial=0.005, factor=2.0, maximum=0.05, jitter=0.5)


@pytest.fixture
async def served(nursery: trio.Nursery) -> tuple[FakeGraph, str]:
    fake = create_fake_graph(page_token=TOKEN, rng=random.Random(2024))
    urls = await nursery.start(serve_app, fake.app, "127.0.0.1", 0)
    return fake, urls[0]


@asynccontextmanager
async def send_api(url: str, policy: RetryPolicy, seed: int = 1) -> AsyncIterator[SendApiClient]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield SendApiClient(
            http,
            page_token=TOKEN,
            graph_url=url,
            policy=policy,
            limiter=RateLimiter(),
            rng=random.Random(seed),
        )


async def test_replies_are_recorded(served) -> None:
    fake, url = served
    async with send_api(url, RetryPolicy(backoff=QUICK)) as client:
        with trio.fail_after(20):
            seen = await client.mark_seen("p1")
            typing = await client.typing_on("p1")
            results = [await client.send_message("p1", {"text": f"reply {i}"}) for i in range(3)]
            records = await fake.wait_for(5)
    assert seen == SendOk(None, "p1", 1, seen.elapsed)
    assert typing.ok
    assert [r.sender_action for r in records[:2]] == ["mark_seen", "typing_on"]
    assert [r.message for r in records[2:]] == [{"text": f"reply {i}"} for i in range(3)]
    assert all(r.token_valid and r.status == 200 for r in records)
    assert [r.message_id for r in records[2:]] == [
        res.message_id for res in results if isinstance(res, SendOk)
    ]
    # The token crossed the wire as a query parameter and was never stored.
    assert all(TOKEN not in repr(r) for r in records)


async def test_failures_injected_by_count(served) -> None:
    fake, url = served
    async with send_api(url, RetryPolicy(max_attempts=5, backoff=QUICK)) as client:
        with trio.fail_after(20):
            fake.fail_next(2, status=503, code=2)
            retried = await client.send_message("p1", {"text": "through"})
            fake.fail_next(1, status=400, code=551)
            unavailable = await client.send_message("p2", {"text": "blocked"})
    assert isinstance(retried, SendOk)
    assert retried.attempts == 3
    assert isinstance(unavailable, SendFailed)
    assert (unavailable.category, unavailable.code, unavailable.attempts) == (
        FailureCategory.USER_UNAVAILABLE,
        551,
        1,
    )
    assert [(r.status, r.error_code) for r in fake.received] == [
        (503, 2),
        (503, 2),
        (200, None),
        (400, 551),
    ]


async def test_failures_injected_by_count_through_the_admin_api(served) -> None:
    fake, url = served
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as admin:
        with trio.fail_after(20):
            configured = await admin.post(
                "/_fake/fail", json={"count": 2, "status": 400, "code": 613}
            )
            assert configured.json()["pending_failures"] == 2
            async with send_api(url, RetryPolicy(max_attempts=5, backoff=QUICK)) as client:
                result = await client.send_message("p1", {"text": "x"})
            listing = (await admin.get("/_fake/received", params={"at_least": 3})).json()
    assert isinstance(result, SendOk)
    assert result.attempts == 3
    assert [r["error_code"] for r in listing["received"]] == [613, 613, None]
    assert listing["injected"] == 2
    assert fake.statistics().pending_failures == 0


async def test_thirty_percent_failures_all_delivered_with_counted_retries(served) -> None:
    fake, url = served
    n_messages = 60
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as admin:
        with trio.fail_after(60):
            configured = await admin.post("/_fake/fail", json={"rate": 0.3, "code": 1200})
            assert configured.json()["failure_rate"] == 0.3
            policy = RetryPolicy(max_attempts=12, deadline=30.0, backoff=QUICK)
            results: dict[str, SendOk | SendFailed] = {}
            async with send_api(url, policy) as client:

                async def deliver(psid: str) -> None:
                    results[psid] = await client.send_message(psid, {"text": f"hi {psid}"})

                async with trio.open_nursery() as nursery:
                    for i in range(n_messages):
                        nursery.start_soon(deliver, f"user-{i}")
                stats = client.statistics()
            listing = (await admin.get("/_fake/received")).json()

    assert all(isinstance(r, SendOk) for r in results.values()), results
    attempts = sum(r.attempts for r in results.values())
    retries = attempts - n_messages
    # Every retry the client counted is a failure the fake injected, and back.
    assert retries == stats.retries == listing["injected"] == fake.statistics().injected
    assert attempts == listing["total"] == stats.attempts
    assert retries > 0
    assert 0.15 < retries / attempts < 0.45  # 0.3 expected
    assert stats.outcomes == {"ok": n_messages}
    # Each user got exactly one accepted message, the one the client reported.
    accepted = [r for r in listing["received"] if r["status"] == 200]
    assert Counter(r["recipient_id"] for r in accepted) == Counter(results.keys())
    assert {r["recipient_id"]: r["message_id"] for r in accepted} == {
        psid: r.message_id for psid, r in results.items()
    }


async def test_wrong_token_over_http(served) -> None:
    _fake, url = served
    async with httpx.AsyncClient(timeout=5.0) as http:
        client = SendApiClient(
            http,
            page_token="not-the-token",
            graph_url=url,
            policy=RetryPolicy(backoff=QUICK),
            limiter=RateLimiter(),
            rng=random.Random(0),
        )
        with trio.fail_after(20):
            checked = await client.check_token()
            sent = await client.send_message("p1", {"text": "x"})
    for result in (checked, sent):
        assert isinstance(result, SendFailed)
        assert result.token_invalid
        assert result.attempts == 1
    assert client.statistics().token_rejected
