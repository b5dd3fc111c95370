"""The bot under faults, in-process under MockClock (``bot_rig``): what breaks stays contained.

* An event whose handling raises counts as failed; the webhook keeps taking
  events and later messages are answered.  The bot has one public way in to
  such a crash (a Messenger item without a sender: the Send API client
  refuses an empty PSID with ValueError); a rule book that raises on one
  text is tested against ``essen.actors.webhook.run`` directly, since the
  assembled bot only takes rules from a content file, which cannot raise.
* The metrics actor crashing is restarted by the supervisor, and the admin
  sees it as ``health:changed`` for ``actors`` (degraded, then healthy).
  The crash is injected by a collector whose ``record`` raises once,
  installed where the assembly makes its collector (``essen.bot.MetricsCollector``).
* A rejected page token (Graph error 190) turns ``graph_api`` degraded at the
  admin; successful sends turn it healthy again.
* "Talk to a person" pauses the bot for that user only.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

import essen.bot
from essen.actors import webhook
from essen.actors.health import Signal
from essen.actors.webhook import WebhookConfig
from essen.clock import TrioWallClock
from essen.events import MessageProcessed
from essen.messenger.fake_graph import create_fake_graph
from essen.messenger.rate_limit import RateLimiter
from essen.messenger.rules import RuleBook
from essen.messenger.send_api import SendApiClient
from essen.messenger.send_policy import RetryPolicy
from essen.messenger.webhook import MessengerEvent, TextMessage, parse_webhook
from essen.metrics.collector import MessageHandled, MetricsCollector, Observation
from essen.web.bot_app import Inbound

from . import bot_rig as bot_rig_module
from .bot_rig import PAGE_ID, PAGE_TOKEN, BotRig, bot_rig, text_event, webhook_body
from .conftest import Switchboard

pytestmark = pytest.mark.harness

T0 = 1_700_000_000_000


def inbound_events(rig: BotRig) -> list[dict[str, Any]]:
    return [e for e in rig.admin.events if e["direction"] == "in"]


def answers_to(rig: BotRig, psid: str) -> list[dict[str, Any]]:
    """The messages (not sender actions) the fake Graph API accepted for ``psid``."""
    return [
        r.message
        for r in rig.fake.received
        if r.message is not None and r.recipient_id == psid and r.status == 200
    ]


def health_of(rig: BotRig, component: str) -> list[tuple[str, str | None]]:
    """The component's transitions as the admin saw them.

    On every (re)connect the bot restates each component's current status (a
    new admin would not know it otherwise); a restatement of the status the
    admin already has is not a transition, so it is folded away here.
    """
    seen: list[tuple[str, str | None]] = []
    for h in rig.admin.health:
        if h["component"] == component and (not seen or seen[-1][0] != h["status"]):
            seen.append((h["status"], h["reason"]))
    return seen


async def say(rig: BotRig, psid: str, mid: str, text: str, n: int) -> None:
    assert await rig.deliver(webhook_body(text_event(psid, mid, text, T0 + n))) == 1


async def handled(rig: BotRig, count: int) -> None:
    await rig.admin.wait_until(lambda admin: len(inbound_events(rig)) >= count)


# -- one event's crash ---------------------------------------------------------


async def test_an_event_that_crashes_its_handler_counts_as_failed_and_the_bot_goes_on(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The bot's rule book raises for one text (a bug in content handling).
    class Loader:
        @staticmethod
        def load(path: object = None) -> ExplodingRules:
            return ExplodingRules("explode")

    monkeypatch.setattr("essen.bot.RuleBook", Loader)
    async with bot_rig(tmp_path) as rig:
        with trio.fail_after(300):
            await say(rig, "6999999", "m_x", "explode", 0)
            # The webhook keeps accepting, and the next messages are answered.
            for n in range(5):
                await say(rig, f"{7_000_000 + n}", f"m_{n}", "menu", n + 1)
            await handled(rig, 6)
            snapshot = await rig.handles.metrics.snapshot()
    assert [len(answers_to(rig, f"{7_000_000 + n}")) for n in range(5)] == [1] * 5
    outcomes = sorted(e["outcome"] for e in inbound_events(rig))
    # The failed event still ends as one inbound event on the admin's feed.
    assert outcomes == ["answered"] * 5 + ["failed"]
    assert snapshot.totals["received"] == 6
    assert snapshot.totals["outcome:failed"] == 1
    assert snapshot.totals["outcome:answered"] == 5
    assert snapshot.windows["1m"].failed == 1
    failures = [r for r in caplog.records if r.name == "essen.webhook" and r.exc_info]
    assert [r.getMessage() for r in failures] == ["handling a text event failed"]
    assert failures[0].exc_info is not None
    assert failures[0].exc_info[0] is RuntimeError
    # The supervisor saw nothing: the failure stayed inside the event.
    assert rig.handles.supervisor.restarts == {}


async def test_an_item_without_a_sender_is_ignored_not_answered(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    senderless = {
        "recipient": {"id": PAGE_ID},
        "timestamp": T0,
        "message": {"mid": "m_x", "text": "hours"},
    }
    async with bot_rig(tmp_path) as rig:
        with trio.fail_after(300):
            assert (await rig.post(webhook_body(senderless))).status_code == 200
            await handled(rig, 1)
    assert [e["outcome"] for e in inbound_events(rig)] == ["ignored"]
    assert [r for r in rig.fake.received if r.message is not None] == []


class ExplodingRules:
    """The default rule book, except that one text makes ``reply_for`` raise."""

    def __init__(self, trigger: str) -> None:
        self.trigger = trigger
        self.book = RuleBook.load(None)

    def reply_for(self, event: MessengerEvent) -> Any:
        if isinstance(event, TextMessage) and event.text == self.trigger:
            raise RuntimeError(f"rule book exploded on {self.trigger!r}")
        return self.book.reply_for(event)


class WebhookActor:
    """``essen.actors.webhook.run`` with the fake Graph API and recording ends."""

    def __init__(self, rules: Any) -> None:
        self.fake = create_fake_graph(page_token=PAGE_TOKEN, page_id=PAGE_ID, rng=random.Random(2))
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.fake.app), base_url="http://graph.test"
        )
        self.send_api = SendApiClient(
            self.http,
            page_token=PAGE_TOKEN,
            graph_url="http://graph.test",
            policy=RetryPolicy(),
            limiter=RateLimiter(rate=250.0, burst=50),
            rng=random.Random(4),
        )
        self.rules = rules
        self.observed: list[Observation] = []
        self.published: list[MessageProcessed] = []
        self.signals: list[Signal] = []
        self.config = WebhookConfig("bot-1", b"pseudonym-" + b"k" * 32)
        self.inbox_send, self.inbox = trio.open_memory_channel[Inbound](100)
        self._changed = trio.Event()

    def _publish(self, item: MessageProcessed) -> None:
        self.published.append(item)
        self._changed.set()
        self._changed = trio.Event()

    def _observe(self, item: Observation) -> None:
        self.observed.append(item)
        self._changed.set()
        self._changed = trio.Event()

    async def run(self, task_status: trio.TaskStatus[None]) -> None:
        await webhook.run(
            self.inbox,
            config=self.config,
            rules=lambda: self.rules,
            send_api=self.send_api,
            observe=self._observe,
            publish=self._publish,
            signal=self.signals.append,
            wall=TrioWallClock(),
            task_status=task_status,
        )

    def put(self, psid: str, mid: str, text: str, n: int) -> None:
        for event in parse_webhook(
            webhook_body(text_event(psid, mid, text, T0 + n)), max_events=10
        ):
            self.inbox_send.send_nowait(Inbound(event, trio.current_time()))

    def outcomes(self) -> list[str]:
        return [o.outcome for o in self.observed if isinstance(o, MessageHandled)]

    async def wait_handled(self, count: int) -> None:
        while len(self.outcomes()) < count:
            await self._changed.wait()


async def test_a_rule_book_that_raises_fails_one_event_not_the_users_queue(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    actor = WebhookActor(ExplodingRules("explode"))
    with trio.fail_after(60):
        await nursery.start(actor.run)
        # One user, back to back: the failure must not stop the rest of their queue.
        actor.put("8000001", "m_1", "hi", 1)
        actor.put("8000001", "m_2", "explode", 2)
        actor.put("8000001", "m_3", "menu", 3)
        actor.put("8000002", "m_4", "hours", 4)
        await actor.wait_handled(4)
    by_user: dict[str, list[str]] = {}
    for o in actor.observed:
        if isinstance(o, MessageHandled):
            by_user.setdefault(o.user, []).append(o.outcome)
    assert sorted(by_user.values()) == [["answered"], ["answered", "failed", "answered"]]
    sent = [r.recipient_id for r in actor.fake.received if r.message is not None]
    assert sorted(sent) == ["8000001", "8000001", "8000002"]
    # The failed event is counted under its real (pseudonymous) user.
    failed = next(
        o for o in actor.observed if isinstance(o, MessageHandled) and o.outcome == "failed"
    )
    assert failed.user.startswith("u_")
    assert failed.user != "u_error"
    await actor.inbox_send.aclose()
    await actor.http.aclose()


async def test_a_failed_event_still_ends_as_one_inbound_message_processed(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """webhook.py's contract: "Each event ends as one MessageProcessed (inbound,
    with its outcome and latency)".  An event whose handling raised is counted
    as failed in the metrics, so the live feed and the admin must see it as
    failed too, or the dashboard's failed count has no line to show for it."""
    actor = WebhookActor(ExplodingRules("explode"))
    with trio.fail_after(60):
        await nursery.start(actor.run)
        actor.put("8000001", "m_1", "explode", 1)
        actor.put("8000001", "m_2", "menu", 2)
        await actor.wait_handled(2)
    assert actor.outcomes() == ["failed", "answered"]
    inbound = [(p.outcome, p.direction) for p in actor.published if p.direction == "in"]
    await actor.inbox_send.aclose()
    await actor.http.aclose()
    assert inbound == [("failed", "in"), ("answered", "in")]


# -- an actor's crash ----------------------------------------------------------


class CollectorFailingOnce(MetricsCollector):
    """Raises on the first handled message it is given to record, then works."""

    message = "collector fault"
    failures = 0

    def record(self, observation: Observation, now: float) -> None:
        if isinstance(observation, MessageHandled) and not CollectorFailingOnce.failures:
            CollectorFailingOnce.failures += 1
            raise RuntimeError(self.message)
        super().record(observation, now)


@pytest.fixture
def failing_collector(monkeypatch: pytest.MonkeyPatch) -> type[CollectorFailingOnce]:
    monkeypatch.setattr(CollectorFailingOnce, "failures", 0)
    monkeypatch.setattr(essen.bot, "MetricsCollector", CollectorFailingOnce)
    return CollectorFailingOnce


async def test_metrics_actor_crash_is_restarted_and_shown_to_the_admin(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    failing_collector: type[CollectorFailingOnce],
) -> None:
    async with bot_rig(tmp_path) as rig:
        with trio.fail_after(300):
            await say(rig, "9000001", "m_1", "hours", 1)
            await rig.admin.wait_until(
                lambda admin: ("healthy", "metrics restarted 1x") in health_of(rig, "actors")
            )
            for n in range(2, 5):
                await say(rig, "9000001", f"m_{n}", "menu", n)
            await handled(rig, 4)
            snapshot = await rig.handles.metrics.snapshot()
    assert failing_collector.failures == 1
    assert rig.handles.supervisor.restarts == {"metrics": 1}
    assert health_of(rig, "actors") == [
        ("degraded", "metrics restarted: RuntimeError: collector fault"),
        ("healthy", "metrics restarted 1x"),
    ]
    # The restarted actor kept the same collector and inbox: it counts what came after.
    assert snapshot.totals["received"] == 4
    assert snapshot.totals["outcome:answered"] == 3  # the 4th was the observation lost in the crash
    # And the bot never stopped answering.
    assert len(answers_to(rig, "9000001")) == 4


async def test_a_crash_with_a_long_error_message_still_reaches_the_admin(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    failing_collector: type[CollectorFailingOnce],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A child's error text goes into the ``actors`` signal's reason, and the
    wire contract caps a reason at 500 characters (ComponentStatus,
    HealthChanged).  A longer exception message (a repr of a big payload, a
    pydantic error) must not make the health actor crash on that signal."""
    monkeypatch.setattr(failing_collector, "message", "x" * 600)
    async with bot_rig(tmp_path) as rig:
        with trio.fail_after(300):
            await say(rig, "9000002", "m_1", "hours", 1)
            await rig.admin.wait_until(
                lambda admin: ("healthy", "metrics restarted 1x") in health_of(rig, "actors")
            )
    changes = health_of(rig, "actors")
    assert [status for status, _ in changes] == ["degraded", "healthy"]
    # The admin is told which actor crashed (the reason cut to fit), not that
    # the health actor itself fell over on the reason.
    reason = changes[0][1]
    assert reason is not None
    assert reason.startswith("metrics restarted: RuntimeError: xxx"), reason[:120]
    assert len(reason) <= 500
    assert rig.handles.supervisor.restarts == {"metrics": 1}


# -- the Graph API rejecting the token -----------------------------------------


async def test_token_rejected_turns_graph_api_degraded_and_success_heals_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    psid = "9100001"
    async with bot_rig(tmp_path) as rig:
        with trio.fail_after(600):
            # The start-up token check reported the Graph API healthy.
            await rig.admin.wait_until(lambda admin: health_of(rig, "graph_api") != [])
            assert health_of(rig, "graph_api") == [("healthy", None)]
            # mark_seen, typing_on and the answer all get 190: no retry (it cannot help).
            rig.fake.fail_next(3, status=400, code=190)
            await say(rig, psid, "m_0", "hours", 0)
            await rig.admin.wait_until(lambda admin: len(health_of(rig, "graph_api")) >= 2)
            await handled(rig, 1)
            first = inbound_events(rig)[0]
            # Later messages go through, and once enough sends succeed it is healthy again.
            n = 0
            while health_of(rig, "graph_api")[-1][0] != "healthy":
                n += 1
                assert n <= 10, health_of(rig, "graph_api")
                await say(rig, psid, f"m_{n}", "menu", n)
                await handled(rig, n + 1)
    assert (first["outcome"], first["error_code"]) == ("failed", 190)
    assert health_of(rig, "graph_api") == [
        ("healthy", None),
        ("degraded", "page access token rejected (190)"),
        ("healthy", None),
    ]
    assert rig.fake.statistics().injected == 3
    assert [e["outcome"] for e in inbound_events(rig)[1:]] == ["answered"] * n
    # The component's health reached the board the debug endpoint reads, too.
    assert rig.handles.runtime.health.components["graph_api"].status == "healthy"


# -- "talk to a person" --------------------------------------------------------


async def test_talk_to_a_person_pauses_the_bot_for_that_user_only(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    asker, other = "9200001", "9200002"
    async with bot_rig(tmp_path) as rig:
        with trio.fail_after(7200):
            await say(rig, asker, "m_1", "Can I talk to a person?", 1)
            await handled(rig, 1)
            handoff_text = answers_to(rig, asker)[0]["text"]
            requests_before = len([r for r in rig.fake.received if r.recipient_id == asker])
            # The same user again, and with the HUMAN payload: not answered.
            await say(rig, asker, "m_2", "what are your opening hours", 2)
            postback = {
                "sender": {"id": asker},
                "recipient": {"id": PAGE_ID},
                "timestamp": T0 + 3,
                "postback": {"title": "Talk to a person", "payload": "HUMAN", "mid": "m_3"},
            }
            assert await rig.deliver(webhook_body(postback)) == 1
            # Everyone else is answered as usual.
            await say(rig, other, "m_4", "menu", 4)
            await handled(rig, 4)
            requests_paused = len([r for r in rig.fake.received if r.recipient_id == asker])
            # The pause is for 30 minutes; after it, the bot answers again.
            await trio.sleep(30 * 60 + 1)
            await say(rig, asker, "m_5", "menu", 5)
            await handled(rig, 5)
    assert "someone will answer you here shortly" in handoff_text.lower()
    outcomes = [(e["user"], e["outcome"]) for e in inbound_events(rig)]
    asker_id = outcomes[0][0]
    assert [o for u, o in outcomes if u == asker_id] == ["handoff", "paused", "paused", "answered"]
    assert [o for u, o in outcomes if u != asker_id] == ["answered"]
    # While paused, nothing at all went to the user: not even "seen" or "typing".
    assert requests_paused == requests_before
    assert len(answers_to(rig, asker)) == 2
    assert len(answers_to(rig, other)) == 1


# -- a long reason from the network --------------------------------------------

#: What a reverse proxy in front of the admin API might answer while the admin is
#: down: a localized error page.  The client quotes up to 200 bytes of it as
#: repr() (each Cyrillic letter is 8 characters there), so the reason is over 500.
PROXY_PAGE = (
    "<html><body><h1>502</h1><p>"
    + "Сервис временно недоступен. Попробуйте позже. " * 5
    + "</p></body></html>"
).encode()


class BehindAProxy(Switchboard):
    """The admin's address: the admin stand-in when it runs, else the proxy's 502 page."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.target is not None:
            await self.target(scope, receive, send)
        elif scope["type"] == "http":
            headers = [(b"content-type", b"text/html; charset=utf-8")]
            await send({"type": "http.response.start", "status": 502, "headers": headers})
            await send({"type": "http.response.body", "body": PROXY_PAGE})
        else:
            await send({"type": "websocket.close", "code": 1011})


async def test_bot_survives_starting_while_the_admin_proxy_answers_an_error_page(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The uplink's connection error becomes the ``uplink`` component's reason.
    The admin API being down must cost the bot nothing but the uplink, for as
    long as it takes; it must not take the health actor, and then the whole
    bot, down with it."""
    monkeypatch.setattr(bot_rig_module, "Switchboard", BehindAProxy)
    async with bot_rig(tmp_path, admin_up=False) as rig:
        with trio.fail_after(900):
            await trio.sleep(300)  # five minutes of simulated time with the admin away
            assert rig.handles.supervisor.restarts == {}
            uplink = rig.handles.runtime.health.components["uplink"]
            assert uplink.status == "degraded"
            assert uplink.reason is not None
            assert uplink.reason.startswith("handshake refused: HTTP 502")
            # Messages are answered meanwhile.
            await say(rig, "9300001", "m_1", "hours", 1)
            await rig.fake.wait_for(lambda received: any(r.message for r in received))
            await rig.start_admin()
            await rig.admin.wait_until(lambda admin: ("healthy", None) in health_of(rig, "uplink"))
            await handled(rig, 1)
