"""Property tests against the real Socket.IO server over ASGI, in process.

For random and mutated polling payloads POSTed on a fresh session:

* every response is ``200 ok`` or a 4xx whose body is the protocol's
  ``{"code": int, "message": str}``; never a 5xx, never an exception;
* afterwards that session is either still working (a GET delivers what the
  server queued) or gone (a GET answers ``400 {"code": 1}``);
* a healthy "witness" session that joined a room before still receives a
  broadcast to that room: one client's garbage harms nobody else.

Each hypothesis example runs its own ``trio.run`` (pytest-trio does not run
plain ``def`` tests), with a fresh server, so a server crash is reported as the
failing example and shrunk.  The regression tests at the end pin down the
specific payloads that used to escape the server's error handling.
"""

from __future__ import annotations

import base64
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from essen.protocol.engine_server import EngineConfig, Outgoing, SessionState
from essen.protocol.socketio import RESERVED_EVENTS, Decoder, SioType
from essen.realtime import ServerOptions, SocketIOMount, SocketIOServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from essen.realtime import Socket

PATH = "/socket.io/"
MAX_PAYLOAD = 20_000
REQUEST_TIMEOUT = 5.0
ROOM = "witnesses"


# -- the server under test, and a polling client ------------------------------------


def make_server() -> SocketIOServer:
    server = SocketIOServer(
        ServerOptions(engine=EngineConfig(max_payload=MAX_PAYLOAD, max_packets_per_payload=256))
    )

    @server.on("join")
    async def join(socket: Socket, room: str) -> str:
        socket.join(room)
        return "joined"

    @server.on("echo")
    async def echo(socket: Socket, *args: Any) -> tuple[Any, ...]:
        return args

    admin = server.of("/admin")

    @admin.on("echo")
    async def admin_echo(socket: Socket, *args: Any) -> tuple[Any, ...]:
        return args

    return server


@dataclass
class Env:
    server: SocketIOServer
    client: httpx.AsyncClient
    nursery: trio.Nursery

    async def request(
        self, method: str, sid: str | None = None, body: bytes | None = None
    ) -> httpx.Response:
        params = {"EIO": "4", "transport": "polling"}
        if sid is not None:
            params["sid"] = sid
        with trio.fail_after(REQUEST_TIMEOUT):
            return await self.client.request(method, PATH, params=params, content=body)

    async def handshake(self) -> str:
        response = await self.request("GET")
        assert response.status_code == 200
        assert response.text.startswith("0")
        sid = json.loads(response.text[1:])["sid"]
        assert isinstance(sid, str)
        return sid

    async def post(self, sid: str, body: bytes) -> httpx.Response:
        return await self.request("POST", sid, body)

    async def get_packets(self, sid: str) -> list[Any]:
        """One GET; the Socket.IO packets in it (Engine.IO control packets skipped)."""
        response = await self.request("GET", sid)
        assert response.status_code == 200, response.text
        decoder = Decoder()
        packets = []
        for part in response.text.split("\x1e"):
            if part.startswith("4"):
                packet = decoder.feed(part[1:])
            elif part.startswith("b"):
                packet = decoder.feed(base64.b64decode(part[1:]))
            else:
                continue
            if packet is not None:
                packets.append(packet)
        return packets

    async def connect(self, sid: str) -> None:
        assert (await self.post(sid, b"40")).text == "ok"
        [packet] = await self.get_packets(sid)
        assert packet.type is SioType.CONNECT
        assert "sid" in packet.data


@asynccontextmanager
async def serve() -> AsyncIterator[Env]:
    server = make_server()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        transport = httpx.ASGITransport(app=SocketIOMount(None, server))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Env(server, client, nursery)
        nursery.cancel_scope.cancel()


class Witness:
    """A healthy session, connected and in ROOM, with a GET waiting for data."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.sid = ""
        self.received: list[Any] | None = None
        self._done = trio.Event()

    async def open(self) -> None:
        env = self.env
        self.sid = await env.handshake()
        await env.connect(self.sid)
        assert (await env.post(self.sid, b'420["join","' + ROOM.encode() + b'"]')).text == "ok"
        [ack] = await env.get_packets(self.sid)
        assert (ack.type, ack.id, ack.data) == (SioType.ACK, 0, ["joined"])
        env.nursery.start_soon(self._poll)
        # The GET is parked on the server before anything else happens.
        await trio.testing.wait_all_tasks_blocked()

    async def _poll(self) -> None:
        self.received = await self.env.get_packets(self.sid)
        self._done.set()

    async def check_receives_broadcast(self) -> None:
        env = self.env
        assert self.sid in env.server.engine.sessions
        assert env.server.emit("news", "still here", to=ROOM) >= 1
        with trio.fail_after(REQUEST_TIMEOUT):
            await self._done.wait()
        assert self.received is not None
        events = [p.data[:2] for p in self.received if p.type is SioType.EVENT]
        assert ["news", "still here"] in events


def event(name: str) -> None:
    """Record an outcome for ``--hypothesis-show-statistics`` (no-op outside hypothesis)."""
    if currently_in_test_context():
        hypothesis_event(name)


def check_response(response: httpx.Response) -> None:
    """200 ok, or a 4xx carrying the protocol's JSON error."""
    event(f"POST answered {response.status_code}")
    if response.status_code == 200:
        assert response.text == "ok"
        return
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"code", "message"}, body
    assert isinstance(body["code"], int)
    assert not isinstance(body["code"], bool)
    assert isinstance(body["message"], str)


async def check_alive_or_gone(env: Env, sid: str) -> None:
    """The fuzzed session is either open and working, or gone (GET → 400 code 1)."""
    await trio.testing.wait_all_tasks_blocked()
    conn = env.server.engine.sessions.get(sid)
    event("fuzzed session gone" if conn is None else "fuzzed session still open")
    if conn is None:
        response = await env.request("GET", sid)
        assert response.status_code == 400
        assert response.json() == {"code": 1, "message": "Session ID unknown"}
        return
    assert conn.session.state is SessionState.OPEN
    conn.send(Outgoing.message(('2["liveness"]',)))
    packets = await env.get_packets(sid)
    assert ["liveness"] in [p.data for p in packets if p.type is SioType.EVENT]


async def fuzz_once(bodies: list[bytes], connect_first: bool) -> None:
    with trio.fail_after(30):
        async with serve() as env:
            witness = Witness(env)
            await witness.open()
            sid = await env.handshake()
            if connect_first:
                await env.connect(sid)
            for body in bodies:
                check_response(await env.post(sid, body))
                await trio.testing.wait_all_tasks_blocked()
            await check_alive_or_gone(env, sid)
            await witness.check_receives_broadcast()


# -- payload strategies -------------------------------------------------------------------


def b64(data: bytes) -> str:
    return "b" + base64.b64encode(data).decode()


def placeholder(num: object) -> str:
    return '{"_placeholder":true,"num":' + json.dumps(num) + "}"


# Valid packets (Engine.IO level; Socket.IO packets carry the leading "4").
# Benign ones leave the session open; the others are valid wire but close it.
BENIGN_PACKETS: list[list[str]] = [
    ["40"],
    ['40{"token":"x"}'],
    ["40/admin,"],
    ['40/admin,{"a":[1,2]}'],
    ["40/nowhere,"],
    ["41"],
    ["41/admin,"],
    ['42["echo",1,"two",{"3":[4,null,true]}]'],
    ['421["echo","with-ack"]'],
    ['42/admin,7["echo"]'],
    ['42["unknown",1]'],
    ['42[12,"numeric event"]'],
    ['42["join","elsewhere"]'],
    ["430[]"],
    ['43/admin,5["late",1]'],
    ['451-["echo",' + placeholder(0) + "]", b64(b"\x01\x02\x03")],
    ['452-3["echo",' + placeholder(1) + "," + placeholder(0) + "]", b64(b"a"), b64(b"")],
    ["461-9[" + placeholder(0) + "]", b64(b"\x00")],
    ["3"],
    ['421["echo","\\ud800",{"k":"\\udfff"}]'],  # lone surrogates, escaped as JSON allows
]
CLOSING_PACKETS: list[list[str]] = [
    ['450-["echo"]'],
    ['44{"message":"from a client"}'],
    ["2"],
    ["6"],
    ["5"],
    ["0"],
    ["1"],
    ["4"],
]
VALID_PACKETS = BENIGN_PACKETS + CLOSING_PACKETS

TYPE_CHARS = [*"0123456789abx -/[{\x00", "²", "٢", "①", "２", "\u200b", "é"]
JSON_JUNK = ["", "[", "]", "{", "}", ",", '"', ":", "NaN", "Infinity", "-", "1e999", "\\", "\x00"]


@st.composite
def valid_packets(draw: st.DrawFn) -> list[str]:
    return list(draw(st.sampled_from(VALID_PACKETS)))


@st.composite
def mutated(draw: st.DrawFn) -> list[str]:
    packets = draw(valid_packets())
    i = draw(st.integers(0, len(packets) - 1))
    p = packets[i]
    kind = draw(
        st.sampled_from(
            [
                "truncate",
                "engine-type",
                "sio-type",
                "json",
                "drop-part",
                "duplicate-part",
                "insert",
            ]
        )
    )
    if kind == "truncate":
        p = p[: draw(st.integers(0, max(0, len(p) - 1)))]
    elif kind == "engine-type" and p:
        p = draw(st.sampled_from(TYPE_CHARS)) + p[1:]
    elif kind == "sio-type" and len(p) > 1:
        p = p[0] + draw(st.sampled_from(TYPE_CHARS)) + p[2:]
    elif kind == "json":
        pos = draw(st.integers(0, len(p)))
        cut = draw(st.integers(0, 3))
        p = p[:pos] + draw(st.sampled_from(JSON_JUNK)) + p[pos + cut :]
    elif kind == "drop-part" and len(packets) > 1:
        del packets[i]
        return packets
    elif kind == "duplicate-part":
        packets.insert(i, p)
    elif kind == "insert":
        pos = draw(st.integers(0, len(p)))
        p = p[:pos] + draw(st.text(max_size=4)) + p[pos:]
    packets[i] = p
    return packets


@st.composite
def bad_base64(draw: st.DrawFn) -> list[str]:
    junk = draw(
        st.one_of(
            st.text(alphabet="ABCD=+/!* \x00é", max_size=9),
            st.sampled_from(["A", "AB", "ABC", "A===", "====", "AQID BA==", "AQIDBA=", "!!"]),
        )
    )
    return ['451-["echo",' + placeholder(0) + "]", "b" + junk]


@st.composite
def bad_placeholders(draw: st.DrawFn) -> list[str]:
    num = draw(st.sampled_from([-1, 1, 2, 10, 11, 10**20, "0", 0.0, 0.5, None, True, [0], {}]))
    count = draw(st.integers(0, 2))
    header = f'45{count}-["echo",' + placeholder(num) + "]"
    return [header] + [b64(bytes([i])) for i in range(count)]


@st.composite
def attachment_mismatch(draw: st.DrawFn) -> list[str]:
    declared = draw(st.sampled_from([0, 1, 2, 3, 10, 11, 99, 10**6]))
    sent = draw(st.integers(0, 4))
    if sent == declared:
        sent += 1
    trailer = draw(st.sampled_from([[], ['42["echo"]'], ["40"], [b64(b"extra")]]))
    header = f'45{declared}-["echo",' + ",".join(placeholder(i) for i in range(min(declared, 4)))
    header = header.rstrip(",") + "]"
    return [header] + [b64(b"x") for _ in range(sent)] + trailer


@st.composite
def huge_ack_ids(draw: st.DrawFn) -> list[str]:
    ack_id = draw(st.from_regex(r"[0-9]{10,60}", fullmatch=True))
    return [draw(st.sampled_from([f'42{ack_id}["echo"]', f"43{ack_id}[]", f"461-{ack_id}[]"]))]


@st.composite
def reserved_events(draw: st.DrawFn) -> list[str]:
    name = json.dumps(draw(st.sampled_from(sorted(RESERVED_EVENTS))))
    binary = draw(st.booleans())
    if binary:
        return [f"451-[{name}," + placeholder(0) + "]", b64(b"x")]
    return [f"42[{name},1]"]


@st.composite
def deep_nesting(draw: st.DrawFn) -> list[str]:
    depth = draw(st.sampled_from([50, 300, 600, 900, 1500, 5000]))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    deep = opener * depth + "1" + closer * depth
    return [
        draw(
            st.sampled_from(
                [
                    f'42["echo",{deep}]',
                    f'421["echo",{deep}]',
                    f'450-["echo",{deep}]',
                    f'40{{"auth":{deep}}}',
                    f"430[{deep}]",
                ]
            )
        )
    ]


@st.composite
def many_messages(draw: st.DrawFn) -> list[str]:
    """A bad packet early, then more messages than the session's inbox holds."""
    bad = draw(st.sampled_from(["4x", "42", '42["connect"]', "4²", b64(b"orphan")]))
    count = draw(st.integers(60, 200))
    return ["40", bad] + ['42["echo",1]'] * count


raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.lists(st.text(max_size=20), min_size=1, max_size=6).map(
        lambda parts: "\x1e".join(parts).encode("utf-8", "surrogatepass")
    ),
)

packet_lists = st.one_of(
    valid_packets(),
    mutated(),
    bad_base64(),
    bad_placeholders(),
    attachment_mismatch(),
    huge_ack_ids(),
    reserved_events(),
    deep_nesting(),
    many_messages(),
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(raw_bodies)
    packets: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        packets += draw(packet_lists)
    body = "\x1e".join(packets).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 19)) == 0:
        body += b"4" + b"x" * MAX_PAYLOAD  # too large
    return body


benign_bodies = st.lists(st.sampled_from(BENIGN_PACKETS), min_size=1, max_size=4).map(
    lambda lists: "\x1e".join(p for packets in lists for p in packets).encode()
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.one_of(
        st.lists(bodies(), min_size=1, max_size=3),
        # Some sessions only see benign traffic: the "still working" check gets exercised.
        st.lists(benign_bodies, min_size=1, max_size=3),
    ),
    st.booleans(),
)
def test_fuzzed_session_never_harms_the_server(payloads: list[bytes], connect_first: bool) -> None:
    trio.run(fuzz_once, payloads, connect_first)


# -- regressions: one payload each, on one server ---------------------------------------


async def post_and_check(payload: str | bytes) -> None:
    body = payload.encode() if isinstance(payload, str) else payload
    with trio.fail_after(30):
        async with serve() as env:
            witness = Witness(env)
            await witness.open()
            sid = await env.handshake()
            await env.connect(sid)
            check_response(await env.post(sid, body))
            await check_alive_or_gone(env, sid)
            await witness.check_receives_broadcast()


async def test_baseline_valid_traffic() -> None:
    await post_and_check(
        '42["echo",1]\x1e421["echo",2]\x1e451-["echo",' + placeholder(0) + "]\x1ebAQ=="
    )


async def test_engine_level_garbage() -> None:
    await post_and_check(b"\xff\xfe")


async def test_socketio_level_garbage() -> None:
    await post_and_check("4x")


async def test_unicode_digit_as_packet_type() -> None:
    """``socketio.py`` checks the type with ``str.isdigit()``: '²' passes, then ``int('²')``
    raises ValueError, which ``run_connection`` does not catch."""
    await post_and_check('4²["echo"]')


async def test_deeply_nested_binary_event() -> None:
    """``_reconstruct`` recurses (two frames per level) after ``json.loads`` accepted the
    nesting: RecursionError escapes ``Decoder.feed``."""
    await post_and_check('450-["echo",' + "[" * 600 + "]" * 600 + "]")


async def test_deeply_nested_event_echoed_in_the_ack() -> None:
    """The handler returns what it got; encoding the ack (``has_binary`` recursion) raises
    outside the handler's try block in ``SocketIOServer._dispatch``."""
    await post_and_check('421["echo",' + "[" * 600 + "]" * 600 + "]")


async def test_many_messages_after_a_socketio_parse_error() -> None:
    """The decoder rejects "4x" and the session is aborted, but the POST keeps pushing
    the remaining messages into the session's inbox, which nobody reads any more."""
    await post_and_check("\x1e".join(["4x"] + ['42["echo",1]'] * 100))


async def test_lone_surrogate_echoed_in_the_ack() -> None:
    """JSON escapes of lone surrogates decode to a str that UTF-8 cannot encode;
    echoing it back must not break the session's next GET (the encoder must
    escape it, as JavaScript's ``JSON.stringify`` does)."""
    await post_and_check('421["echo","\\ud800"]')


async def test_handler_returning_an_unencodable_value() -> None:
    """A handler whose return value cannot be JSON-encoded must cost its own ack,
    not the whole server."""
    with trio.fail_after(30):
        async with serve() as env:

            @env.server.on("bad")
            async def bad(socket: Socket) -> object:
                return {1, 2}

            witness = Witness(env)
            await witness.open()
            sid = await env.handshake()
            await env.connect(sid)
            check_response(await env.post(sid, b'421["bad"]'))
            await check_alive_or_gone(env, sid)
            await witness.check_receives_broadcast()
