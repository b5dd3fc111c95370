"""The bot as it runs in production, over real loopback sockets.

Signed webhook POSTs to a listening bot; the fake Graph API (on its own port)
receives the answers; a Socket.IO server standing in for the admin API
receives the batched events over a real polling→WebSocket connection.
"""

from __future__ import annotations

import json
import random
from functools import partial

import httpx
import pytest
import trio

from essen.bot import run_bot
from essen.config import load_bot_settings
from essen.messenger.fake_graph import create_fake_graph
from essen.realtime import SocketIOMount
from essen.web.serving import serve_app
from tests.harness.bot_rig import (
    APP_SECRET,
    PAGE_ID,
    PAGE_TOKEN,
    SERVICE_SECRET,
    make_admin,
    signed,
    text_event,
    webhook_body,
)

pytestmark = pytest.mark.integration

DEBUG_TOKEN = "debug-" + "d" * 32


async def test_signed_posts_are_answered_and_streamed_to_the_admin(tmp_path) -> None:
    fake = create_fake_graph(page_token=PAGE_TOKEN, page_id=PAGE_ID, rng=random.Random(3))
    admin = make_admin()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            graph_urls = await nursery.start(partial(serve_app, fake.app, "127.0.0.1", 0))
            await nursery.start(admin.server.run)
            mount = SocketIOMount(None, admin.server, ("/api/socket.io/",))
            admin_urls = await nursery.start(
                partial(serve_app, mount, "127.0.0.1", 0, socketio=mount)
            )
            settings = load_bot_settings(
                essen_data_dir=tmp_path,
                port=0,
                admin_backend_url=admin_urls[0],
                bot_service_secret=SERVICE_SECRET,
                bot_instance="bot-loopback",
                fb_app_secret=APP_SECRET,
                fb_page_access_token=PAGE_TOKEN,
                fb_graph_url=graph_urls[0],
                debug_token=DEBUG_TOKEN,
                metrics_interval=0.5,
            )
            handles = await nursery.start(partial(run_bot, settings, host="127.0.0.1"))
            bot_url = handles.urls[0]
            async with httpx.AsyncClient(base_url=bot_url) as http:
                # The SSE stream sees what the admin sees.
                async with http.stream(
                    "GET", "/debug/message-stream",
                    headers={"Authorization": f"Bearer {DEBUG_TOKEN}"},
                ) as stream:
                    lines = stream.aiter_lines()
                    assert await anext(lines) == ": connected"
                    for n in range(20):
                        body = webhook_body(
                            text_event(f"70000{n % 4}", f"m_{n}", "opening hours?", 1 + n)
                        )
                        response = await http.post("/webhook", content=body, headers=signed(body))
                        assert response.status_code == 200
                        assert response.text == "EVENT_RECEIVED"
                    first = None
                    async for line in lines:
                        if line.startswith("data: "):
                            first = json.loads(line[6:])
                            break
                    assert first is not None
                    assert first["instance"] == "bot-loopback"
                await fake.wait_for(
                    lambda received: sum(1 for r in received if r.message is not None) >= 20
                )
                await admin.wait_until(
                    lambda a: sum(1 for e in a.events if e["direction"] == "in") >= 20
                    and len(a.snapshots) >= 1
                )
                answers = [r for r in fake.received if r.message is not None]
                assert {r.recipient_id for r in answers} == {f"70000{i}" for i in range(4)}
                assert all("hour" in json.dumps(r.message).lower() for r in answers)
                # Batched: 40 events (20 in, 20 out) arrived in fewer than 40 emits.
                assert len(admin.batches) < 40
                snapshot = admin.snapshots[-1]
                assert snapshot["instance"] == "bot-loopback"
                # Debug endpoints: public quick health, the rest behind the bearer token.
                quick = await http.get("/debug/health-quick")
                assert quick.status_code == 200
                assert quick.json()["status"] in ("healthy", "degraded")
                assert (await http.get("/debug/metrics")).status_code == 401
                wrong = {"Authorization": "Bearer nope"}
                assert (await http.get("/debug/system-stats", headers=wrong)).status_code == 401
                ok = {"Authorization": f"Bearer {DEBUG_TOKEN}"}
                metrics = (await http.get("/debug/metrics", headers=ok)).json()
                assert metrics["totals"]["received"] == 20
                stats = (await http.get("/debug/system-stats", headers=ok)).json()
                assert stats["rss_bytes"] > 0
                assert stats["health"]["uplink"]["status"] == "healthy"
            nursery.cancel_scope.cancel()
