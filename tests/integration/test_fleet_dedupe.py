"""Several bot instances answer each Messenger event once, through real Redis.

Messenger redelivers a webhook POST it thinks failed; behind a load balancer
the copy can reach another bot instance than the original.  Two real bots
(loopback, one fake Graph API) share the machine's Redis (127.0.0.1:6379, a
cluster name of their own): every event delivered to both must be answered
exactly once.  Without Redis the claim fails open (answer, never lose) and
the bot's ``redis`` component says so.
"""

from __future__ import annotations

import random
import socket
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from essen.actors.health import Signal
from essen.bot import BotHandles, run_bot
from essen.config import load_bot_settings
from essen.messenger.fake_graph import create_fake_graph
from essen.messenger.fleet_dedupe import FleetDedupe
from essen.web.serving import serve_app
from tests.harness.bot_rig import (
    APP_SECRET,
    PAGE_ID,
    PAGE_TOKEN,
    SERVICE_SECRET,
    signed,
    text_event,
    webhook_body,
)

if TYPE_CHECKING:
    from pathlib import Path

    from essen.messenger.fake_graph import ReceivedRequest

pytestmark = pytest.mark.integration


def closed_port() -> int:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port: int = spare.getsockname()[1]
        return port  # nothing listens there once the socket is closed


def answers(received: tuple[ReceivedRequest, ...] | Any) -> list[str]:
    return [r.recipient_id for r in received if r.message is not None]


async def test_an_event_delivered_to_two_instances_is_answered_once(
    tmp_path: Path, machine_redis: str
) -> None:
    fake = create_fake_graph(page_token=PAGE_TOKEN, page_id=PAGE_ID, rng=random.Random(5))
    cluster = f"test-{uuid.uuid4().hex[:12]}"
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            graph = (await nursery.start(partial(serve_app, fake.app, "127.0.0.1", 0)))[0]

            async def bot(instance: str) -> BotHandles:
                settings = load_bot_settings(
                    essen_data_dir=tmp_path / instance,
                    port=0,
                    # No admin API here: the uplink keeps retrying, which is fine.
                    admin_backend_url=f"http://127.0.0.1:{closed_port()}",
                    bot_service_secret=SERVICE_SECRET,
                    bot_instance=instance,
                    fb_app_secret=APP_SECRET,
                    fb_page_access_token=PAGE_TOKEN,
                    fb_graph_url=graph,
                    redis_url=machine_redis,
                    essen_cluster=cluster,
                )
                handles: BotHandles = await nursery.start(
                    partial(run_bot, settings, host="127.0.0.1")
                )
                return handles

            one, two = await bot("bot-one"), await bot("bot-two")
            async with httpx.AsyncClient() as http:

                async def deliver(to: BotHandles, psid: str, mid: str) -> None:
                    body = webhook_body(text_event(psid, mid, "opening hours?", 1))
                    response = await http.post(
                        f"{to.urls[0]}/webhook", content=body, headers=signed(body)
                    )
                    assert response.status_code == 200

                # Ten events, each first to one instance, then redelivered to the other.
                for n in range(10):
                    await deliver(one if n % 2 else two, f"80{n:02d}", f"m_{n}")
                await fake.wait_for(lambda received: len(answers(received)) >= 10)
                for n in range(10):
                    await deliver(two if n % 2 else one, f"80{n:02d}", f"m_{n}")
                # A last new event to each: answered only after the copies before it
                # were judged (one dispatcher per bot, in arrival order).
                await deliver(one, "8100", "m_last_one")
                await deliver(two, "8101", "m_last_two")
                await fake.wait_for(lambda received: len(answers(received)) >= 12)
                answered = answers(fake.received)
            totals = [(await handles.metrics.snapshot()).totals for handles in (one, two)]
            nursery.cancel_scope.cancel()
    assert sorted(answered) == sorted([f"80{n:02d}" for n in range(10)] + ["8100", "8101"])
    for counted in totals:
        assert counted.get("duplicates") == 5
        assert counted["received"] == 6


async def test_without_redis_every_event_is_still_answered_and_health_says_so(
    machine_redis: str,
) -> None:
    signals: list[Signal] = []
    away = FleetDedupe(
        f"redis://127.0.0.1:{closed_port()}/0",
        cluster="test-away",
        instance="bot-one",
        ttl=60,
        signal=signals.append,
        retry_after=0.0,
    )
    here = FleetDedupe(
        machine_redis,
        cluster=f"test-{uuid.uuid4().hex[:12]}",
        instance="bot-two",
        ttl=60,
        signal=signals.append,
    )
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(away.run)
            await nursery.start(here.run)
            # Fails open: both copies would be answered rather than none.
            assert await away.claim("mid:m_1") is True
            assert await away.claim("mid:m_1") is True
            assert await here.claim("mid:m_1") is True
            assert await here.claim("mid:m_1") is False
            nursery.cancel_scope.cancel()
    degraded = [s for s in signals if s.status == "degraded"]
    assert len(degraded) == 1  # said once, not per message
    assert degraded[0].component == "redis"
    assert degraded[0].reason is not None
    assert "Redis unreachable" in degraded[0].reason
    assert Signal("redis", "healthy") in signals
    assert (away.unanswered, here.claims, here.lost_claims) == (2, 2, 1)
