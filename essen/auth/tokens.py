"""Admin session tokens: JWT, HS256 only, every claim required, time from the caller.

A token says who (``sub``), who issued it for whom (``iss``, ``aud``), when
(``iat``, ``exp``: wall-clock epoch seconds) and which one it is (``jti``, so a
log line or a future revocation list can name it).  Verification pins the
algorithm (a token signed with ``none`` or RS256 is refused, never
"verified" with the HMAC secret as a public key) and checks times against the
``now_wall`` it is given, never the system clock: PyJWT's own time checks are
off, so a harness under MockClock expires tokens exactly when it says.

Each refusal is a distinct :class:`~essen.errors.AuthError` whose ``reason``
says why (missing, malformed, bad_signature, expired, wrong_audience,
wrong_issuer).  The signature is checked before any claim, so a forged
token is always ``bad_signature`` whatever it claims.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Any, Final

import jwt

from essen.errors import (
    TokenBadSignature,
    TokenExpired,
    TokenMalformed,
    TokenMissing,
    TokenWrongAudience,
    TokenWrongIssuer,
)

__all__ = (
    "ALGORITHM",
    "MIN_SECRET_BYTES",
    "Claims",
    "IssuedToken",
    "TokenSettings",
    "issue_token",
    "verify_token",
)

ALGORITHM: Final = "HS256"
#: HS256 keys shorter than the hash output weaken it (and PyJWT warns).
MIN_SECRET_BYTES: Final = 32
_REQUIRED: Final = ["sub", "iat", "exp", "iss", "aud", "jti"]


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified contents of an admin token (times are wall-clock epoch seconds)."""

    sub: str
    iat: int
    exp: int
    iss: str
    aud: str
    jti: str

    def remaining(self, now_wall: float) -> float:
        """Seconds until the token expires (negative once expired)."""
        return self.exp - now_wall


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly signed token and what it claims."""

    token: str = field(repr=False)
    claims: Claims


@dataclass(frozen=True, slots=True)
class TokenSettings:
    """Everything issuing and verifying needs except the time: one per admin service."""

    secret: str = field(repr=False)
    issuer: str = "essen-admin"
    audience: str = "essen-dashboard"
    #: Lifetime of an issued token (seconds).
    ttl: float = 8 * 3600.0
    #: Clock skew tolerated between instances when checking ``exp``/``iat``.
    leeway: float = 0.0

    def __post_init__(self) -> None:
        _check_secret(self.secret)
        if self.ttl <= 0 or self.leeway < 0:
            raise ValueError("ttl must be positive and leeway not negative")

    def issue(self, username: str, *, now_wall: float, jti: str | None = None) -> IssuedToken:
        """Sign a token for ``username`` valid from ``now_wall`` for ``ttl`` seconds."""
        return _issue(
            username,
            secret=self.secret,
            ttl=self.ttl,
            now_wall=now_wall,
            issuer=self.issuer,
            audience=self.audience,
            jti=jti,
        )

    def verify(self, token: str | None, *, now_wall: float) -> Claims:
        """See :func:`verify_token`."""
        return verify_token(
            token,
            secret=self.secret,
            now_wall=now_wall,
            issuer=self.issuer,
            audience=self.audience,
            leeway=self.leeway,
        )


def _check_secret(secret: str) -> None:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"the token secret must be at least {MIN_SECRET_BYTES} bytes")


def issue_token(
    username: str,
    *,
    secret: str,
    ttl: float,
    now_wall: float,
    issuer: str,
    audience: str,
    jti: str | None = None,
) -> str:
    """Sign an HS256 token for ``username``: ``iat`` = ``now_wall`` (whole
    seconds, rounded down), ``exp`` = ``iat + ttl`` (rounded up), ``jti`` random
    unless given.

    Raises:
        ValueError: the secret is shorter than 32 bytes, the ttl not positive,
            or the username empty.
    """
    return _issue(
        username,
        secret=secret,
        ttl=ttl,
        now_wall=now_wall,
        issuer=issuer,
        audience=audience,
        jti=jti,
    ).token


def _issue(
    username: str,
    *,
    secret: str,
    ttl: float,
    now_wall: float,
    issuer: str,
    audience: str,
    jti: str | None,
) -> IssuedToken:
    _check_secret(secret)
    if not username:
        raise ValueError("a token needs a subject")
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    iat = math.floor(now_wall)
    claims = Claims(
        sub=username,
        iat=iat,
        exp=math.ceil(iat + ttl),
        iss=issuer,
        aud=audience,
        jti=jti or secrets.token_urlsafe(16),
    )
    payload = {
        "sub": claims.sub,
        "iat": claims.iat,
        "exp": claims.exp,
        "iss": claims.iss,
        "aud": claims.aud,
        "jti": claims.jti,
    }
    return IssuedToken(jwt.encode(payload, secret, algorithm=ALGORITHM), claims)


def verify_token(
    token: str | None,
    *,
    secret: str,
    now_wall: float,
    issuer: str,
    audience: str,
    leeway: float = 0.0,
) -> Claims:
    """The claims of ``token`` if this service issued it for ``audience`` and it
    has not expired at ``now_wall``.

    Raises (all :class:`~essen.errors.AuthError`, ``reason`` in brackets):
        TokenMissing: [missing] None or empty.
        TokenMalformed: [malformed] not a JWT, another algorithm, a required
            claim absent or mistyped, ``iat`` after ``now_wall + leeway``.
        TokenBadSignature: [bad_signature] signed with another key.
        TokenWrongIssuer: [wrong_issuer] ``iss`` is not ``issuer``.
        TokenWrongAudience: [wrong_audience] ``aud`` is not ``audience``.
        TokenExpired: [expired] ``now_wall >= exp + leeway``.
    """
    if not token:
        raise TokenMissing()
    _check_secret(secret)
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            options={
                "require": _REQUIRED,
                # Time is checked below against the caller's wall clock.
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise TokenBadSignature() from None
    except jwt.InvalidAudienceError:
        raise TokenWrongAudience() from None
    except jwt.InvalidIssuerError:
        raise TokenWrongIssuer() from None
    except jwt.InvalidAlgorithmError:
        raise TokenMalformed(f"only {ALGORITHM} tokens are accepted") from None
    except jwt.MissingRequiredClaimError as error:
        raise TokenMalformed(f"claim {error.claim!r} is missing") from None
    except jwt.InvalidTokenError as error:
        raise TokenMalformed(str(error)) from None
    claims = _claims(payload, audience)
    if claims.iat > now_wall + leeway:
        raise TokenMalformed("issued in the future")
    if now_wall >= claims.exp + leeway:
        raise TokenExpired()
    return claims


def _claims(payload: dict[str, Any], audience: str) -> Claims:
    sub, iat, exp, iss, jti = (payload[name] for name in ("sub", "iat", "exp", "iss", "jti"))
    if not (isinstance(sub, str) and sub and isinstance(jti, str) and jti):
        raise TokenMalformed("sub and jti must be non-empty strings")
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in (iat, exp)):
        raise TokenMalformed("iat and exp must be integers")
    if exp < iat:
        raise TokenMalformed("expires before it was issued")
    # PyJWT accepted ``aud`` (a string, or a list containing ours).
    return Claims(sub=sub, iat=iat, exp=exp, iss=str(iss), aud=audience, jti=jti)
