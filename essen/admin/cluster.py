"""The cluster actor: several admin instances, one fleet, through Redis pub/sub.

::

    [ingest] ──local bot events, revocations──▶ [cluster] ──PUBLISH──▶ Redis
    [ingest] ◀──other instances' bot events─── [cluster] ◀──SUBSCRIBE── Redis
    [auth]   ◀──other instances' revocations──┘

Each instance publishes what *its own* bots sent and feeds what the others
published into its own ingest actor (see :mod:`essen.admin.bus` for why the
inputs and not the emits).  Its own messages come back from Redis too and
are skipped by origin, so each event enters each ingest actor once.

Redis going away must not take monitoring with it: the instance keeps serving
its own bots and dashboards, reports the ``redis`` component ``degraded``,
and reconnects with exponential backoff (a cancel scope per connection; the
loop is the only retry logic, coredis' own retries are off).  What its bots
send meanwhile waits in the bounded outbox and is published on reconnection;
when the outbox is full the ingest actor drops the newest and counts it.
What the *other* instances published meanwhile is gone: pub/sub keeps nothing
for an absent subscriber.  Metrics heal by themselves (each snapshot is the
bot's whole state); the feed of the missed minutes does not.

Revocations (logout) also go to a sorted set ``essen:revoked`` (score = the
token's expiry), read on every (re)connection, so an instance that starts or
comes back later also refuses a token logged out elsewhere.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import trio
from coredis import Redis

from essen.admin.bus import BusError, Revocation, decode, encode
from essen.admin.hub import Ingest
from essen.realtime.backoff import Backoff, BackoffPolicy
from essen.redis_link import LOST, describe

if TYPE_CHECKING:
    from collections.abc import Callable

    from essen.admin.ingest import IngestInbox
    from essen.events import HealthStatus

__all__ = ("OUTBOX_SIZE", "ClusterConfig", "ClusterStatistics", "Outgoing", "Revocation", "run")

log = logging.getLogger("essen.admin.cluster")

#: Items waiting to be published (a Redis outage of ~1 min at 30 events/s).
OUTBOX_SIZE: Final = 2_000
#: Revocations kept in Redis (oldest-expiring trimmed first).
MAX_REVOKED: Final = 10_000

Outgoing = Ingest | Revocation


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    url: str
    admin_instance: str
    channel: str = "essen:fleet"
    revoked_key: str = "essen:revoked"
    backoff: BackoffPolicy = field(
        default_factory=lambda: BackoffPolicy(initial=0.5, factor=2.0, maximum=10.0, jitter=0.5)
    )
    #: How long one connection attempt (connect, subscribe, read revocations) may take.
    connect_timeout: float = 5.0


@dataclass(slots=True)
class ClusterStatistics:
    """Counters for ``/api/monitoring/health-comprehensive`` (``redis`` section)."""

    connected: bool = False
    connections: int = 0
    published: int = 0
    received: int = 0
    #: Messages from other instances dropped because the ingest inbox was full.
    dropped_incoming: int = 0
    #: Bus messages that failed validation (another version, corruption).
    invalid: int = 0
    last_error: str | None = None


async def run(
    outbox: trio.MemoryReceiveChannel[Outgoing],
    inbox: trio.MemorySendChannel[IngestInbox],
    *,
    config: ClusterConfig,
    on_health: Callable[[HealthStatus, str | None], None],
    on_revoked: Callable[[str, int], None],
    now_wall: Callable[[], float],
    rng: random.Random | None = None,
    statistics: ClusterStatistics | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Bridge this instance to the others until cancelled; reconnect forever."""
    bridge = _Bridge(
        outbox,
        inbox,
        config,
        on_health,
        on_revoked,
        now_wall,
        statistics if statistics is not None else ClusterStatistics(),
        Backoff(config.backoff, rng or random.Random()),
    )
    task_status.started()
    while True:
        error: str = "the subscription ended"
        try:
            await bridge.connected()
        except* LOST as group:
            error = describe(group)
        bridge.stats.connected = False
        bridge.stats.last_error = error
        delay = bridge.backoff.next()
        log.warning("Redis lost (%s); cross-instance fan-out paused, retry in %.1f s", error, delay)
        on_health(
            "degraded",
            f"Redis unreachable ({error}); serving this instance's clients only, "
            f"retrying in {delay:.1f} s",
        )
        await trio.sleep(delay)


@dataclass
class _Bridge:
    """What one connection works with; a new connection reuses all of it."""

    outbox: trio.MemoryReceiveChannel[Outgoing]
    inbox: trio.MemorySendChannel[IngestInbox]
    config: ClusterConfig
    on_health: Callable[[HealthStatus, str | None], None]
    on_revoked: Callable[[str, int], None]
    now_wall: Callable[[], float]
    stats: ClusterStatistics
    backoff: Backoff

    async def connected(self) -> None:
        """One connection's life: returns or raises when it is over."""
        config = self.config
        # One scope bounds the set-up (connect, subscribe, read revocations) and is
        # lifted once connected; coredis' context managers own task groups, so they
        # must be entered and left inside the same scopes.
        with trio.CancelScope(deadline=trio.current_time() + config.connect_timeout) as setup:
            async with (
                Redis.from_url(config.url, decode_responses=False) as client,
                client.pubsub(
                    channels=[config.channel], ignore_subscribe_messages=True, retry_policy=None
                ) as pubsub,
            ):
                await client.zremrangebyscore(config.revoked_key, -math.inf, self.now_wall())
                for jti, exp in await client.zrange(config.revoked_key, 0, -1, withscores=True):
                    self.on_revoked(jti.decode() if isinstance(jti, bytes) else jti, int(exp))
                setup.deadline = math.inf
                self.stats.connected = True
                self.stats.connections += 1
                self.backoff.reset()
                log.info("Redis connected: sharing fan-out on %s", config.channel)
                self.on_health("healthy", None)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._publish, client)
                    async for message in pubsub:
                        self._receive(message.get("data"))
                    nursery.cancel_scope.cancel()
        if setup.cancelled_caught:
            raise TimeoutError(f"no answer within {config.connect_timeout:g} s")

    async def _publish(self, client: Redis[bytes]) -> None:
        config = self.config
        async for item in self.outbox:
            if isinstance(item, Revocation):
                await client.zadd(config.revoked_key, {item.jti: float(item.exp)})
                await client.zremrangebyscore(config.revoked_key, -math.inf, self.now_wall())
                await client.zremrangebyrank(config.revoked_key, 0, -(MAX_REVOKED + 1))
                data = encode(config.admin_instance, item)
            else:
                data = encode(config.admin_instance, item.item)
            await client.publish(config.channel, data)
            self.stats.published += 1

    def _receive(self, data: object) -> None:
        if not isinstance(data, bytes):
            return
        try:
            remote = decode(data)
        except BusError as exc:
            self.stats.invalid += 1
            log.warning("invalid message on %s: %s", self.config.channel, exc)
            return
        if remote.origin == self.config.admin_instance:
            return  # our own, already ingested when our bot sent it
        self.stats.received += 1
        item = remote.item
        if isinstance(item, Revocation):
            self.on_revoked(item.jti, item.exp)
            return
        event = Ingest(item.instance, item, trio.current_time(), origin=remote.origin)
        try:
            self.inbox.send_nowait(event)
        except trio.WouldBlock:
            self.stats.dropped_incoming += 1
