"""HS256 admin tokens: round trip, every refusal with its reason, expiry on the caller's clock."""

from __future__ import annotations

import jwt
import pytest
import trio
import trio.testing

from essen.auth import ALGORITHM, Claims, TokenSettings, issue_token, verify_token
from essen.clock import TrioWallClock
from essen.errors import (
    AuthError,
    TokenBadSignature,
    TokenExpired,
    TokenMalformed,
    TokenMissing,
    TokenWrongAudience,
    TokenWrongIssuer,
)
from tests.unit.auth.auth_helpers import SECRET

NOW = 1_767_225_600.25
SETTINGS = TokenSettings(secret=SECRET, issuer="essen-admin", audience="essen-dashboard", ttl=600)


def claims_payload(**override: object) -> dict[str, object]:
    payload: dict[str, object] = {
        "sub": "ada",
        "iat": int(NOW),
        "exp": int(NOW) + 600,
        "iss": "essen-admin",
        "aud": "essen-dashboard",
        "jti": "j1",
    }
    payload.update(override)
    return {k: v for k, v in payload.items() if v is not None}


def signed(payload: dict[str, object], secret: str = SECRET, algorithm: str = ALGORITHM) -> str:
    return jwt.encode(payload, secret, algorithm=algorithm)


def test_round_trip() -> None:
    token = issue_token(
        "ada",
        secret=SECRET,
        ttl=600,
        now_wall=NOW,
        issuer="essen-admin",
        audience="essen-dashboard",
        jti="fixed",
    )
    claims = verify_token(
        token, secret=SECRET, now_wall=NOW + 1, issuer="essen-admin", audience="essen-dashboard"
    )
    assert claims == Claims(
        sub="ada",
        iat=int(NOW),
        exp=int(NOW) + 600,
        iss="essen-admin",
        aud="essen-dashboard",
        jti="fixed",
    )
    assert claims.remaining(NOW + 100) == pytest.approx(499.75)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"


def test_settings_issue_unique_ids_and_hide_secrets() -> None:
    first = SETTINGS.issue("ada", now_wall=NOW)
    second = SETTINGS.issue("ada", now_wall=NOW)
    assert first.claims.jti != second.claims.jti
    assert SETTINGS.verify(first.token, now_wall=NOW) == first.claims
    assert SECRET not in repr(SETTINGS)
    assert first.token not in repr(first)


@pytest.mark.parametrize("token", [None, ""])
def test_missing(token: str | None) -> None:
    with pytest.raises(TokenMissing) as caught:
        SETTINGS.verify(token, now_wall=NOW)
    assert caught.value.reason == "missing"


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        "a.b.c",
        signed(claims_payload())[:-1] + "!",  # not base64
        jwt.encode(claims_payload(), None, algorithm="none"),
        signed(claims_payload(), algorithm="HS512"),
        signed(claims_payload(jti=None)),
        signed(claims_payload(sub=None)),
        signed(claims_payload(exp=None)),
        signed(claims_payload(sub="")),
        signed(claims_payload(jti=7)),
        signed(claims_payload(exp=int(NOW) - 10, iat=int(NOW))),  # expires before issued
        signed(claims_payload(iat=int(NOW) + 60)),  # issued in the future
    ],
    ids=[
        "garbage",
        "three-parts",
        "bad-base64",
        "alg-none",
        "hs512",
        "no-jti",
        "no-sub",
        "no-exp",
        "empty-sub",
        "int-jti",
        "exp-before-iat",
        "future-iat",
    ],
)
def test_malformed(token: str) -> None:
    with pytest.raises(TokenMalformed) as caught:
        SETTINGS.verify(token, now_wall=NOW)
    assert caught.value.reason == "malformed"


def test_bad_signature() -> None:
    other = signed(claims_payload(), secret="another-secret-" + "z" * 60)
    header, _payload, signature = signed(claims_payload()).split(".")
    tampered_payload = signed(claims_payload(sub="root")).split(".")[1]
    for token in (other, f"{header}.{tampered_payload}.{signature}"):
        with pytest.raises(TokenBadSignature) as caught:
            SETTINGS.verify(token, now_wall=NOW)
        assert caught.value.reason == "bad_signature"


def test_signature_is_checked_before_any_claim() -> None:
    forged = signed(claims_payload(aud="elsewhere", exp=1), secret="x" * 64)
    with pytest.raises(TokenBadSignature):
        SETTINGS.verify(forged, now_wall=NOW)


def test_wrong_audience_and_issuer() -> None:
    with pytest.raises(TokenWrongAudience) as audience:
        SETTINGS.verify(signed(claims_payload(aud="essen-bot")), now_wall=NOW)
    assert audience.value.reason == "wrong_audience"
    with pytest.raises(TokenWrongIssuer) as issuer:
        SETTINGS.verify(signed(claims_payload(iss="someone")), now_wall=NOW)
    assert issuer.value.reason == "wrong_issuer"


def test_expiry_is_exact_and_leeway_extends_it() -> None:
    token = SETTINGS.issue("ada", now_wall=NOW).token
    exp = int(NOW) + 600
    SETTINGS.verify(token, now_wall=exp - 0.001)
    with pytest.raises(TokenExpired) as caught:
        SETTINGS.verify(token, now_wall=exp)
    assert caught.value.reason == "expired"
    lenient = TokenSettings(secret=SECRET, ttl=600, leeway=30)
    lenient.verify(token, now_wall=exp + 29)
    with pytest.raises(TokenExpired):
        lenient.verify(token, now_wall=exp + 30)


async def test_expiry_follows_the_injected_clock(autojump_clock: trio.testing.MockClock) -> None:
    """Under MockClock the token dies when the harness's wall clock says, not the machine's."""
    wall = TrioWallClock(epoch=NOW)
    token = SETTINGS.issue("ada", now_wall=wall.now()).token
    with trio.fail_after(1000):
        await trio.sleep(599)
        assert SETTINGS.verify(token, now_wall=wall.now()).sub == "ada"
        await trio.sleep(1)
        with pytest.raises(TokenExpired):
            SETTINGS.verify(token, now_wall=wall.now())


def test_every_refusal_is_an_auth_error_with_a_distinct_reason() -> None:
    kinds = [
        TokenMissing,
        TokenMalformed,
        TokenBadSignature,
        TokenExpired,
        TokenWrongAudience,
        TokenWrongIssuer,
    ]
    assert all(issubclass(kind, AuthError) for kind in kinds)
    assert len({kind.reason for kind in kinds}) == len(kinds)
    assert str(TokenExpired()) == "expired"


@pytest.mark.parametrize("secret", ["", "short", "x" * 31])
def test_short_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        TokenSettings(secret=secret)
    with pytest.raises(ValueError, match="32 bytes"):
        issue_token("ada", secret=secret, ttl=60, now_wall=NOW, issuer="i", audience="a")


def test_bad_issue_arguments() -> None:
    with pytest.raises(ValueError, match="subject"):
        SETTINGS.issue("", now_wall=NOW)
    with pytest.raises(ValueError, match="ttl"):
        TokenSettings(secret=SECRET, ttl=0)
