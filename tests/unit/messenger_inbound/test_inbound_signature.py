"""Only Messenger can post to the webhook, and only our verify token subscribes it."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from essen.messenger.webhook import verify_signature, verify_subscription

SECRET = "f3c1a9be0d7e4c2a8b5d6e7f8091a2b3"
BODY = b'{"object":"page","entry":[{"id":"1","time":1,"messaging":[]}]}'


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_a_body_signed_with_the_app_secret_is_accepted():
    assert verify_signature(BODY, sign(BODY), SECRET)


def test_facebooks_uppercase_or_padded_hex_is_accepted():
    assert verify_signature(BODY, sign(BODY).upper().replace("SHA256=", "sha256="), SECRET)
    assert verify_signature(BODY, sign(BODY) + " ", SECRET)


def test_a_signature_computed_with_another_secret_is_refused():
    assert not verify_signature(BODY, sign(BODY, "another-apps-secret"), SECRET)


def test_a_body_changed_after_signing_is_refused():
    assert not verify_signature(BODY + b" ", sign(BODY), SECRET)
    assert not verify_signature(BODY.replace(b'"1"', b'"2"'), sign(BODY), SECRET)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha1=" + hashlib.sha1(BODY).hexdigest(),  # the old X-Hub-Signature header's format
        hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest(),  # no "sha256=" prefix
        "sha256=not-hex-at-all",
        "sha256=" + "é" * 64,
        "sha256=" + "0" * 64,
    ],
)
def test_missing_or_malformed_headers_are_refused(header):
    assert not verify_signature(BODY, header, SECRET)


def test_an_unconfigured_app_secret_refuses_everything():
    assert not verify_signature(BODY, sign(BODY, ""), "")


def test_the_comparison_is_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert verify_signature(BODY, sign(BODY), SECRET)
    assert calls, "signatures must be compared with hmac.compare_digest"


def test_the_subscription_handshake_echoes_the_challenge():
    assert verify_subscription("subscribe", "my-verify-token", "1158201444", "my-verify-token") == (
        "1158201444"
    )


@pytest.mark.parametrize(
    ("mode", "token", "challenge"),
    [
        ("subscribe", "wrong-token", "1158201444"),
        ("unsubscribe", "my-verify-token", "1158201444"),
        (None, "my-verify-token", "1158201444"),
        ("subscribe", None, "1158201444"),
        ("subscribe", "my-verify-token", None),
        ("subscribe", "my-verify-tokenX", "1158201444"),
    ],
)
def test_a_handshake_with_the_wrong_token_or_mode_is_refused(mode, token, challenge):
    assert verify_subscription(mode, token, challenge, "my-verify-token") is None


def test_an_unconfigured_verify_token_refuses_every_handshake():
    assert verify_subscription("subscribe", "", "1158201444", "") is None
