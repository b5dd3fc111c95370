"""The polling → WebSocket upgrade, step by step, with a raw Engine.IO client.

engine.io-client upgrades like this: with a poll in flight it opens the
WebSocket and sends ``2probe``; the server answers ``3probe`` and releases the
pending poll with a NOOP; the client *pauses* polling, which means waiting for
whatever poll is in flight to return, then sends ``5`` on the WebSocket.

While it waits it sends nothing at all (``upgrading`` blocks its flush), so if
a poll stays parked the client is wedged.  That happens when the NOOP is taken
by a poll the client had issued before it processed ``3probe``, and the client
then issues one more: the official server covers it by writing a NOOP to any
pending poll every 100 ms while an upgrade is in progress.  The socket.io-client
tests in ``test_node_client.py`` hit this about once every ten upgrades.
"""

from __future__ import annotations

import json

import httpx
import pytest
import trio

from ._app import TOKEN, InteropApp, serving
from ._raw import RawPolling, next_event, raw_websocket

pytestmark = pytest.mark.integration


async def test_upgrade_happy_path(how):
    app = InteropApp()
    async with (
        serving(app, how) as server,
        httpx.AsyncClient(base_url=server.url, timeout=None) as http,
    ):
        with trio.fail_after(10):
            session = await RawPolling(http, server.url).open()
            assert session.handshake["upgrades"] == ["websocket"]
            assert session.sid is not None
            await session.connect_namespace({"token": TOKEN, "user": "upgrader"})

            async with trio.open_nursery() as nursery:
                polls_in, polls = trio.open_memory_channel[httpx.Response](1)

                async def poll() -> None:
                    await polls_in.send(await session.get())

                nursery.start_soon(poll)
                async with raw_websocket(server.url, sid=session.sid) as ws:
                    await ws.send_message("2probe")
                    assert await ws.get_message() == "3probe"
                    # The poll in flight is released so the client can pause polling.
                    first = await polls.receive()
                    assert (first.status_code, first.text) == (200, "6")
                    await ws.send_message("5")

                    # Everything now flows over the WebSocket, in both directions.
                    assert app.server.emit("after-upgrade", 1) == 1
                    assert (await next_event(ws))[:2] == ["after-upgrade", 1]
                    await ws.send_message('421["sum",2,3]')
                    assert await ws.get_message() == "431[5]"
                    # And polling on the session is over.
                    stale = await session.get()
                    assert (stale.status_code, stale.json()["code"]) == (400, 3)


async def test_poll_issued_during_the_upgrade_is_released(how):
    """The probe's NOOP went to an earlier poll; the next poll must not stay parked."""
    app = InteropApp()
    async with (
        serving(app, how) as server,
        httpx.AsyncClient(base_url=server.url, timeout=None) as http,
    ):
        with trio.fail_after(10):
            session = await RawPolling(http, server.url).open()
            assert session.sid is not None
            async with trio.open_nursery() as nursery:
                polls_in, polls = trio.open_memory_channel[httpx.Response](1)

                async def poll() -> None:
                    await polls_in.send(await session.get())

                nursery.start_soon(poll)
                async with raw_websocket(server.url, sid=session.sid) as ws:
                    await ws.send_message("2probe")
                    assert await ws.get_message() == "3probe"
                    first = await polls.receive()
                    assert (first.status_code, first.text) == (200, "6")

                    # engine.io-client polls once more if it handled the poll's response
                    # before the probe's answer; then it pauses and waits for that poll.
                    # The official server answers it within 100 ms (upgrade timeout: 10 s).
                    with trio.move_on_after(2) as waited:
                        second = await session.get()
                    assert not waited.cancelled_caught, (
                        "a poll issued while the upgrade was in progress stayed parked: "
                        "engine.io-client, pausing polling, sends nothing until it returns"
                    )
                    assert (second.status_code, second.text) == (200, "6")
                    await ws.send_message("5")
                    assert app.server.emit("after-upgrade", 2) == 0  # no namespace joined
                    await ws.send_message("40" + json.dumps({"token": TOKEN, "user": "late"}))
                    reply = await ws.get_message()
                    assert isinstance(reply, str)
                    assert reply.startswith("40{")
