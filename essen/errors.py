"""One error taxonomy for ESSEN.

Library errors (trio's ``BrokenResourceError``, httpx's ``TransportError``,
wsproto's ``LocalProtocolError``...) are translated into these at the edge of
the module that talks to the library, so callers only ever catch ``EssenError``
subclasses.  The protocol errors follow h11's split: ``RemoteProtocolError``
means the peer misbehaved, ``LocalProtocolError`` means we misused the API.
"""

from __future__ import annotations

from typing import TypeVar

E = TypeVar("E", bound=BaseException)

__all__ = (
    "ConnectionRefused",
    "ContentError",
    "DisconnectedError",
    "EssenError",
    "LocalProtocolError",
    "MalformedWebhook",
    "ProtocolError",
    "RemoteProtocolError",
    "TransportError",
    "first_leaf",
)


class EssenError(Exception):
    """Root of every error ESSEN raises on purpose."""


class ProtocolError(EssenError):
    """An Engine.IO or Socket.IO protocol rule was broken."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow.

    The session that received it is closed; nothing else is affected.
    """


class LocalProtocolError(ProtocolError):
    """This side tried to do something the protocol does not allow."""


class TransportError(EssenError):
    """The underlying transport (HTTP, WebSocket, memory) failed or closed."""


class DisconnectedError(EssenError):
    """The operation needed a connection that is gone (or never came)."""


class ConnectionRefused(EssenError):
    """A Socket.IO CONNECT was refused.

    Raised by an auth middleware to refuse a connection (the client receives
    CONNECT_ERROR with ``{"message": message, "data": data}``), and raised by
    the client when the server refused it.
    """

    def __init__(self, message: str, data: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class MalformedWebhook(EssenError):
    """A webhook POST body is not a Messenger page webhook.

    Raised only for the envelope (not JSON, not ``{"object": "page", "entry":
    [...]}``, more events than allowed): the web layer answers 400.  A single
    item Messenger sends that ESSEN does not understand is never an error; it
    becomes an ``Unknown`` event, so one odd item cannot make Messenger retry
    a whole batch.
    """


class ContentError(EssenError):
    """A conversation content file cannot be used.

    The message names the file and, when the problem is one value, its key
    (``rules.hours.quick_replies[2].title``), so whoever edits the file can
    find it.  A reloaded file that raises this leaves the previous content in
    service.
    """

    def __init__(self, source: str, key: str | None, problem: str) -> None:
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.key = key
        self.problem = problem


def first_leaf(group: BaseExceptionGroup[E]) -> E:
    """The first exception in a (possibly nested) group.

    Used where several tasks of one connection can fail for the same cause
    (the connection broke) and the caller needs one error, not a group.
    """
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first  # type: ignore[return-value]
