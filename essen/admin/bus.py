"""What admin instances tell each other over Redis pub/sub, as bytes (sans-IO).

Every admin instance replicates the *bot events it received itself* to the
others, so every instance's ingest actor sees the whole fleet: its merged
metrics, feed, health and rooms are the same whichever instance a dashboard
is on.  Replicating the inputs, not the emits, is what keeps the aggregated
metrics equal (each aggregator merges all bots) and each event exactly once
per dashboard (an instance only emits to its own sockets).

One JSON object per pub/sub message::

    {"v": 1, "origin": "admin-a", "kind": "metrics" | "messages" | "health",
     "payload": <the bot's validated contract object>}
    {"v": 1, "origin": "admin-a", "kind": "revoked", "payload": {"jti": ..., "exp": ...}}

A message is validated again on arrival (the same pydantic contracts as the
hub's): Redis is inside the trust boundary, but a peer running another
version must not be able to crash the ingest actor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from essen.events import HealthChanged, MessageBatch, MetricsSnapshot

__all__ = ("VERSION", "BotItem", "BusError", "Remote", "Revocation", "decode", "encode")

VERSION: Final = 1
#: Redis refuses nothing this size, and a bot batch is at most 100 sanitized events.
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024

BotItem = MetricsSnapshot | MessageBatch | HealthChanged

_KINDS: Final[dict[str, type[BaseModel]]] = {
    "metrics": MetricsSnapshot,
    "messages": MessageBatch,
    "health": HealthChanged,
}
_KIND_OF: Final[dict[type[BaseModel], str]] = {model: kind for kind, model in _KINDS.items()}


class BusError(ValueError):
    """A bus message that cannot be used (the reason says why; no payload in it)."""


@dataclass(frozen=True, slots=True)
class Revocation:
    """An admin logged out: token ``jti`` is refused everywhere until ``exp`` (epoch s)."""

    jti: str
    exp: int


@dataclass(frozen=True, slots=True)
class Remote:
    """A decoded bus message and the admin instance that published it."""

    origin: str
    item: BotItem | Revocation


def encode(origin: str, item: BotItem | Revocation) -> bytes:
    """The wire form of ``item`` published by admin instance ``origin``."""
    if isinstance(item, Revocation):
        kind, payload = "revoked", {"jti": item.jti, "exp": item.exp}
    else:
        kind, payload = _KIND_OF[type(item)], item.model_dump(mode="json")
    return json.dumps(
        {"v": VERSION, "origin": origin, "kind": kind, "payload": payload},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def decode(data: bytes) -> Remote:
    """Parse and validate one bus message.

    Raises:
        BusError: not JSON, another version, an unknown kind or an invalid payload.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise BusError(f"message of {len(data)} bytes is over {MAX_MESSAGE_BYTES}")
    try:
        message = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BusError(f"not JSON: {exc.__class__.__name__}") from None
    if not isinstance(message, dict):
        raise BusError("not a JSON object")
    if message.get("v") != VERSION:
        raise BusError(f"unsupported version {message.get('v')!r}")
    origin = message.get("origin")
    if not isinstance(origin, str) or not origin:
        raise BusError("missing origin")
    kind = message.get("kind")
    payload: Any = message.get("payload")
    if kind == "revoked":
        if (
            not isinstance(payload, dict)
            or not isinstance(payload.get("jti"), str)
            or not isinstance(payload.get("exp"), int)
        ):
            raise BusError("invalid revocation")
        return Remote(origin, Revocation(payload["jti"], payload["exp"]))
    model = _KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise BusError(f"unknown kind {kind!r}")
    try:
        item = model.model_validate(payload)
    except ValidationError as exc:
        raise BusError(f"invalid {kind} payload ({exc.error_count()} error(s))") from None
    assert isinstance(item, MetricsSnapshot | MessageBatch | HealthChanged)
    return Remote(origin, item)
