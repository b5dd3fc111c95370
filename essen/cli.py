"""The ``essen`` command."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import sys
from functools import partial
from typing import TYPE_CHECKING

import trio

from essen.config import ConfigError
from essen.errors import StoreError

if TYPE_CHECKING:
    from essen.dev import DevOptions

# Each command imports what it runs inside its own function: the bot process
# must not load the admin API's stack (SQLAlchemy, Alembic, argon2), which
# cost it ~25 MiB of RSS for nothing.

__all__ = ("main",)

log = logging.getLogger("essen")


async def _stop_on_signals(cancel_scope: trio.CancelScope) -> None:
    """SIGTERM (the platform stopping us) and SIGINT (Ctrl-C) end the run cleanly."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            cancel_scope.cancel()
            return


async def _dev(options: DevOptions) -> None:
    from essen.dev import run_dev

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signals, nursery.cancel_scope)
        await nursery.start(run_dev, options)


async def _demo(host: str, port: int) -> None:
    from essen.web.realtime_demo import create_demo, run_ticker
    from essen.web.serving import serve_app

    app, server, mount = create_demo()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signals, nursery.cancel_scope)
        await nursery.start(server.run)
        nursery.start_soon(run_ticker, server)
        urls = await nursery.start(partial(serve_app, app, host, port, socketio=mount))
        for url in urls:
            print(f"ESSEN realtime demo: Socket.IO at {url}/socket.io/ and {url}/api/socket.io/")
        print("Press Ctrl-C to stop.", flush=True)


async def _bot() -> None:
    from essen.bot import run_bot
    from essen.config import load_bot_settings

    settings = load_bot_settings()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signals, nursery.cancel_scope)
        await nursery.start(run_bot, settings)


async def _admin() -> None:
    from essen.admin.service import run_admin
    from essen.config import load_admin_settings

    settings = load_admin_settings()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signals, nursery.cancel_scope)
        await nursery.start(run_admin, settings)


MIN_PASSWORD = 12


async def _create_admin(username: str, password: str) -> None:
    from essen.auth.passwords import hash_password
    from essen.config import load_admin_settings
    from essen.store.store import Store

    if len(password) < MIN_PASSWORD:
        raise ValueError(f"an admin password needs at least {MIN_PASSWORD} characters")
    settings = load_admin_settings()
    store = await Store.open(settings.store_url)
    try:
        hashed = await trio.to_thread.run_sync(hash_password, password)
        await store.create_admin(username, hashed)
    finally:
        await store.close()
    print(f"admin {username!r} created in {store.backend}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="essen", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    dev = commands.add_parser(
        "dev", help="run everything locally: bot, admin API, dashboard, fake Graph API, traffic"
    )
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--bot-port", type=int, default=3000)
    dev.add_argument("--admin-port", type=int, default=4000)
    dev.add_argument("--no-simulator", action="store_true", help="no simulated traffic")
    dev.add_argument("--rate", type=float, default=2.0, help="simulated messages per second")
    dev.add_argument("--seed", type=int, default=1, help="seed of the simulated traffic")
    demo = commands.add_parser("demo", help="run only the realtime demo hub")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=os.environ.get("PORT", "4000"))
    commands.add_parser("bot", help="run the facebook-bot service (port $PORT, default 3000)")
    commands.add_parser("admin", help="run the admin-api service (port $PORT, default 4000)")
    create = commands.add_parser("create-admin", help="create an admin account in the store")
    create.add_argument("username")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # One line per HTTP request is noise at this level (and the Send API's URLs
    # are redacted anyway); problems are logged by ESSEN itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # coredis logs a lost connection at INFO with a traceback of nothing; the
    # cluster actor and the bot's dedupe log the loss with its cause.
    logging.getLogger("coredis").setLevel(logging.WARNING)
    try:
        if args.command == "bot":
            trio.run(_bot)
        elif args.command == "admin":
            trio.run(_admin)
        elif args.command == "create-admin":
            if args.password_stdin:
                password = sys.stdin.readline().rstrip("\n")
            else:
                password = getpass.getpass(f"password for {args.username}: ")
            trio.run(_create_admin, args.username, password)
        elif args.command == "demo":
            trio.run(_demo, args.host, args.port)
        else:
            from essen.dev import DevOptions

            trio.run(
                _dev,
                DevOptions(
                    host=args.host,
                    bot_port=args.bot_port,
                    admin_port=args.admin_port,
                    simulate=not args.no_simulator,
                    rate=args.rate,
                    seed=args.seed,
                ),
            )
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return 2
    except (StoreError, ValueError) as exc:
        log.error("%s", exc)
        return 1
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
