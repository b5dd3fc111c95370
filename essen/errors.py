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
    "AdminExists",
    "AuthError",
    "ConnectionRefused",
    "ContentError",
    "DisconnectedError",
    "EssenError",
    "LocalProtocolError",
    "LoginRefused",
    "LoginThrottled",
    "MalformedWebhook",
    "ProtocolError",
    "RemoteProtocolError",
    "StoreError",
    "StoreUnavailable",
    "TokenBadSignature",
    "TokenExpired",
    "TokenMalformed",
    "TokenMissing",
    "TokenWrongAudience",
    "TokenWrongIssuer",
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


# --- Persistence ---------------------------------------------------------


class StoreError(EssenError):
    """The persistent store refused an operation (a bug or bad data, not an outage).

    Retrying the same call will fail the same way; the store writer drops such
    a batch (counted) instead of retrying it forever.
    """


class StoreUnavailable(StoreError):
    """The database could not be reached, timed out, or the store is closed.

    Transient by nature: the store writer keeps the data buffered and retries
    with backoff, and health reports ``degraded``/``down`` meanwhile.
    """


class AdminExists(StoreError):
    """An admin account with this username already exists."""

    def __init__(self, username: str) -> None:
        super().__init__(f"admin {username!r} already exists")
        self.username = username


# --- Authentication ------------------------------------------------------


class AuthError(EssenError):
    """A credential was refused; ``reason`` is a stable, client-safe word saying why.

    ``reason`` is what the web layer and the Socket.IO hub put in their answer
    (``{"error": reason}``, a connect error's message) and what the logs count:
    it never contains the token, the password or the secret.
    """

    reason: str = "unauthorized"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.reason)
        self.detail = detail


class TokenMissing(AuthError):
    """No token was presented (absent or empty)."""

    reason = "missing"


class TokenMalformed(AuthError):
    """The token is not a JWT this service issued (cannot be decoded, wrong
    algorithm, a required claim absent or of the wrong type, issued in the
    future)."""

    reason = "malformed"


class TokenBadSignature(AuthError):
    """The token's signature does not match: forged, or signed with another secret."""

    reason = "bad_signature"


class TokenExpired(AuthError):
    """The token was valid once but its ``exp`` has passed."""

    reason = "expired"


class TokenWrongAudience(AuthError):
    """The token was issued for another audience (``aud``)."""

    reason = "wrong_audience"


class TokenWrongIssuer(AuthError):
    """The token was issued by another issuer (``iss``)."""

    reason = "wrong_issuer"


class LoginRefused(AuthError):
    """Username or password wrong, or the account is disabled.

    Deliberately one error for every cause, raised after the same work, so a
    client cannot tell which usernames exist.
    """

    reason = "invalid_credentials"


class LoginThrottled(AuthError):
    """Too many failed logins for this account or client address; try later.

    ``retry_after`` (seconds) is what a 429's ``Retry-After`` carries.
    """

    reason = "rate_limited"

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed logins; retry in {retry_after:.0f} s")
        self.retry_after = retry_after
