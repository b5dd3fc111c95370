"""Dashboards for the multi-instance test: they behave like the real page.

The real page (``dashboard/src/lib/realtime.js``, ``state.js``, ``feed.js``)
logs in over REST, connects with the token, subscribes to ``monitoring``
and, after *every* connect (the first and each reconnect, whichever admin
instance the load balancer picked), subscribes again and rebuilds itself
from the ack's snapshot; live events that arrive while that subscribe is in
flight are held and replayed after the snapshot.  Failover is only correct
if that loop is: a dashboard that did not resubscribe would sit on the
survivor receiving nothing, and one that did not deduplicate would show an
event twice (live from the dead instance, then again in the survivor's
snapshot).

Two kinds, with one record of what they saw (:class:`Board`):

* :class:`PyDashboard`: our :class:`~essen.realtime.client.SocketIOClient`
  (WebSocket-only) driven by the same loop, written again in Python; the
  snapshot's feed is *merged* into what the board has, by (instance, id).
* :class:`NodeDashboard`: the page's own modules (``createRealtime``,
  ``DashboardState``, ``createApi``, ``resolveConfig``) with the official
  ``socket.io-client`` in Node, minus the DOM.  Its feed is the page's
  :class:`FeedModel` (the snapshot *replaces* it, as on the page); it
  reports on stdout, one JSON object per line.

Both record every *live* ``message:processed`` delivery (counted per
(instance, id): a count of 2 is a duplicate, whatever the page would then
show), the ``totals.received`` of every live ``metrics:update``, every
``health:changed``, and each snapshot.  Each names itself to the load
balancer in the ``x-essen-test-client`` header, so the test knows which
admin instance it is on.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import trio

from essen.errors import DisconnectedError
from essen.realtime.client import ClientOptions, ClientState, ClientStatus, SocketIOClient
from tests.integration._balancer import CLIENT_HEADER
from tests.integration._processes import ROOT, Child

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("Board", "Key", "NodeDashboard", "PyDashboard", "key_of")

SOCKET_PATH = "/api/socket.io/"
DASHBOARD_DIR = ROOT / "dashboard"

Key = tuple[str, str]


def key_of(event: Any) -> Key:
    """The identity of a feed event across instances and paths: (bot instance, event id)."""
    if not isinstance(event, dict):
        return ("", "")
    return (str(event.get("instance", "")), str(event.get("id", "")))


class Board:
    """What one dashboard saw; :meth:`wait_until` wakes on every change."""

    def __init__(self, name: str) -> None:
        self.name = name
        #: Live ``message:processed`` deliveries per (instance, id).
        self.live: Counter[Key] = Counter()
        #: ``totals.received`` of every live ``metrics:update``, in order.
        self.received: list[int | None] = []
        #: Every live ``health:changed`` payload, in order.
        self.health_changes: list[dict[str, Any]] = []
        #: Component -> status, as the page shows it (snapshot, then changes).
        self.components: dict[str, str] = {}
        #: Snapshots applied (1 after the first subscribe, +1 per resynchronisation).
        self.syncs = 0
        #: Keys that one snapshot's feed listed more than once.
        self.snapshot_duplicates: list[Key] = []
        #: Every key any snapshot's feed listed.
        self.snapshot_keys: set[Key] = set()
        #: Something this dashboard found wrong (a refused subscribe, a crash).
        self.errors: list[str] = []
        self._changed = trio.Event()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, predicate: Callable[[Board], bool]) -> None:
        """Until ``predicate(self)`` holds; wrap in ``trio.fail_after``."""
        while not predicate(self):
            if self.errors:
                raise AssertionError(f"dashboard {self.name}: {self.errors}")
            await self._changed.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect and stay connected until cancelled; ``nursery.start`` returns once synced."""
        raise NotImplementedError

    async def merged_view(self) -> list[Key]:
        """The keys of the feed the page shows (no key may be there twice)."""
        raise NotImplementedError

    def sees(self, keys: set[Key]) -> bool:
        """Each of ``keys`` was delivered live."""
        return all(self.live[key] >= 1 for key in keys)

    def knows(self, keys: set[Key]) -> bool:
        """Each of ``keys`` arrived live or in a snapshot (after a reconnect, either may)."""
        return all(self.live[key] >= 1 or key in self.snapshot_keys for key in keys)

    @property
    def latest_received(self) -> int | None:
        return self.received[-1] if self.received else None

    def duplicates(self) -> dict[Key, int]:
        """Live events delivered more than once."""
        return {key: count for key, count in self.live.items() if count > 1}

    def _note_snapshot_feed(self, keys: list[Key]) -> None:
        self.snapshot_duplicates.extend(key for key, n in Counter(keys).items() if n > 1)
        self.snapshot_keys.update(keys)


class PyDashboard(Board):
    """Our Socket.IO client as a dashboard, with the page's connect/subscribe/merge loop."""

    def __init__(
        self, name: str, base_url: str, *, username: str, password: str, http: httpx.AsyncClient
    ) -> None:
        super().__init__(name)
        self.base_url = base_url
        self.username = username
        self.password = password
        self.http = http
        #: The page's feed: every event of every snapshot and every live one, once per key.
        self.merged: dict[Key, dict[str, Any]] = {}
        self.client: SocketIOClient | None = None
        self._generation = 0
        self._syncing = False
        self._held: list[tuple[str, Any]] = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Log in, connect, stay subscribed (again after every reconnect) until cancelled.

        Started with ``nursery.start``: returns once the first snapshot is applied.
        """
        response = await self.http.post(
            f"{self.base_url}/api/auth/login",
            json={"username": self.username, "password": self.password},
        )
        assert response.status_code == 200, response.text
        token = response.json()["token"]
        client = SocketIOClient(
            self.base_url,
            ClientOptions(
                path=SOCKET_PATH,
                transports=("websocket",),
                auth={"token": token},
                headers={CLIENT_HEADER: self.name},
            ),
        )
        self.client = client
        client.on("message:processed")(self._on_message)
        client.on("metrics:update")(self._on_metrics)
        client.on("health:changed")(self._on_health)
        connects_in, connects_out = trio.open_memory_channel[int](math.inf)
        previous = ClientState.IDLE

        def status_changed(status: ClientStatus) -> None:
            # realtime.js' "connect" / "disconnect": a new generation each time,
            # so an ack that belongs to a connection already gone is ignored.
            nonlocal previous
            if status.state is ClientState.CONNECTED and previous is not ClientState.CONNECTED:
                self._generation += 1
                self._syncing = True
                self._held = []
                connects_in.send_nowait(self._generation)
            elif status.state is not ClientState.CONNECTED and previous is ClientState.CONNECTED:
                self._generation += 1
                self._syncing = False
                self._held = []
            previous = status.state

        client.on_status(status_changed)
        async with connects_in, connects_out, trio.open_nursery() as nursery:
            await nursery.start(client.run)
            nursery.start_soon(self._subscriber, client, connects_out)
            await self.wait_until(lambda board: board.syncs >= 1)
            task_status.started()

    async def _subscriber(
        self, client: SocketIOClient, connects: trio.MemoryReceiveChannel[int]
    ) -> None:
        async for generation in connects:
            if generation != self._generation:
                continue  # that connection is gone already
            try:
                ack = (await client.call("subscribe", "monitoring"))[0]
            except DisconnectedError:
                continue  # lost before the ack: the next connect subscribes again
            if generation != self._generation:
                continue
            if not (isinstance(ack, dict) and ack.get("ok") is True):
                self.errors.append(f"subscribe refused: {ack!r}")
                self._wake()
                continue
            self._apply_snapshot(ack.get("snapshot") or {})

    def _apply_snapshot(self, snapshot: dict[str, Any]) -> None:
        feed = snapshot.get("feed") or []
        self._note_snapshot_feed([key_of(event) for event in feed])
        for event in feed:
            self.merged.setdefault(key_of(event), event)
        self.components = {
            entry["component"]: entry["status"] for entry in snapshot.get("health") or []
        }
        held, self._held = self._held, []
        self._syncing = False
        for kind, payload in held:
            if kind == "message":
                self.merged.setdefault(key_of(payload), payload)
            else:
                self._apply_health(payload)
        self.syncs += 1
        self._wake()

    def _apply_health(self, change: dict[str, Any]) -> None:
        self.components[change["component"]] = change["status"]

    # Handlers take the payload only: with connection-state recovery the
    # server appends an offset argument.
    async def _on_message(self, event: Any = None, *_: Any) -> None:
        self.live[key_of(event)] += 1
        if self._syncing:
            self._held.append(("message", event))
        else:
            self.merged.setdefault(key_of(event), event)
        self._wake()

    async def _on_metrics(self, metrics: Any = None, *_: Any) -> None:
        totals = metrics.get("totals", {}) if isinstance(metrics, dict) else {}
        self.received.append(totals.get("received"))
        self._wake()

    async def _on_health(self, change: Any = None, *_: Any) -> None:
        self.health_changes.append(change)
        if self._syncing:
            self._held.append(("health", change))
        else:
            self._apply_health(change)
        self._wake()

    async def merged_view(self) -> list[Key]:
        """The keys of the page's feed (merged: duplicates impossible by construction)."""
        await trio.lowlevel.checkpoint()
        return list(self.merged)


# The page's realtime layer in Node: the dashboard's own modules, no DOM.
# Reports on stdout (one JSON object per line); "view" on stdin asks for the
# page's feed and health rows.
_NODE_DASHBOARD_JS = r"""
import { createRequire } from "node:module";
import readline from "node:readline";

const options = JSON.parse(process.env.ESSEN_NODE_DASHBOARD);
const report = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const fail = (error) => {
  report({ t: "error", error: String(error?.stack ?? error) });
  process.exit(1);
};
process.on("unhandledRejection", fail);
process.on("uncaughtException", fail);

const { io } = createRequire(options.packageJson)("socket.io-client");
const lib = (name) => import(new URL(name, options.lib).href);
const { createApi } = await lib("api.js");
const { resolveConfig } = await lib("config.js");
const { ConnectionMachine } = await lib("connection.js");
const { createRealtime } = await lib("realtime.js");
const { DashboardState } = await lib("state.js");

const key = (event) => [String(event?.instance ?? ""), String(event?.id ?? "")];
const rows = (state) =>
  Object.fromEntries([...state.health.rows.values()].map((r) => [r.component, r.status]));

const { config } = resolveConfig(
  { apiBase: `${options.url}/api`, socketUrl: options.url, transports: ["websocket"] },
  { origin: options.url },
);
const api = createApi({ apiBase: config.apiBase });
const session = await api.login(options.username, process.env.ESSEN_PASSWORD);
report({ t: "logged_in" });

const state = new DashboardState({ feedLimit: config.feedLimit });
const machine = new ConnectionMachine(Date.now());
machine.subscribe((next) => report({ t: "state", kind: next.kind }));
// The page's io, plus the header that tells the test's load balancer who this is.
const tagged = (url, opts) =>
  io(url, { ...opts, extraHeaders: { [options.header]: options.name } });
const realtime = createRealtime({
  io: tagged,
  config,
  getToken: () => session.token,
  machine,
  handlers: {
    snapshot(snapshot) {
      state.applySnapshot(snapshot, Date.now());
      report({ t: "synced", feed: (snapshot.feed ?? []).map(key), health: rows(state) });
    },
    metrics(metrics) {
      state.applyMetrics(metrics, Date.now());
    },
    message(event) {
      state.applyMessage(event);
    },
    health(change) {
      state.applyHealth(change);
      report({ t: "health", health: rows(state) });
    },
    sessionEnded(reason) {
      report({ t: "error", error: `session ended: ${reason}` });
    },
  },
});
// Every live delivery, whatever the page then does with it.
realtime.socket.on("message:processed", (event) => report({ t: "message", key: key(event) }));
realtime.socket.on("metrics:update", (metrics) =>
  report({ t: "metrics", received: metrics?.totals?.received ?? null }),
);
realtime.socket.on("health:changed", (change) => report({ t: "health_changed", change }));
realtime.start();

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() === "view") {
    const feed = state.feed.items.map(key);
    report({ t: "view", feed, health: rows(state), kind: machine.state.kind });
  }
});
"""


class NodeDashboard(Board):
    """The page's modules with the official socket.io-client, in Node."""

    def __init__(
        self, name: str, base_url: str, *, username: str, password: str, node: str, log_dir: Path
    ) -> None:
        super().__init__(name)
        settings = {
            "url": base_url,
            "username": username,
            "name": name,
            "header": CLIENT_HEADER,
            "lib": (DASHBOARD_DIR / "src" / "lib").as_uri() + "/",
            "packageJson": str(DASHBOARD_DIR / "package.json"),
        }
        self.child = Child(
            f"node dashboard {name}",
            [node, "--input-type=module", "-e", _NODE_DASHBOARD_JS],
            env={
                **os.environ,
                "ESSEN_NODE_DASHBOARD": json.dumps(settings),
                "ESSEN_PASSWORD": password,
            },
            log_path=log_dir / f"{name}.log",
            stdin=True,
            on_line=self._on_line,
        )
        self._views: list[dict[str, Any]] = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the Node page until cancelled; ``nursery.start`` returns once it has synced."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.child.run)
            await self.wait_until(lambda board: board.syncs >= 1 or not self.child.running)
            if not self.child.running:
                raise AssertionError(f"{self.child.name} ended:\n{self.child.tail()}")
            task_status.started()

    def _on_line(self, line: str) -> None:
        try:
            report = json.loads(line)
        except ValueError:
            return  # node's own warnings
        match report.get("t"):
            case "message":
                self.live[(report["key"][0], report["key"][1])] += 1
            case "metrics":
                self.received.append(report["received"])
            case "health_changed":
                self.health_changes.append(report["change"])
            case "health":
                self.components = dict(report["health"])
            case "synced":
                self._note_snapshot_feed([(k[0], k[1]) for k in report["feed"]])
                self.components = dict(report["health"])
                self.syncs += 1
            case "view":
                self._views.append(report)
            case "error":
                self.errors.append(report["error"])
            case _:
                pass
        self._wake()

    async def merged_view(self) -> list[Key]:
        """The keys of the page's feed (its FeedModel, newest last), asked of the page."""
        views = len(self._views)
        await self.child.send_line("view")
        await self.wait_until(lambda _: len(self._views) > views)
        return [(k[0], k[1]) for k in self._views[views]["feed"]]
