"""The fake Graph API in-process: contract checks, records, injection, admin API."""

from __future__ import annotations

import random
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
import trio.testing

from essen.messenger.fake_graph import (
    Endpoint,
    FakeGraph,
    Overflow,
    RecordPolicy,
    create_fake_graph,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

TOKEN = "fake-page-token"
URL = "/v21.0/me/messages"
TEXT = {"recipient": {"id": "42"}, "messaging_type": "RESPONSE", "message": {"text": "hi"}}


@asynccontextmanager
async def talk_to(fake: FakeGraph) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=fake.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://graph.test") as http:
        yield http


async def send(http: httpx.AsyncClient, body: Any = TEXT, token: str | None = TOKEN) -> Any:
    params = {"access_token": token} if token is not None else {}
    return await http.post(URL, params=params, json=body)


def new_fake(seed: int = 1, **kwargs: Any) -> FakeGraph:
    return create_fake_graph(page_token=TOKEN, rng=random.Random(seed), **kwargs)


# -- the contract ----------------------------------------------------------------


async def test_message_answer_and_record(autojump_clock) -> None:
    fake = new_fake()
    async with talk_to(fake) as http:
        with trio.fail_after(10):
            response = await send(http)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert answer["recipient_id"] == "42"
    assert answer["message_id"].startswith("m_")
    (record,) = fake.received
    assert record.endpoint is Endpoint.MESSAGES
    assert (record.recipient_id, record.messaging_type, record.sender_action) == (
        "42",
        "RESPONSE",
        None,
    )
    assert record.message == {"text": "hi"}
    assert (record.status, record.message_id, record.injected) == (200, answer["message_id"], False)
    assert TOKEN not in repr(record)


async def test_ids_repeat_with_the_seed(autojump_clock) -> None:
    answers = []
    for _ in range(2):
        async with talk_to(new_fake(seed=5)) as http:
            with trio.fail_after(10):
                answers.append([(await send(http)).json()["message_id"] for _ in range(3)])
    assert answers[0] == answers[1]
    assert len(set(answers[0])) == 3


async def test_sender_action_answer(autojump_clock) -> None:
    fake = new_fake()
    async with talk_to(fake) as http:
        with trio.fail_after(10):
            response = await send(http, {"recipient": {"id": "42"}, "sender_action": "typing_on"})
    assert (response.status_code, response.json()) == (200, {"recipient_id": "42"})
    assert fake.received[0].sender_action == "typing_on"


@pytest.mark.parametrize("token", [None, "wrong", ""])
async def test_bad_token_is_error_190_shaped_like_facebooks(autojump_clock, token) -> None:
    fake = new_fake()
    async with talk_to(fake) as http:
        with trio.fail_after(10):
            response = await send(http, token=token)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code", "error_subcode", "fbtrace_id"}
    assert (error["type"], error["code"], error["error_subcode"]) == ("OAuthException", 190, 467)
    assert fake.received[0].token_valid is False
    assert fake.received[0].error_code == 190


async def test_bearer_header_is_accepted_too(autojump_clock) -> None:
    fake = new_fake()
    async with talk_to(fake) as http:
        with trio.fail_after(10):
            response = await http.post(URL, json=TEXT, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200


async def test_me_endpoint(autojump_clock) -> None:
    fake = new_fake()
    async with talk_to(fake) as http:
        with trio.fail_after(10):
            good = await http.get("/v21.0/me", params={"access_token": TOKEN})
            bad = await http.get("/v21.0/me", params={"access_token": "nope"})
            old = await http.get("/latest/me", params={"access_token": TOKEN})
    assert good.json() == {"id": fake.page_id, "name": fake.page_name}
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, 190)
    assert (old.status_code, old.json()["error"]["code"]) == (400, 2500)
    assert [r.endpoint for r in fake.received] == [Endpoint.ME] * 3


def with_message(**message: Any) -> dict[str, Any]:
    return {"recipient": {"id": "1"}, "messaging_type": "RESPONSE", "message": message}


BAD_BODIES = [
    pytest.param("not json", id="not-json"),
    pytest.param([1], id="not-object"),
    pytest.param({"message": {"text": "x"}, "messaging_type": "RESPONSE"}, id="no-recipient"),
    pytest.param({**TEXT, "recipient": {"id": 42}}, id="numeric-recipient"),
    pytest.param({**TEXT, "recipient": {"id": ""}}, id="empty-recipient"),
    pytest.param({"recipient": {"id": "1"}}, id="neither-message-nor-action"),
    pytest.param({**TEXT, "sender_action": "typing_on"}, id="both"),
    pytest.param({"recipient": {"id": "1"}, "sender_action": "dance"}, id="bad-action"),
    pytest.param({"recipient": {"id": "1"}, "message": {"text": "x"}}, id="no-messaging-type"),
    pytest.param({**TEXT, "messaging_type": "PUSH"}, id="bad-messaging-type"),
    pytest.param({**TEXT, "messaging_type": "MESSAGE_TAG"}, id="tag-missing"),
    pytest.param({**TEXT, "message": "hi"}, id="message-not-object"),
    pytest.param(with_message(), id="empty-message"),
    pytest.param(with_message(text=""), id="empty-text"),
    pytest.param(with_message(text=5), id="text-not-string"),
    pytest.param(with_message(text="x" * 2001), id="text-too-long"),
    pytest.param(with_message(text="x", attachment={"type": "image"}), id="text-and-attachment"),
    pytest.param(with_message(attachment="img"), id="attachment-not-object"),
    pytest.param(with_message(text="x", quick_replies=[]), id="no-quick-replies"),
    pytest.param(with_message(text="x", quick_replies=[{}] * 14), id="too-many-quick-replies"),
    pytest.param(with_message(text="x", quick_replies=["a"]), id="quick-reply-not-object"),
]


@pytest.mark.parametrize("body", BAD_BODIES)
async def test_malformed_bodies_get_error_100(autojump_clock, body) -> None:
    fake = new_fake()
    fake.fail_next(1)  # validation comes first: this stays pending
    async with talk_to(fake) as http:
        with trio.fail_after(10):
            if isinstance(body, str):
                response = await http.post(URL, params={"access_token": TOKEN}, content=body)
            else:
                response = await send(http, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["type"]) == (100, "OAuthException")
    assert error["message"].startswith("(#100)")
    assert fake.statistics().pending_failures == 1


@pytest.mark.parametrize(
    "body",
    [
        with_message(text="x" * 2000),
        with_message(attachment={"type": "image", "payload": {"url": "https://x/y.png"}}),
        with_message(text="pick", quick_replies=[{"content_type": "text", "title": "a"}] * 13),
        {**TEXT, "messaging_type": "MESSAGE_TAG", "tag": "ACCOUNT_UPDATE"},
        {"recipient": {"id": "1"}, "sender_action": "mark_seen"},
    ],
)
async def test_well_formed_bodies_are_accepted(autojump_clock, body) -> None:
    async with talk_to(new_fake()) as http:
        with trio.fail_after(10):
            assert (await send(http, body)).status_code == 200


# -- failure injection -----------------------------------------------------------


async def test_fail_next_queues_failures_in_order(autojump_clock) -> None:
    fake = new_fake()
    fake.fail_next(2)
    fake.fail_next(1, status=400, code=551, subcode=None)
    fake.fail_next(1, status=400, code=10, subcode=2018278, message="custom", is_transient=False)
    async with talk_to(fake) as http:
        with trio.fail_after(10):
            answers = [await send(http) for _ in range(5)]
    assert [a.status_code for a in answers] == [500, 500, 400, 400, 200]
    errors = [a.json()["error"] for a in answers[:4]]
    assert [e["code"] for e in errors] == [1200, 1200, 551, 10]
    assert errors[0]["message"] == "(#1200) Temporary send message failure. Please try again later"
    assert "error_subcode" not in errors[0]
    assert errors[3] == {
        "message": "custom",
        "type": "OAuthException",
        "code": 10,
        "error_subcode": 2018278,
        "is_transient": False,
        "fbtrace_id": errors[3]["fbtrace_id"],
    }
    assert [r.injected for r in fake.received] == [True] * 4 + [False]
    assert fake.statistics().injected == 4


async def test_non_json_failure_like_a_proxy(autojump_clock) -> None:
    fake = new_fake()
    fake.fail_next(1, status=502, code=None)
    async with talk_to(fake) as http:
        with trio.fail_after(10):
            response = await send(http)
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert fake.received[0].error_code is None


async def test_bad_tokens_do_not_use_up_injected_failures(autojump_clock) -> None:
    fake = new_fake()
    fake.fail_next(1)
    async with talk_to(fake) as http:
        with trio.fail_after(10):
            assert (await send(http, token="bad")).json()["error"]["code"] == 190
            assert (await send(http)).json()["error"]["code"] == 1200


async def test_fail_rate_is_seeded_and_roughly_right(autojump_clock) -> None:
    runs: list[list[int]] = []
    for seed in (3, 3, 4):
        fake = new_fake(seed)
        fake.fail_rate(0.3, status=503, code=2)
        async with talk_to(fake) as http:
            with trio.fail_after(60):
                runs.append([(await send(http)).status_code for _ in range(500)])
        assert fake.statistics().injected == runs[-1].count(503)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert 110 < runs[0].count(503) < 190  # 150 expected; the seed makes it exact


async def test_fail_rate_extremes_and_clear(autojump_clock) -> None:
    fake = new_fake()
    async with talk_to(fake) as http:
        with trio.fail_after(10):
            fake.fail_rate(1.0)
            assert {(await send(http)).status_code for _ in range(5)} == {500}
            fake.clear_failures()
            assert {(await send(http)).status_code for _ in range(5)} == {200}
    with pytest.raises(ValueError, match="between"):
        fake.fail_rate(1.5)
    with pytest.raises(ValueError, match="error status"):
        fake.fail_next(1, status=200)


async def test_latency_runs_on_the_trio_clock(autojump_clock) -> None:
    fake = new_fake()
    fake.latency(2.5)
    async with talk_to(fake) as http:
        with trio.fail_after(10):
            start = trio.current_time()
            await send(http)
            assert trio.current_time() - start == pytest.approx(2.5)
    (record,) = fake.received
    assert record.answered_at is not None
    assert record.answered_at - record.received_at == pytest.approx(2.5)


async def test_abandoned_request_is_recorded_unanswered(autojump_clock) -> None:
    fake = new_fake()
    fake.latency(5.0)
    async with talk_to(fake) as http:
        with trio.fail_after(10):
            with trio.move_on_after(1.0):
                await send(http)
    (record,) = fake.received
    assert (record.status, record.answered_at, record.recipient_id) == (None, None, "42")


# -- waiting and bounds ------------------------------------------------------------


async def test_wait_for_count_and_predicate_wake_on_records(autojump_clock) -> None:
    fake = new_fake()
    woke: dict[str, float] = {}

    async def wait_count() -> None:
        await fake.wait_for(3)
        woke["count"] = trio.current_time()

    async def wait_predicate() -> None:
        records = await fake.wait_for(lambda rs: any(r.recipient_id == "b" for r in rs))
        assert records[-1].recipient_id == "b"
        woke["predicate"] = trio.current_time()

    async with talk_to(fake) as http:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_count)
                nursery.start_soon(wait_predicate)
                await trio.testing.wait_all_tasks_blocked()
                start = trio.current_time()
                for i, recipient in enumerate(["a", "b", "c"]):
                    await trio.sleep_until(start + i + 1)
                    await send(http, {**TEXT, "recipient": {"id": recipient}})
    assert woke == {"predicate": pytest.approx(start + 2), "count": pytest.approx(start + 3)}


async def test_wait_for_returns_at_once_when_already_true(autojump_clock) -> None:
    fake = new_fake()
    with trio.fail_after(10):
        assert await fake.wait_for(0) == ()
        with trio.CancelScope() as scope:
            scope.cancel()
            await fake.wait_for(0)  # checkpoints even so
    assert scope.cancelled_caught


@pytest.mark.parametrize(
    ("overflow", "kept"),
    [(Overflow.DROP_OLDEST, ["2", "3", "4"]), (Overflow.DROP_NEWEST, ["0", "1", "2"])],
)
async def test_records_are_bounded(autojump_clock, overflow, kept) -> None:
    fake = new_fake(record_policy=RecordPolicy(max_records=3, overflow=overflow))
    async with talk_to(fake) as http:
        with trio.fail_after(10):
            for i in range(5):
                await send(http, {**TEXT, "recipient": {"id": str(i)}})
            assert len(await fake.wait_for(5)) == 3  # counts answered, not kept
    assert [r.recipient_id for r in fake.received] == kept
    stats = fake.statistics()
    assert (stats.total, stats.recorded, stats.dropped) == (5, 3, 2)


# -- the admin API -----------------------------------------------------------------


async def test_admin_fail_by_count_and_rate(autojump_clock) -> None:
    fake = new_fake()
    async with talk_to(fake) as http:
        with trio.fail_after(10):
            state = await http.post("/_fake/fail", json={"count": 2, "status": 400, "code": 613})
            assert state.json()["pending_failures"] == 2
            assert [(await send(http)).status_code for _ in range(3)] == [400, 400, 200]
            state = await http.post("/_fake/fail", json={"rate": 1.0, "code": None, "status": 503})
            assert state.json()["failure_rate"] == 1.0
            assert (await send(http)).status_code == 503
            state = await http.post("/_fake/fail", json={"clear": True})
            assert (state.json()["failure_rate"], state.json()["pending_failures"]) == (0.0, 0)
            assert (await send(http)).status_code == 200


@pytest.mark.parametrize(
    "spec",
    [
        [1],
        {"count": "2"},
        {"count": -1},
        {"count": True},
        {"rate": 2},
        {"rate": 0.5, "status": 200},
        {"count": 1, "code": "x"},
        {"count": 1, "message": 5},
        {"count": 1, "is_transient": "yes"},
    ],
)
async def test_admin_fail_refuses_bad_specs(autojump_clock, spec) -> None:
    fake = new_fake()
    async with talk_to(fake) as http:
        with trio.fail_after(10):
            response = await http.post("/_fake/fail", json=spec)
    assert response.status_code == 400
    assert "error" in response.json()
    assert fake.statistics().pending_failures == 0


async def test_admin_latency_and_reset(autojump_clock) -> None:
    fake = new_fake()
    async with talk_to(fake) as http:
        with trio.fail_after(10):
            assert (await http.post("/_fake/latency", json={"seconds": 1.5})).json()[
                "latency"
            ] == 1.5
            assert (await http.post("/_fake/latency", json={"seconds": -1})).status_code == 400
            start = trio.current_time()
            await send(http)
            assert trio.current_time() - start == pytest.approx(1.5)
            fake.fail_next(3)
            state = (await http.post("/_fake/reset")).json()
    assert state == {
        "total": 0,
        "recorded": 0,
        "dropped": 0,
        "injected": 0,
        "pending_failures": 0,
        "failure_rate": 0.0,
        "latency": 0.0,
    }


async def test_admin_received_long_polls_and_pages(autojump_clock) -> None:
    fake = new_fake()
    async with talk_to(fake) as http, talk_to(fake) as admin:
        with trio.fail_after(30):
            await send(http)
            got: dict[str, Any] = {}

            async def poll() -> None:
                response = await admin.get("/_fake/received?since=1&at_least=2&timeout=20")
                got.update(response.json())
                got["at"] = trio.current_time()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(poll)
                await trio.testing.wait_all_tasks_blocked()
                await trio.sleep(3)
                sent_at = trio.current_time()
                await send(http, {**TEXT, "recipient": {"id": "second"}})
            assert got["at"] == pytest.approx(sent_at)
            assert got["total"] == 2
            assert [r["recipient_id"] for r in got["received"]] == ["second"]
            assert got["received"][0]["body"]["message"] == {"text": "hi"}
            start = trio.current_time()
            timed_out = (await admin.get("/_fake/received?at_least=9&timeout=4")).json()
            assert trio.current_time() - start == pytest.approx(4)
            assert len(timed_out["received"]) == 2
            assert (await admin.get("/_fake/received?since=x")).status_code == 400


def test_create_fake_graph_needs_a_token() -> None:
    with pytest.raises(ValueError, match="page_token"):
        create_fake_graph(page_token="")
