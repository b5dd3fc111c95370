"""The wire contracts between the bot, the admin API and the dashboard.

Every event that crosses Socket.IO is one of these models.  The bot builds
them; the admin API validates everything it receives against them (a payload
that does not validate gets an error ack, is counted, and is never
broadcast); the dashboard reads the same shapes as JSON.  ``v`` is the schema
version: a receiver refuses versions it does not know.

Latency travels as histogram buckets with fixed bounds, never as
percentiles, so the admin API can merge instances exactly and compute
percentiles from the merged buckets.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = (
    "LATENCY_BOUNDS_MS",
    "SCHEMA_VERSION",
    "ComponentStatus",
    "HealthChanged",
    "HealthStatus",
    "Histogram",
    "MessageBatch",
    "MessageKind",
    "MessageOutcome",
    "MessageProcessed",
    "MetricsSnapshot",
    "MinuteBucket",
    "WindowStats",
)

SCHEMA_VERSION: Final = 1

#: Upper bounds (ms) of the latency buckets; the last bucket is everything above.
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    5,
    10,
    25,
    50,
    75,
    100,
    150,
    250,
    400,
    600,
    1000,
    1500,
    2500,
    4000,
    6000,
    10000,
    20000,
)

MessageKind = Literal[
    "text",
    "quick_reply",
    "attachment",
    "postback",
    "echo",
    "delivery",
    "read",
    "optin",
    "referral",
    "handover",
    "standby",
    "unknown",
]
MessageOutcome = Literal[
    "answered",
    "duplicate",
    "ignored",
    "failed",
    "handoff",
    "paused",
    "counted",
]
HealthStatus = Literal["healthy", "degraded", "stale", "down"]

_Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")]


class _Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_max_length=4096)

    v: Literal[1] = 1


class Histogram(BaseModel):
    """Counts per latency bucket (``len(counts) == len(LATENCY_BOUNDS_MS) + 1``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    counts: tuple[Annotated[int, Field(ge=0)], ...] = (0,) * (len(LATENCY_BOUNDS_MS) + 1)
    sum_ms: float = Field(default=0.0, ge=0, allow_inf_nan=False)

    @field_validator("counts")
    @classmethod
    def _shape(cls, counts: tuple[int, ...]) -> tuple[int, ...]:
        if len(counts) != len(LATENCY_BOUNDS_MS) + 1:
            raise ValueError(f"expected {len(LATENCY_BOUNDS_MS) + 1} buckets")
        return counts

    @property
    def count(self) -> int:
        return sum(self.counts)

    def merge(self, other: Histogram) -> Histogram:
        return Histogram(
            counts=tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)),
            sum_ms=self.sum_ms + other.sum_ms,
        )

    def percentile(self, q: float) -> float | None:
        """The ``q``-quantile (0..1), interpolated inside its bucket; None when empty."""
        total = self.count
        if total == 0:
            return None
        rank = q * total
        seen = 0
        lower = 0.0
        for i, count in enumerate(self.counts):
            upper = LATENCY_BOUNDS_MS[i] if i < len(LATENCY_BOUNDS_MS) else lower * 2 or 1.0
            if count and seen + count >= rank:
                return lower + (upper - lower) * max(0.0, rank - seen) / count
            seen += count
            lower = upper
        return lower


class WindowStats(BaseModel):
    """Totals over one window (the last 1, 5 or 60 minutes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seconds: int = Field(gt=0)
    received: int = Field(ge=0)
    answered: int = Field(ge=0)
    failed: int = Field(ge=0)
    unique_users: int = Field(ge=0)
    latency: Histogram


class MinuteBucket(BaseModel):
    """One minute of the activity series (``minute`` is epoch seconds at its start)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    minute: int
    received: int = Field(ge=0)
    answered: int = Field(ge=0)
    failed: int = Field(ge=0)


class MetricsSnapshot(_Contract):
    """``metrics:update``: one bot instance's counters, windows and series."""

    instance: _Name
    at: float
    started_at: float
    uptime_s: float = Field(ge=0)
    totals: dict[_Name, Annotated[int, Field(ge=0)]] = Field(max_length=256)
    windows: dict[Literal["1m", "5m", "60m"], WindowStats]
    send_api: Histogram
    per_minute: tuple[MinuteBucket, ...] = Field(max_length=60)


class MessageProcessed(_Contract):
    """``message:processed``: one Messenger event as the admins may see it.

    ``user`` is a pseudonymous id (a keyed hash of the page-scoped id), and
    ``preview`` is sanitized text: no PII leaves the bot.
    """

    instance: _Name
    id: Annotated[str, Field(min_length=1, max_length=128)]
    user: Annotated[str, Field(min_length=1, max_length=32)]
    kind: MessageKind
    direction: Literal["in", "out"]
    preview: Annotated[str, Field(max_length=200)] = ""
    outcome: MessageOutcome
    at: float
    latency_ms: float | None = Field(default=None, ge=0)
    error_code: int | None = None


class MessageBatch(_Contract):
    """``message:processed`` as the bot sends it: batched (≤ 100 events)."""

    instance: _Name
    events: tuple[MessageProcessed, ...] = Field(min_length=1, max_length=100)


class ComponentStatus(_Contract):
    """The status of one component, as health checks and the dashboard see it."""

    component: _Name
    status: HealthStatus
    since: float
    reason: Annotated[str, Field(max_length=500)] | None = None


class HealthChanged(_Contract):
    """``health:changed``: sent on transitions only."""

    instance: _Name
    component: _Name
    status: HealthStatus
    previous: HealthStatus | None = None
    since: float
    reason: Annotated[str, Field(max_length=500)] | None = None
