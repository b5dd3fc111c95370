"""The rows the store reads and writes, as frozen dataclasses.

These are the store's vocabulary, deliberately not the wire models: a row is
what survives a restart (an admin account, an hour of totals, one sanitized
log line), and the store validates only what the schema needs.  Conversions
from the wire contracts (:meth:`MessageLogEntry.from_event`) live here so the
admin API's ingest path stays a one-liner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from essen.events import Histogram

if TYPE_CHECKING:
    from essen.events import MessageProcessed

__all__ = ("HOUR", "AdminUser", "MessageLogEntry", "Rollup", "hour_of")

#: Seconds in the rollup period.
HOUR = 3600


def _fits(name: str, value: str, maximum: int, *, empty: bool = False) -> None:
    # SQLite ignores VARCHAR lengths and PostgreSQL enforces them: checking
    # here makes both dialects refuse the same rows, before any I/O.
    if len(value) > maximum or (not empty and not value):
        raise ValueError(f"{name} must be {0 if empty else 1}..{maximum} characters")


def hour_of(epoch: float) -> int:
    """The start (epoch seconds) of the hour that contains ``epoch``."""
    return int(epoch // HOUR) * HOUR


@dataclass(frozen=True, slots=True)
class AdminUser:
    """An admin account. ``password_hash`` is an argon2 PHC string, never a password."""

    username: str
    password_hash: str
    #: Wall-clock epoch seconds.
    created_at: float
    disabled: bool = False

    def __post_init__(self) -> None:
        _fits("username", self.username, 64)
        _fits("password_hash", self.password_hash, 255)

    def __repr__(self) -> str:
        # Keep hashes out of logs and tracebacks: they are offline-crackable.
        return (
            f"AdminUser(username={self.username!r}, created_at={self.created_at!r}, "
            f"disabled={self.disabled!r})"
        )


@dataclass(frozen=True, slots=True)
class Rollup:
    """One bot instance's totals for one hour.

    A rollup is the *whole* hour as its writer knows it, not an increment:
    writing it again replaces the stored row (last write wins per
    ``(instance, hour_epoch)``), which is what lets several admin instances,
    or a retry after a lost acknowledgement, write the same hour without
    counting anything twice.
    """

    instance: str
    #: Start of the hour, epoch seconds (a multiple of 3600).
    hour_epoch: int
    received: int = 0
    answered: int = 0
    failed: int = 0
    latency: Histogram = field(default_factory=Histogram)
    unique_users_estimate: int = 0

    def __post_init__(self) -> None:
        _fits("instance", self.instance, 64)
        if self.hour_epoch % HOUR:
            raise ValueError(f"hour_epoch {self.hour_epoch} is not the start of an hour")
        if min(self.received, self.answered, self.failed, self.unique_users_estimate) < 0:
            raise ValueError("rollup counts cannot be negative")

    @property
    def key(self) -> tuple[str, int]:
        return (self.instance, self.hour_epoch)


@dataclass(frozen=True, slots=True)
class MessageLogEntry:
    """One line of the sanitized message log (a ``MessageProcessed`` at rest).

    ``user`` is the bot's pseudonym and ``preview`` is already sanitized: the
    store holds no page-scoped ids and no raw message text.  ``(instance,
    id)`` identifies an entry; appending it twice keeps the first.
    """

    id: str
    instance: str
    user: str
    kind: str
    direction: str
    preview: str
    outcome: str
    #: Wall-clock epoch seconds.
    at: float
    latency_ms: float | None = None
    error_code: int | None = None

    def __post_init__(self) -> None:
        _fits("id", self.id, 128)
        _fits("instance", self.instance, 64)
        _fits("user", self.user, 32)
        _fits("kind", self.kind, 16)
        _fits("direction", self.direction, 3)
        _fits("preview", self.preview, 200, empty=True)
        _fits("outcome", self.outcome, 16)

    @classmethod
    def from_event(cls, event: MessageProcessed) -> MessageLogEntry:
        """The log entry for a validated wire event."""
        return cls(
            id=event.id,
            instance=event.instance,
            user=event.user,
            kind=event.kind,
            direction=event.direction,
            preview=event.preview,
            outcome=event.outcome,
            at=event.at,
            latency_ms=event.latency_ms,
            error_code=event.error_code,
        )
