"""Peer server for the fan-out benchmark: python-socketio AsyncServer on uvicorn.

Contract (see bench/README.md):
    python bench/servers/psio_uvicorn.py --port PORT
    - serves Socket.IO at /socket.io/ on 127.0.0.1:PORT, prints READY once listening
    - 'subscribe' with "monitoring" -> enter room 'monitoring', ack True
    - 'publish' with one object -> broadcast 'metrics:update' with it to room 'monitoring'
    - no per-message logging

Configuration is deliberately stock: AsyncServer(async_mode='asgi') with default ping
settings and logging off; uvicorn with loop='auto', http='auto', ws='auto' (whatever
the environment provides: uvloop/httptools/websockets when installed, else
asyncio/h11/wsproto), log_level='warning', no access log. The implementations actually
picked are printed once to stderr at startup.
"""

from __future__ import annotations

import argparse
import sys

import socketio
import uvicorn

ROOM = "monitoring"


def build_app() -> tuple[socketio.AsyncServer, socketio.ASGIApp]:
    sio = socketio.AsyncServer(async_mode="asgi", logger=False, engineio_logger=False)

    @sio.on("subscribe")
    async def subscribe(sid: str, room: object = None) -> bool:
        if room != ROOM:
            return False
        await sio.enter_room(sid, ROOM)
        return True

    @sio.on("publish")
    async def publish(sid: str, data: object = None) -> None:
        await sio.emit("metrics:update", data, room=ROOM)

    return sio, socketio.ASGIApp(sio, socketio_path="socket.io")


class ReadyServer(uvicorn.Server):
    """uvicorn.Server that prints READY once its listening sockets are bound."""

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            print(describe_impls(self.config), file=sys.stderr, flush=True)
            print("READY", flush=True)


def describe_impls(config: uvicorn.Config) -> str:
    import asyncio
    from importlib.metadata import version

    loop = type(asyncio.get_running_loop()).__module__
    return (
        f"psio_uvicorn: python-socketio {version('python-socketio')}"
        f" uvicorn {uvicorn.__version__} loop={loop}"
        f" http={getattr(config.http_protocol_class, '__module__', '?')}"
        f" ws={getattr(config.ws_protocol_class, '__module__', '?')}"
        f" ws_per_message_deflate={config.ws_per_message_deflate}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()

    _, app = build_app()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="auto",
        log_level="warning",
        access_log=False,
    )
    ReadyServer(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
