"""Webhook dedupe across bot instances: one claim per event in Redis.

With several bot instances behind App Platform's load balancer, Messenger's
redelivery of a POST can land on another instance than the first delivery,
whose in-process :class:`~essen.messenger.dedupe.DedupeCache` never saw it.
So, when ``REDIS_URL`` is set, the webhook actor also *claims* every event
that is new to its own cache: ``SET {cluster}:seen:{hash} {instance} NX EX
ttl``.  The first claimant answers; every other instance drops the event as a
duplicate.  The key is a BLAKE2 hash of the event's identity: no page-scoped
user id is stored in Redis.

When Redis does not answer within ``timeout``, the claim *succeeds* (fails
open) and Redis is skipped for ``retry_after`` seconds: during an outage a
rare redelivery to another instance may be answered twice, but no message is
ever left unanswered because a cache is away.  The ``redis`` component turns
``degraded`` meanwhile, ``healthy`` on the next answered claim.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

import trio
from coredis import PureToken, Redis

from essen.actors.health import Signal
from essen.redis_link import LOST, describe

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("FleetDedupe",)

log = logging.getLogger("essen.bot.dedupe")

class FleetDedupe:
    """Claims events for one bot instance among all (:meth:`run` owns the client)."""

    def __init__(
        self,
        url: str,
        *,
        cluster: str,
        instance: str,
        ttl: float,
        signal: Callable[[Signal], None],
        timeout: float = 0.5,
        retry_after: float = 5.0,
    ) -> None:
        self.url = url
        self.prefix = f"{cluster}:seen:"
        self.instance = instance
        self.ttl = max(1, round(ttl))
        self.timeout = timeout
        self.retry_after = retry_after
        self._signal = signal
        self._client: Redis[bytes] | None = None
        self._skip_until = -float("inf")
        self._healthy: bool | None = None
        self.claims = 0
        self.lost_claims = 0
        self.unanswered = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the Redis client (connections are made on demand) until cancelled."""
        async with Redis.from_url(self.url, decode_responses=False) as client:
            self._client = client
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._client = None

    async def claim(self, identity: str) -> bool:
        """True if this instance should handle the event (first claim, or Redis away)."""
        client = self._client
        if client is None or trio.current_time() < self._skip_until:
            return True
        key = self.prefix + hashlib.blake2b(identity.encode(), digest_size=16).hexdigest()
        claimed: bool | None = None
        error = f"no answer within {self.timeout:g} s"
        with trio.move_on_after(self.timeout):
            try:
                claimed = await client.set(
                    key, self.instance, condition=PureToken.NX, ex=self.ttl
                )
            except* LOST as group:
                error = describe(group, limit=200)
        if claimed is None:
            self.unanswered += 1
            self._skip_until = trio.current_time() + self.retry_after
            if self._healthy is not False:
                self._healthy = False
                log.warning("Redis unreachable for dedupe (%s); per-instance only", error)
                self._signal(
                    Signal(
                        "redis",
                        "degraded",
                        f"Redis unreachable ({error}); duplicates caught per instance only",
                    )
                )
            return True
        if self._healthy is not True:
            self._healthy = True
            self._signal(Signal("redis", "healthy"))
        self.claims += 1
        if not claimed:
            self.lost_claims += 1
        return bool(claimed)
