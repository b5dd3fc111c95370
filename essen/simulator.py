"""A traffic simulator: realistic Messenger webhooks for ``essen dev`` and demos.

Several users talk to the page: greetings, questions the content answers,
quick-reply taps, postback buttons, photos, now and then a duplicate delivery
(Facebook redelivers) and, through the fake Graph API, now and then a failed
send.  Everything is drawn from one seeded RNG, so a seed replays the same
conversation; the rate is messages per second on the Trio clock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
from dataclasses import dataclass
from typing import Any

import httpx
import trio

__all__ = ("SimulatorConfig", "run")

log = logging.getLogger("essen.simulator")

TEXTS = (
    "hi",
    "hello",
    "Hallo!",
    "what are your opening hours?",
    "are you open on sunday",
    "can I see the menu",
    "where are you located?",
    "how do I get there",
    "phone number?",
    "do you have vegan options",
    "thanks!",
    "I want to talk to a person",
    "is the kitchen open",
    "my email is anna.schmidt@example.com, can you send the menu?",
    "call me on +49 170 1234567",
)
PAYLOADS = ("MENU", "HOURS", "LOCATION", "CONTACT", "GET_STARTED")


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    webhook_url: str
    app_secret: str
    page_id: str = "100000000000001"
    users: int = 25
    rate: float = 2.0
    duplicate_ratio: float = 0.03
    seed: int = 1


def _sign(body: bytes, secret: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def _item(rng: random.Random, psid: str, page_id: str, n: int, ms: int) -> dict[str, Any]:
    base = {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": ms}
    roll = rng.random()
    if roll < 0.65:
        return {**base, "message": {"mid": f"m_sim_{n}", "text": rng.choice(TEXTS)}}
    if roll < 0.8:
        payload = rng.choice(PAYLOADS[:4])
        return {
            **base,
            "message": {
                "mid": f"m_sim_{n}",
                "text": payload.title(),
                "quick_reply": {"payload": payload},
            },
        }
    if roll < 0.93:
        payload = rng.choice(PAYLOADS)
        return {
            **base,
            "postback": {"mid": f"m_sim_{n}", "title": payload.title(), "payload": payload},
        }
    return {
        **base,
        "message": {
            "mid": f"m_sim_{n}",
            "attachments": [
                {"type": "image", "payload": {"url": f"https://cdn.example.com/photo/{n}.jpg"}}
            ],
        },
    }


async def run(
    config: SimulatorConfig,
    *,
    http: httpx.AsyncClient | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Send simulated webhooks until cancelled."""
    rng = random.Random(config.seed)
    users = [f"{rng.randrange(10**15, 10**16)}" for _ in range(config.users)]
    owned = http is None
    client = http or httpx.AsyncClient(timeout=10.0)
    sent = 0
    try:
        task_status.started()
        while True:
            await trio.sleep(rng.expovariate(config.rate))
            sent += 1
            ms = 1_700_000_000_000 + int(trio.current_time() * 1000)
            item = _item(rng, rng.choice(users), config.page_id, sent, ms)
            body = json.dumps(
                {
                    "object": "page",
                    "entry": [{"id": config.page_id, "time": ms, "messaging": [item]}],
                }
            ).encode()
            deliveries = 2 if rng.random() < config.duplicate_ratio else 1
            for _ in range(deliveries):
                try:
                    response = await client.post(
                        config.webhook_url, content=body, headers=_sign(body, config.app_secret)
                    )
                    if response.status_code == 503:
                        await trio.sleep(1.0)  # as Facebook does: retry later
                except httpx.HTTPError as exc:
                    log.debug("simulated webhook failed: %r", exc)
    finally:
        if owned:
            with trio.CancelScope(shield=True):
                await client.aclose()
