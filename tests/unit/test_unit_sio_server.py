"""Socket.IO server semantics over in-process polling: CONNECT and its refusals,
acks both ways, rooms, disconnects, recovery, and the server's timers under a
mock clock."""

from __future__ import annotations

import base64
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import trio
import trio.testing

from essen.errors import ConnectionRefused
from essen.protocol.engine_server import CloseReason, EngineConfig
from essen.protocol.socketio import Decoder, SioPacket, SioType
from essen.realtime import ServerOptions, SocketIOMount, SocketIOServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from essen.realtime import Socket

PATH = "/socket.io/"


@dataclass
class Client:
    """One polling client speaking Socket.IO (no helper from essen's client)."""

    http: httpx.AsyncClient
    sid: str = ""
    decoder: Decoder = field(default_factory=Decoder)
    #: Packets that came with the CONNECT reply, returned by the next ``poll``.
    backlog: list[SioPacket] = field(default_factory=list)

    async def open(self) -> Client:
        response = await self.http.get(PATH, params={"EIO": "4", "transport": "polling"})
        self.sid = json.loads(response.text[1:])["sid"]
        return self

    def _params(self) -> dict[str, str]:
        return {"EIO": "4", "transport": "polling", "sid": self.sid}

    async def post(self, *packets: str) -> None:
        body = "\x1e".join(packets).encode()
        response = await self.http.post(PATH, params=self._params(), content=body)
        assert (response.status_code, response.text) == (200, "ok")

    async def raw_poll(self) -> list[str]:
        response = await self.http.get(PATH, params=self._params())
        assert response.status_code == 200, response.text
        return response.text.split("\x1e")

    async def poll(self) -> list[SioPacket]:
        if self.backlog:
            packets, self.backlog = self.backlog, []
            return packets
        packets = []
        for part in await self.raw_poll():
            if part.startswith("4"):
                packet = self.decoder.feed(part[1:])
            elif part.startswith("b"):
                packet = self.decoder.feed(base64.b64decode(part[1:]))
            else:
                continue
            if packet is not None:
                packets.append(packet)
        return packets

    async def connect(self, namespace: str = "/", auth: dict[str, Any] | None = None) -> SioPacket:
        prefix = "" if namespace == "/" else namespace + ","
        await self.post("40" + prefix + (json.dumps(auth) if auth is not None else ""))
        reply, *self.backlog = await self.poll()
        return reply


@dataclass
class Env:
    server: SocketIOServer
    http: httpx.AsyncClient
    nursery: trio.Nursery
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    async def client(self) -> Client:
        return await Client(self.http).open()


@asynccontextmanager
async def serve(options: ServerOptions | None = None) -> AsyncIterator[Env]:
    server = SocketIOServer(options or ServerOptions())
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        transport = httpx.ASGITransport(app=SocketIOMount(None, server))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            env = Env(server, http, nursery)

            @server.on("echo")
            async def echo(socket: Socket, *args: Any) -> tuple[Any, ...]:
                return args

            @server.on("none")
            async def none(socket: Socket) -> None:
                env.calls.append(("none",))

            @server.on("one")
            async def one(socket: Socket, x: Any) -> Any:
                return x

            @server.on("boom")
            async def boom(socket: Socket) -> None:
                raise RuntimeError("handler failure")

            @server.on("join")
            async def join(socket: Socket, room: str) -> None:
                socket.join(room)

            @server.on_disconnect
            async def gone(socket: Socket, reason: str) -> None:
                env.calls.append(("disconnect", socket.sid, reason))

            yield env
        nursery.cancel_scope.cancel()


def events(packets: list[SioPacket]) -> list[list[Any]]:
    return [p.data for p in packets if p.type is SioType.EVENT]


# -- CONNECT -------------------------------------------------------------------------


async def test_connect_reply() -> None:
    with trio.fail_after(10):
        async with serve() as env:
            client = await env.client()
            reply = await client.connect()
            assert reply.type is SioType.CONNECT
            assert set(reply.data) == {"sid", "pid"}
            assert reply.data["sid"] != client.sid
            assert reply.data["sid"] in env.server.namespaces["/"].sockets
            assert env.server.counters["connects"] == 1


async def test_connect_to_unknown_namespace_is_refused_but_session_lives() -> None:
    with trio.fail_after(10):
        async with serve() as env:
            client = await env.client()
            reply = await client.connect("/nowhere")
            assert reply == SioPacket(
                SioType.CONNECT_ERROR, "/nowhere", {"message": "Invalid namespace"}
            )
            assert (await client.connect()).type is SioType.CONNECT


async def test_namespaces_are_independent() -> None:
    with trio.fail_after(10):
        async with serve() as env:
            admin = env.server.of("/admin")

            @admin.on("echo")
            async def echo(socket: Socket, *args: Any) -> tuple[Any, ...]:
                return ("admin", *args)

            client = await env.client()
            await client.connect()
            assert (await client.connect("/admin")).namespace == "/admin"
            await client.post('42/admin,1["echo",1]', '422["echo",2]')
            packets = await client.poll()
            while len(packets) < 2:
                packets += await client.poll()
            assert {(p.namespace, p.id, tuple(p.data)) for p in packets} == {
                ("/admin", 1, ("admin", 1)),
                ("/", 2, (2,)),
            }


async def test_middleware_gets_auth_and_can_refuse() -> None:
    with trio.fail_after(10):
        async with serve() as env:
            seen: list[Any] = []

            @env.server.use
            async def auth(socket: Socket, data: dict[str, Any] | None) -> None:
                seen.append(data)
                if not data or data.get("token") != "good":
                    raise ConnectionRefused("not authorized", {"hint": "token"})

            client = await env.client()
            reply = await client.connect(auth={"token": "bad"})
            assert reply == SioPacket(
                SioType.CONNECT_ERROR, "/", {"message": "not authorized", "data": {"hint": "token"}}
            )
            assert env.server.namespaces["/"].sockets == {}
            assert (await client.connect(auth={"token": "good"})).type is SioType.CONNECT
            assert seen == [{"token": "bad"}, {"token": "good"}]
            assert env.server.counters["refused"] == 1


async def test_crashing_middleware_refuses_with_a_generic_message() -> None:
    with trio.fail_after(10):
        async with serve() as env:

            @env.server.use
            async def auth(socket: Socket, data: dict[str, Any] | None) -> None:
                raise KeyError("secret detail")

            client = await env.client()
            reply = await client.connect()
            assert reply.data == {"message": "Internal server error"}


async def test_duplicate_connect_changes_nothing() -> None:
    with trio.fail_after(10):
        async with serve() as env:
            client = await env.client()
            first = await client.connect()
            await client.post("40", '421["echo","x"]')
            assert await client.poll() == [SioPacket(SioType.ACK, "/", ["x"], 1)]
            assert list(env.server.namespaces["/"].sockets) == [first.data["sid"]]


# -- events and acks -------------------------------------------------------------------


async def test_ack_shapes() -> None:
    with trio.fail_after(10):
        async with serve() as env:
            client = await env.client()
            await client.connect()
            await client.post(
                '421["none"]', '422["one",{"a":1}]', '423["echo",1,"2"]', '424["echo"]'
            )
            acks: list[SioPacket] = []
            while len(acks) < 4:
                acks += await client.poll()
            assert acks == [
                SioPacket(SioType.ACK, "/", [], 1),
                SioPacket(SioType.ACK, "/", [{"a": 1}], 2),
                SioPacket(SioType.ACK, "/", [1, "2"], 3),
                SioPacket(SioType.ACK, "/", [], 4),
            ]


async def test_binary_round_trip() -> None:
    with trio.fail_after(10):
        async with serve() as env:
            client = await env.client()
            await client.connect()
            await client.post(
                '451-7["echo",{"_placeholder":true,"num":0},"t"]',
                "bAAECAw==",  # 00 01 02 03
            )
            assert await client.poll() == [
                SioPacket(SioType.ACK, "/", [b"\x00\x01\x02\x03", "t"], 7)
            ]


async def test_failing_handler_sends_no_ack_and_keeps_the_session() -> None:
    with trio.fail_after(10):
        async with serve() as env:
            client = await env.client()
            await client.connect()
            await client.post('421["boom"]', '422["unknown"]', '423["echo","after"]')
            assert await client.poll() == [SioPacket(SioType.ACK, "/", ["after"], 3)]
            assert env.server.counters["handler_errors"] == 1
            assert env.server.counters["unknown_events"] == 1


async def test_events_before_connect_are_ignored() -> None:
    with trio.fail_after(10):
        async with serve() as env:
            client = await env.client()
            await client.post('421["echo",1]')
            await client.connect()
            await client.post('422["echo",2]')
            assert await client.poll() == [SioPacket(SioType.ACK, "/", [2], 2)]


async def test_server_call_waits_for_the_client_ack() -> None:
    with trio.fail_after(10):
        async with serve() as env:
            client = await env.client()
            await client.connect()
            [socket] = env.server.namespaces["/"].sockets.values()
            answers: list[list[Any]] = []

            async def ask() -> None:
                answers.append(await socket.call("question", 41))

            env.nursery.start_soon(ask)
            [call] = await client.poll()
            assert (call.type, call.data) == (SioType.EVENT, ["question", 41])
            assert call.id is not None
            await client.post(f"43{call.id}[42]")
            await trio.testing.wait_all_tasks_blocked()
            assert answers == [[42]]


# -- rooms and broadcasts ---------------------------------------------------------------


async def test_room_broadcast_with_exclude() -> None:
    with trio.fail_after(10):
        async with serve() as env:
            a, b, c = [await env.client() for _ in range(3)]
            sids = [(await x.connect()).data["sid"] for x in (a, b, c)]
            await a.post('42["join","r"]')
            await b.post('42["join","r"]')
            await trio.testing.wait_all_tasks_blocked()
            assert env.server.emit("to-room", to="r", exclude=sids[0]) == 1
            assert env.server.emit("to-all") == 3
            assert env.server.emit("to-c", to=sids[2]) == 1
            assert env.server.emit("volatile", to="r", volatile=True) == 2
            got = [[e[0] for e in events(await x.poll())] for x in (a, b, c)]
            assert got == [
                ["to-all", "volatile"],
                ["to-room", "to-all", "volatile"],
                ["to-all", "to-c"],
            ]
            # Recoverable broadcasts carry an offset as their last argument; volatile ones not.
            assert env.server.emit("x", 1) == 3
            [event] = events(await a.poll())
            assert event[:2] == ["x", 1]
            assert isinstance(event[2], str)
            assert env.server.statistics()["rooms"]["/"] == {"r": 2}


async def test_broadcast_of_a_lone_surrogate_reaches_polling_clients() -> None:
    """A string with a lone surrogate (which JSON and JavaScript allow) must not make
    every receiver's GET fail and lose what was queued with it."""
    with trio.fail_after(10):
        async with serve() as env:
            client = await env.client()
            await client.connect()
            env.server.emit("before", 1)
            env.server.emit("odd", "\ud83d")
            [before, odd] = events(await client.poll())
            assert before[:2] == ["before", 1]
            assert odd[:2] == ["odd", "\ud83d"]


# -- disconnects -------------------------------------------------------------------------


async def test_namespace_disconnect_keeps_the_engine_session() -> None:
    with trio.fail_after(10):
        async with serve() as env:
            client = await env.client()
            sid = (await client.connect()).data["sid"]
            await client.post("41")
            await trio.testing.wait_all_tasks_blocked()
            assert env.calls == [("disconnect", sid, "client namespace disconnect")]
            assert env.server.namespaces["/"].sockets == {}
            assert client.sid in env.server.engine.sessions
            assert (await client.connect()).data["sid"] != sid


async def test_engine_close_disconnects_every_namespace() -> None:
    with trio.fail_after(10):
        async with serve() as env:
            env.server.of("/admin")
            client = await env.client()
            await client.connect()
            await client.connect("/admin")
            await client.post("1")
            await trio.testing.wait_all_tasks_blocked()
            assert [c[0] for c in env.calls] == ["disconnect"]  # the handler of "/"
            assert env.server.namespaces["/"].sockets == {}
            assert env.server.namespaces["/admin"].sockets == {}


async def test_server_disconnect() -> None:
    with trio.fail_after(10):
        async with serve() as env:
            client = await env.client()
            sid = (await client.connect()).data["sid"]
            await env.server.namespaces["/"].sockets[sid].disconnect()
            assert await client.poll() == [SioPacket(SioType.DISCONNECT, "/")]
            assert env.calls == [("disconnect", sid, "server namespace disconnect")]
            assert client.sid in env.server.engine.sessions


async def test_client_connect_error_packet_closes_the_session() -> None:
    with trio.fail_after(10):
        async with serve() as env:
            client = await env.client()
            await client.connect()
            await client.post('44{"message":"clients do not send this"}')
            await trio.testing.wait_all_tasks_blocked()
            assert client.sid not in env.server.engine.sessions
            assert env.server.counters["protocol_errors"] == 1


# -- recovery ------------------------------------------------------------------------------


async def test_connection_state_recovery() -> None:
    with trio.fail_after(10):
        async with serve() as env:
            client = await env.client()
            connected = (await client.connect()).data
            await client.post('42["join","r"]')
            await trio.testing.wait_all_tasks_blocked()
            env.server.emit("seen", 1, to="r")
            [seen] = events(await client.poll())
            offset = seen[-1]
            # The transport dies (not a deliberate disconnect): the session is kept.
            env.server.engine.sessions[client.sid].abort(CloseReason.TRANSPORT_CLOSE)
            await trio.testing.wait_all_tasks_blocked()
            env.server.emit("missed", 2, to="r")
            env.server.emit("not-for-me", to="other-room")
            env.server.emit("missed-too", 3)

            again = await env.client()
            reply = await again.connect(auth={"pid": connected["pid"], "offset": offset, "k": 1})
            assert reply.data["sid"] == connected["sid"]
            missed = events(await again.poll())
            assert [e[:2] for e in missed] == [["missed", 2], ["missed-too", 3]]
            [socket] = env.server.namespaces["/"].sockets.values()
            assert socket.recovered
            assert socket.auth == {"k": 1}
            assert "r" in socket.rooms
            assert env.server.counters["recovered"] == 1


async def test_recovery_with_unknown_pid_connects_afresh() -> None:
    with trio.fail_after(10):
        async with serve() as env:
            client = await env.client()
            reply = await client.connect(auth={"pid": "unknown", "offset": "1"})
            assert reply.type is SioType.CONNECT
            [socket] = env.server.namespaces["/"].sockets.values()
            assert not socket.recovered
            assert env.server.counters["recovered"] == 0


async def test_deliberate_disconnect_is_not_recoverable() -> None:
    with trio.fail_after(10):
        async with serve() as env:
            client = await env.client()
            connected = (await client.connect()).data
            env.server.emit("x")
            [event] = events(await client.poll())
            await client.post("41")
            await trio.testing.wait_all_tasks_blocked()
            reply = await client.connect(auth={"pid": connected["pid"], "offset": event[-1]})
            assert reply.data["sid"] != connected["sid"]


# -- timers (mock clock) ------------------------------------------------------------------


async def test_heartbeat_over_polling(autojump_clock: trio.testing.MockClock) -> None:
    options = ServerOptions(engine=EngineConfig(ping_interval=25, ping_timeout=20))
    with trio.fail_after(1000):
        async with serve(options) as env:
            client = await env.client()
            await client.connect()
            start = trio.current_time()
            for round_ in range(3):
                # The GET waits until the server pings.
                assert await client.raw_poll() == ["2"]
                assert trio.current_time() - start >= 25 * (round_ + 1)
                await client.post("3")
            # Stop answering: one more ping, then the ping timeout.
            assert await client.raw_poll() == ["2"]
            pinged = trio.current_time()
            await env.server.engine.sessions[client.sid].wait_closed()
            await trio.testing.wait_all_tasks_blocked()
            assert client.sid not in env.server.engine.sessions
            assert trio.current_time() - pinged >= 20
            assert env.server.engine.closed_by_reason == {"ping timeout": 1}
            assert env.calls[-1][2] == "ping timeout"


async def test_connect_timeout(autojump_clock: trio.testing.MockClock) -> None:
    options = ServerOptions(connect_timeout=5)
    with trio.fail_after(1000):
        async with serve(options) as env:
            idle = await env.client()
            active = await env.client()
            await active.connect()
            # The idle session's poll is answered with CLOSE once the deadline passes.
            assert await idle.raw_poll() == ["1"]
            assert 5 <= trio.current_time() < 25
            await trio.testing.wait_all_tasks_blocked()
            assert idle.sid not in env.server.engine.sessions
            assert active.sid in env.server.engine.sessions
