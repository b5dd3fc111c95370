"""The uplink actor: the bot's Socket.IO client to the admin API.

It authenticates as a service (``{service: "bot", secret, instance}``), starts
on polling and upgrades to WebSocket, and sends:

* ``message:processed`` in batches: flushed at ``flush_at`` events or
  ``flush_after`` seconds after the first one, whichever comes first, each
  sent with an ack and kept until the admin acknowledges it (at least once:
  a batch in flight when the connection drops is sent again after the
  reconnection, possibly to another admin instance; the admin shows an
  event it already has only once).  At most ``buffer_limit`` batches wait;
  beyond that the oldest is dropped and counted;
* ``metrics:update`` whenever the metrics actor publishes a snapshot, and on
  the admin's ``metrics:request``; while disconnected only the latest snapshot
  is kept (an old one is worth nothing once a newer exists) and sent on reconnect;
* ``health:changed`` on every transition.

While disconnected, health events wait in the client's bounded buffer
(overflow drops the oldest send, counted in the client's ``buffer_dropped``)
and are flushed in order on reconnect.  The guide's log lines mark each state.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from essen.errors import DisconnectedError
from essen.events import HealthChanged, MessageBatch, MessageProcessed, MetricsSnapshot
from essen.realtime.backoff import BackoffPolicy
from essen.realtime.client import ClientOptions, ClientState, ClientStatus, SocketIOClient

if TYPE_CHECKING:
    import random
    from collections.abc import Awaitable, Callable, Iterable

    from essen.realtime.transports import NetworkTransports

__all__ = ("UplinkConfig", "UplinkItem", "UplinkStats", "run")

log = logging.getLogger("essen.uplink")

UplinkItem = MessageProcessed | MetricsSnapshot | HealthChanged


@dataclass(frozen=True, slots=True)
class UplinkConfig:
    url: str
    secret: str
    instance: str
    path: str = "/api/socket.io/"
    transports: tuple[str, ...] = ("polling", "websocket")
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    flush_at: int = 100
    flush_after: float = 0.25
    buffer_limit: int = 1000
    #: A batch not acknowledged this long is sent again (the admin may be gone).
    ack_timeout: float = 10.0


@dataclass
class UplinkStats:
    """What the uplink sent (``batches``/``events``: first sendings, ``resent``
    after a lost connection); the client's ``buffer_dropped`` counts health
    events that overflowed its buffer, ``dropped_*`` the batches."""

    batches: int = 0
    events: int = 0
    snapshots: int = 0
    health: int = 0
    snapshots_coalesced: int = 0
    #: Batches sent again after a lost connection or a missing ack.
    resent: int = 0
    #: Batches dropped: the oldest beyond ``buffer_limit``, or refused by the admin.
    dropped_batches: int = 0
    dropped_events: int = 0


async def run(
    inbox: trio.MemoryReceiveChannel[UplinkItem],
    *,
    config: UplinkConfig,
    request_metrics: Callable[[], Awaitable[MetricsSnapshot]],
    on_status: Callable[[ClientStatus], None] | None = None,
    current_health: Callable[[], Iterable[HealthChanged]] | None = None,
    network: NetworkTransports | None = None,
    rng: random.Random | None = None,
    stats: UplinkStats | None = None,
    task_status: trio.TaskStatus[SocketIOClient] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the uplink until cancelled or until ``inbox`` is closed."""
    client = SocketIOClient(
        config.url,
        ClientOptions(
            path=config.path,
            transports=config.transports,
            auth={"service": "bot", "secret": config.secret, "instance": config.instance},
            backoff=config.backoff,
            buffer_limit=config.buffer_limit,
        ),
        network=network,
        rng=rng,
    )
    stats = stats if stats is not None else UplinkStats()
    pending_snapshot: MetricsSnapshot | None = None

    def send_snapshot(snapshot: MetricsSnapshot) -> None:
        nonlocal pending_snapshot
        if client.connected:
            client.emit("metrics:update", snapshot.model_dump(mode="json"))
            stats.snapshots += 1
            pending_snapshot = None
        else:
            if pending_snapshot is not None:
                stats.snapshots_coalesced += 1
            pending_snapshot = snapshot

    previous = ClientState.IDLE

    def status_changed(status: ClientStatus) -> None:
        nonlocal previous
        if previous is ClientState.CONNECTED and status.state is not ClientState.CONNECTED:
            if status.state is ClientState.CLOSED and (client.closing or status.reason is None):
                log.info("uplink closed")
            else:
                log.warning("❌ Disconnected from admin: %s", status.reason)
        match status.state:
            case ClientState.CONNECTED if previous is not ClientState.CONNECTED:
                log.info(
                    "✅ Connected to admin backend via Socket.io (%s%s)",
                    status.transport,
                    ", session recovered" if status.recovered else "",
                )
                if pending_snapshot is not None:
                    send_snapshot(pending_snapshot)
                # Health is sent on transitions only, so a (new) admin knows our
                # components' state only if we tell it again on every connect.
                if current_health is not None:
                    for change in current_health():
                        client.emit("health:changed", change.model_dump(mode="json"))
            case ClientState.RECONNECTING if status.retry_in is not None:
                log.warning(
                    "⚠️ Connection error: %s; retry %d in %.1f s",
                    status.reason,
                    status.attempt,
                    status.retry_in,
                )
            case _:
                pass
        previous = status.state
        if on_status is not None:
            on_status(status)

    client.on_status(status_changed)

    @client.on("metrics:request")
    async def on_metrics_request(*_: object) -> None:
        send_snapshot(await request_metrics())

    batch: list[MessageProcessed] = []
    unacked: deque[MessageBatch] = deque()
    queued = trio.Event()
    drained = trio.Event()  # set while nothing waits for an ack
    drained.set()

    def flush() -> None:
        nonlocal drained
        if batch:
            if drained.is_set():
                drained = trio.Event()
            unacked.append(MessageBatch(instance=config.instance, events=tuple(batch)))
            batch.clear()
            if len(unacked) > config.buffer_limit:
                dropped = unacked.popleft()
                stats.dropped_batches += 1
                stats.dropped_events += len(dropped.events)
            queued.set()

    async def deliver() -> None:
        """Send the oldest unacknowledged batch until it is acknowledged, in order."""
        nonlocal queued
        attempted: MessageBatch | None = None
        while True:
            if not unacked:
                queued = trio.Event()
                await queued.wait()
                continue
            try:
                await client.wait_connected()
            except DisconnectedError:
                return  # closed for good
            message = unacked[0]
            if message is attempted:
                stats.resent += 1
            else:
                stats.batches += 1
                stats.events += len(message.events)
            attempted = message
            ack: list[object] | None = None
            with trio.move_on_after(config.ack_timeout):
                try:
                    ack = await client.call("message:processed", message.model_dump(mode="json"))
                except DisconnectedError:
                    continue  # wait for the reconnection, then send it again
            if ack is None:
                continue  # no answer in time: send it again
            if unacked and unacked[0] is message:
                unacked.popleft()
            if not unacked:
                drained.set()
            answer = ack[0] if ack else None
            if isinstance(answer, dict) and answer.get("ok") is False:
                # Refused as invalid: sending it again cannot help.
                stats.dropped_batches += 1
                stats.dropped_events += len(message.events)
                log.warning("admin refused a message:processed batch: %s", answer)

    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        nursery.start_soon(deliver)
        task_status.started(client)
        deadline = math.inf
        # The inbox belongs to the assembly: a restarted uplink reads the same channel.
        while True:
            with trio.move_on_at(deadline):
                try:
                    item = await inbox.receive()
                except trio.EndOfChannel:
                    break
                match item:
                    case MessageProcessed():
                        batch.append(item)
                        if len(batch) == 1:
                            deadline = trio.current_time() + config.flush_after
                        if len(batch) >= config.flush_at:
                            flush()
                            deadline = math.inf
                    case MetricsSnapshot():
                        send_snapshot(item)
                    case HealthChanged():
                        client.emit("health:changed", item.model_dump(mode="json"))
                        stats.health += 1
                continue
            flush()
            deadline = math.inf
        flush()
        # Closing: what the admin acknowledges within a moment is delivered.
        if client.connected:
            with trio.move_on_after(min(config.ack_timeout, 2.0)):
                await drained.wait()
        await client.aclose()
        nursery.cancel_scope.cancel()
