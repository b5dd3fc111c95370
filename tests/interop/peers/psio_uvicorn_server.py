"""A python-socketio ``AsyncServer`` (ASGI mode) on uvicorn: the reference server
ESSEN's client is tested against (``tests/interop/test_essen_client_vs_peers.py``).

Run with the venv's python::

    python psio_uvicorn_server.py --port 0 [--path /socket.io/]

It listens on 127.0.0.1 and prints ``READY <port>`` once the socket is listening
(port 0 picks a free one; the test restarts a server on the port it printed).

The contract (the same as ``tests/interop/node/server_peer.mjs``):

* auth: ``{"token": "good"}`` is accepted; anything else is refused with a
  CONNECT_ERROR whose message is ``"bad token"``.
* on connect the server calls the client's ``hello({"greeting": "hi", "n": 41})``
  with an ack and keeps the answer; ``last_hello()`` acks that answer.
* ``echo(*args)`` acks ``*args``.
* ``bin_roundtrip(data)`` calls the client's ``bin(data)`` with an ack and acks
  the client's answer back (binary through both directions and both kinds of ack).
* ``subscribe(room)`` joins ``room`` and acks ``True``; ``publish(room, payload)``
  emits ``metrics:update(payload)`` to ``room`` and acks ``True``.
* ``kick()`` disconnects that client from the server side.
* ``record(*args)`` remembers ``args`` (process-wide, in order); ``records()``
  acks the whole list.
* ``stats()`` acks ``{"connects": n, "refused": m}`` for this process.
* ``disconnects(n)`` acks the disconnect reasons seen so far (in order), once
  there are at least ``n`` of them (or after 5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
from typing import Any

import socketio
import uvicorn


def build_app(path: str) -> Any:
    sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*")
    hellos: dict[str, asyncio.Task[Any]] = {}
    records: list[list[Any]] = []
    stats = {"connects": 0, "refused": 0}
    disconnects: list[str] = []
    disconnected = asyncio.Condition()

    async def call_hello(sid: str) -> Any:
        # A background task starts after the connect handler returned, that is
        # after python-socketio queued the CONNECT packet: the call follows it.
        try:
            return await sio.call("hello", {"greeting": "hi", "n": 41}, to=sid, timeout=3)
        except Exception as exc:  # recorded for the test to see
            return {"error": repr(exc)}

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        if not isinstance(auth, dict) or auth.get("token") != "good":
            stats["refused"] += 1
            raise socketio.exceptions.ConnectionRefusedError("bad token")
        stats["connects"] += 1
        hellos[sid] = sio.start_background_task(call_hello, sid)

    @sio.event
    async def disconnect(sid: str, reason: Any = None) -> None:
        async with disconnected:
            disconnects.append(str(reason))
            disconnected.notify_all()

    @sio.on("disconnects")
    async def get_disconnects(sid: str, n: int) -> Any:
        async with disconnected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(disconnected.wait_for(lambda: len(disconnects) >= n), 5)
            return list(disconnects)

    @sio.event
    async def echo(sid: str, *args: Any) -> Any:
        return args

    @sio.event
    async def last_hello(sid: str) -> Any:
        task = hellos.get(sid)
        return None if task is None else await task

    @sio.event
    async def bin_roundtrip(sid: str, data: Any) -> Any:
        return await sio.call("bin", data, to=sid, timeout=5)

    @sio.event
    async def subscribe(sid: str, room: str) -> bool:
        await sio.enter_room(sid, room)
        return True

    @sio.event
    async def publish(sid: str, room: str, payload: Any) -> bool:
        await sio.emit("metrics:update", payload, to=room)
        return True

    @sio.event
    async def kick(sid: str) -> None:
        await sio.disconnect(sid)

    @sio.event
    async def record(sid: str, *args: Any) -> None:
        records.append(list(args))

    @sio.on("records")
    async def get_records(sid: str) -> Any:
        return records

    @sio.on("stats")
    async def get_stats(sid: str) -> Any:
        return dict(stats)

    return socketio.ASGIApp(sio, socketio_path=path.strip("/"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--path", default="/socket.io/")
    args = parser.parse_args()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)  # connections queue from here on: READY is true now
    config = uvicorn.Config(
        build_app(args.path),
        ws="wsproto",
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    print(f"READY {sock.getsockname()[1]}", flush=True)
    sys.stdout.flush()
    asyncio.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
