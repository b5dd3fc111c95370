"""python-socketio's AsyncClient (asyncio) against an ESSEN server.

    INTEROP_TOKEN=... python pysio_client_scenarios.py URL PATH MODE

MODE: "polling" (polling only), "websocket" (websocket only) or "default"
(python-engineio's default: polling, then upgrade to websocket).  The server
side is ``_app.py``.  Run by ``test_python_socketio_client.py``; prints one JSON
line per scenario (``{"scenario", "result": "ok"|"fail", ...}``, bytes as
``{"$bytes": hex}``) and exits 1 if any failed.  Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback
from typing import Any

import socketio

URL, PATH, MODE = sys.argv[1:4]
TOKEN = os.environ["INTEROP_TOKEN"]
TRANSPORTS = {"polling": ["polling"], "websocket": ["websocket"], "default": None}[MODE]
TIMEOUT = 5


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return {"$bytes": bytes(value).hex()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def out(obj: dict[str, Any]) -> None:
    print(json.dumps(jsonable(obj)), flush=True)


def check(condition: bool, message: str, details: Any = None) -> None:
    if not condition:
        raise AssertionError(f"{message} {json.dumps(jsonable(details))}")


def check_equal(actual: Any, expected: Any, what: str) -> None:
    check(actual == expected, f"{what}: expected {jsonable(expected)!r}, got", actual)


clients: list[socketio.AsyncClient] = []


async def connect(user: str, **options: Any) -> socketio.AsyncClient:
    sio = socketio.AsyncClient(**{"reconnection": False, **options})
    clients.append(sio)
    await sio.connect(
        URL,
        auth={"token": TOKEN, "user": user},
        transports=TRANSPORTS,
        socketio_path=PATH,
        wait_timeout=TIMEOUT,
    )
    return sio


def queue_for(sio: socketio.AsyncClient, event: str) -> asyncio.Queue[list[Any]]:
    queue: asyncio.Queue[list[Any]] = asyncio.Queue()

    async def handler(*args: Any) -> None:
        await queue.put(list(args))

    sio.on(event, handler)
    return queue


async def next_in(queue: asyncio.Queue[list[Any]]) -> list[Any]:
    return await asyncio.wait_for(queue.get(), TIMEOUT)


async def call(sio: socketio.AsyncClient, event: str, *args: Any) -> Any:
    return await sio.call(event, args, timeout=TIMEOUT)


# -- scenarios -------------------------------------------------------------------


async def auth_ok() -> dict[str, Any]:
    sio = await connect("py-auth_ok")
    who = await call(sio, "whoami")
    check_equal(who["sid"], sio.get_sid(), "server-side sid vs the client's")
    check_equal(who["user"], "py-auth_ok", "user set by the auth middleware")
    check_equal(who["transport"], "websocket" if MODE == "websocket" else "polling", "handshake")
    transport = sio.transport()
    check_equal(transport, "polling" if MODE == "polling" else "websocket", "transport in use")
    return {"sid": sio.get_sid(), "transport": transport}


async def auth_refused() -> dict[str, Any]:
    sio = socketio.AsyncClient(reconnection=False)
    clients.append(sio)
    errors: list[Any] = []

    async def connect_error(data: Any) -> None:
        errors.append(data)

    sio.on("connect_error", connect_error)
    try:
        await sio.connect(
            URL,
            auth={"token": "wrong", "user": "py-intruder"},
            transports=TRANSPORTS,
            socketio_path=PATH,
            wait_timeout=TIMEOUT,
        )
    except socketio.exceptions.ConnectionError as exc:
        refused = str(exc)
    else:
        raise AssertionError("connected with a wrong token")
    check_equal(
        errors,
        [{"message": "bad token", "data": {"reason": "invalid token", "got": "wrong"}}],
        "connect_error",
    )
    check(not sio.connected, "connected after a refusal")
    return {"error": refused}


def without_offset(args: Any) -> list[Any]:
    """An event's arguments without the recovery offset the server appends.

    With connection state recovery on, socket.io (the official server, and
    ESSEN's) appends the event's offset as a last string argument to every
    event it emits, direct ones included; socket.io-client reads it,
    python-socketio's client passes it to the handler like any argument.
    """
    items = list(args)
    check(bool(items) and isinstance(items[-1], str), "event without a recovery offset", items)
    return items[:-1]


async def events() -> dict[str, Any]:
    sio = await connect("py-events")
    pong = queue_for(sio, "pong-event")
    payloads: list[tuple[Any, ...]] = [
        (),
        ("text", "héllo ✓ 🚀"),
        (42, 3.5, -1),
        ({"nested": {"list": [1, "two", None, True]}},),
        (None,),
        ([],),
        ("",),
        (False, 0),
        ("lone \ud800 surrogate", "\udfff"),
    ]
    for args in payloads:
        await sio.emit("ping-event", args)
        check_equal(without_offset(await next_in(pong)), list(args), "pong-event arguments")
    await sio.emit("no-such-event", (1, 2))
    check_equal((await call(sio, "whoami"))["sid"], sio.get_sid(), "after an unknown event")
    return {"payloads": [list(p) for p in payloads]}


async def acks() -> dict[str, Any]:
    sio = await connect("py-acks")
    check_equal(await call(sio, "sum", 1, 2, 3.5), 6.5, "sum ack")
    check_equal(await call(sio, "multi"), ("a", 1, {"b": None}), "ack with several arguments")
    check_equal(await call(sio, "void"), None, "ack with no arguments")

    async def ask(x: int, y: str) -> dict[str, Any]:
        return {"doubled": x * 2, "y": y}

    async def ask_multi() -> tuple[Any, ...]:
        return ("one", 2, [3])

    async def ask_none() -> None:
        return None

    sio.on("ask", ask)
    sio.on("ask-multi", ask_multi)
    sio.on("ask-none", ask_none)
    check_equal(await call(sio, "call-me", "ask", 21, "why"), {"doubled": 42, "y": "why"}, "call")
    check_equal(await call(sio, "call-me", "ask-multi"), ("one", 2, [3]), "call, several ack args")
    check_equal(await call(sio, "call-me", "ask-none"), None, "call, empty ack")
    return {}


async def binary() -> dict[str, Any]:
    sio = await connect("py-binary")
    small = bytes([0, 1, 2, 253, 254, 255])
    big = bytes(i % 251 for i in range(200_000))
    nested = {"nested": "héllo".encode(), "list": [b"", 1, "x"]}
    echoed = await call(sio, "echo", small, nested, big)
    check_equal(echoed, (small, nested, big), "echoed binary")
    check(all(isinstance(b, bytes) for b in (echoed[0], echoed[2])), "binary not bytes", echoed[:1])

    event = queue_for(sio, "bytes")
    check_equal(await call(sio, "make-bytes"), True, "make-bytes ack")
    blob, obj = without_offset(await next_in(event))
    check_equal(blob, bytes(range(256)) * 2, "server-sent bytes")
    check_equal(obj, {"inner": b"\x00\xff", "list": [b"", b"abc"]}, "server-sent nested bytes")

    async def ask_bin(data: bytes) -> tuple[Any, ...]:
        return data[::-1], {"len": len(data)}

    sio.on("ask-bin", ask_bin)
    check_equal(
        await call(sio, "call-me", "ask-bin", b"\x01\x02\x03\x04"),
        (b"\x04\x03\x02\x01", {"len": 4}),
        "binary ack of a server call",
    )
    return {}


async def rooms() -> dict[str, Any]:
    a, b, c = await asyncio.gather(
        connect("py-rooms-a"), connect("py-rooms-b"), connect("py-rooms-c")
    )
    news = {name: queue_for(sio, "news") for name, sio in (("a", a), ("b", b), ("c", c))}
    fences = {name: queue_for(sio, "fence") for name, sio in (("a", a), ("b", b), ("c", c))}
    for sio, room in ((a, "room1"), (a, "room2"), (b, "room1"), (c, "room2")):
        check_equal(await call(sio, "subscribe", room), True, "subscribe ack")

    async def broadcast(**spec: Any) -> int:
        count: int = await call(a, "broadcast", {"event": "news", **spec})
        return count

    counts = [
        await broadcast(args=["r1"], to="room1"),
        await broadcast(args=["r1-not-a"], to="room1", exclude=[a.get_sid()]),
        await broadcast(args=["r1-or-r2"], to=["room1", "room2"]),
        await broadcast(args=["r1-not-r2"], to="room1", exclude=["room2"]),
    ]
    check_equal(await call(b, "unsubscribe", "room1"), True, "unsubscribe ack")
    counts.append(await broadcast(args=["after-leave"], to="room1"))
    check_equal(counts, [2, 1, 3, 1, 1], "receivers counted by the server")
    check_equal(await call(a, "broadcast", {"event": "fence", "args": []}), 3, "fence count")
    # Each connection delivers in order: once the fence is in, so is every earlier broadcast.
    for queue in fences.values():
        await next_in(queue)
    got: dict[str, list[Any]] = {}
    for name, queue in news.items():
        got[name] = []
        while not queue.empty():
            args = queue.get_nowait()
            # Recovery is on: each broadcast carries its offset as a last argument.
            check(len(args) == 2 and isinstance(args[1], str), "broadcast without an offset", args)
            got[name].append(args[0])
    check_equal(got["a"], ["r1", "r1-or-r2", "after-leave"], "news seen by a")
    check_equal(got["b"], ["r1", "r1-not-a", "r1-or-r2", "r1-not-r2"], "news seen by b")
    check_equal(got["c"], ["r1-or-r2"], "news seen by c")
    return got


async def server_disconnect() -> dict[str, Any]:
    sio = await connect("py-kicked", reconnection=True, reconnection_delay=0.01)
    sid = sio.get_sid()
    reasons: asyncio.Queue[list[Any]] = queue_for(sio, "disconnect")
    await sio.emit("kick-me")
    reason = (await next_in(reasons))[0]
    # python-socketio's name for socket.io's "io server disconnect".
    check_equal(reason, sio.reason.SERVER_DISCONNECT, "disconnect reason")
    check(not sio.connected, "still connected after the server disconnected it")
    return {"sid": sid, "reason": reason}


SCENARIOS = {
    f.__name__: f for f in (server_disconnect, auth_ok, auth_refused, events, acks, binary, rooms)
}


async def main() -> int:
    failed = False
    for name, scenario in SCENARIOS.items():
        try:
            data = await scenario()
        except Exception as exc:
            failed = True
            out({"scenario": name, "result": "fail", "error": f"{exc!r}\n{traceback.format_exc()}"})
        else:
            out({"scenario": name, "result": "ok", **data})
        finally:
            for sio in clients:
                if sio.connected:
                    await sio.disconnect()
            clients.clear()
    out({"done": True, "failed": failed})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
