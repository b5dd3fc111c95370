"""``essen dev``: the whole system in one Trio process, on real loopback ports.

The bot (3000), the admin API (4000, with the dashboard at ``/`` when it is
built), a fake Graph API and a traffic simulator, with SQLite under the data
folder.  An admin login is generated once and kept in the data folder; it is
printed on every start while it still works (once you change that password,
it is no longer shown).  Ctrl-C stops everything at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import secrets
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio

from essen.admin.service import run_admin
from essen.auth.passwords import Passwords
from essen.bot import run_bot
from essen.config import load_admin_settings, load_bot_settings
from essen.errors import AdminExists
from essen.messenger.fake_graph import create_fake_graph
from essen.simulator import SimulatorConfig
from essen.simulator import run as run_simulator
from essen.store.store import Store
from essen.web.serving import serve_app

__all__ = ("DevOptions", "run_dev")

log = logging.getLogger("essen")

DASHBOARD_DIST = Path(__file__).resolve().parent.parent / "dashboard" / "dist"


@dataclass(frozen=True, slots=True)
class DevOptions:
    host: str = "127.0.0.1"
    bot_port: int = 3000
    admin_port: int = 4000
    graph_port: int = 0
    simulate: bool = True
    rate: float = 2.0
    seed: int = 1


def _saved_login(data_dir: Path) -> tuple[str, str]:
    """The generated dev login, created once (mode 0600) in the data folder."""
    path = data_dir / "dev-admin.json"
    if path.exists():
        saved = json.loads(path.read_text())
        return str(saved["username"]), str(saved["password"])
    username, password = "admin", secrets.token_urlsafe(12)
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"username": username, "password": password}))
    os.chmod(path, 0o600)
    return username, password


async def _dev_admin(store: Store, data_dir: Path, passwords: Passwords) -> tuple[str, str | None]:
    """The generated admin login: (username, password if it still works else None)."""
    username, password = await trio.to_thread.run_sync(_saved_login, data_dir)
    user = await store.get_admin(username)
    if user is None:
        hashed = await trio.to_thread.run_sync(passwords.hash, password)
        with contextlib.suppress(AdminExists):
            await store.create_admin(username, hashed)
        return username, password
    works = await trio.to_thread.run_sync(passwords.verify, user.password_hash, password)
    return username, password if works.ok else None


async def run_dev(
    options: DevOptions, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the embedded system until cancelled."""
    admin_settings = load_admin_settings(
        port=options.admin_port,
        dashboard_dir=DASHBOARD_DIST if DASHBOARD_DIST.is_dir() else None,
    )
    data_dir = admin_settings.essen_data_dir
    page_token = load_bot_settings().fb_page_access_token.get_secret_value()
    fake = create_fake_graph(page_token=page_token, rng=random.Random(options.seed))
    passwords = Passwords()
    store = await Store.open(admin_settings.store_url)
    try:
        username, password = await _dev_admin(store, data_dir, passwords)
    finally:
        await store.close()
    async with trio.open_nursery() as nursery:
        graph_urls = await nursery.start(
            partial(serve_app, fake.app, options.host, options.graph_port)
        )
        admin = await nursery.start(
            partial(run_admin, admin_settings, host=options.host, passwords=passwords)
        )
        bot_settings = load_bot_settings(
            port=options.bot_port,
            admin_backend_url=admin.urls[0],
            fb_graph_url=graph_urls[0],
            # What this admin accepts (WebSocket only when REDIS_URL is set).
            admin_socket_transports=",".join(admin_settings.transports),
        )
        bot = await nursery.start(partial(run_bot, bot_settings, host=options.host))
        if options.simulate:
            await nursery.start(
                partial(
                    run_simulator,
                    SimulatorConfig(
                        webhook_url=f"{bot.urls[0]}/webhook",
                        app_secret=bot_settings.fb_app_secret.get_secret_value(),
                        rate=options.rate,
                        seed=options.seed,
                    ),
                )
            )
        dashboard = admin.urls[0] + "/" if admin_settings.dashboard_dir else None
        print("", flush=True)
        print("ESSEN is running:", flush=True)
        if dashboard:
            print(f"  dashboard      {dashboard}", flush=True)
        else:
            print("  dashboard      (not built: run `npm ci && npm run build` in dashboard/)")
        print(f"  admin API      {admin.urls[0]}/api/", flush=True)
        print(f"  bot webhook    {bot.urls[0]}/webhook", flush=True)
        print(f"  fake Graph API {graph_urls[0]}", flush=True)
        if password is not None:
            print(f"  admin login    {username} / {password}", flush=True)
        else:
            print(f"  admin login    {username} (password changed; not shown)", flush=True)
        traffic = f"{options.rate:g} messages/s" if options.simulate else "off"
        print(f"  simulator      {traffic}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        task_status.started()
