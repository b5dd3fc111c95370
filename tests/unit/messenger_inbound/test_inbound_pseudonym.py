"""A user is the same short id everywhere, and the id does not give the PSID away."""

from __future__ import annotations

import re

import pytest

from essen.events import MessageProcessed
from essen.pseudonym import pseudonymize

KEY = b"k" * 32
PSID = "6043127745808817"


def test_the_same_user_gets_the_same_id_every_time():
    assert pseudonymize(PSID, KEY) == pseudonymize(PSID, KEY)


def test_the_id_is_short_and_readable():
    assert re.fullmatch(r"u_[a-z2-7]{10}", pseudonymize(PSID, KEY))


def test_the_id_is_a_known_hmac_vector():
    # HMAC-SHA256(b"k" * 32, "6043127745808817"), base32, first 10 characters.
    import base64
    import hashlib
    import hmac

    digest = hmac.new(KEY, PSID.encode(), hashlib.sha256).digest()
    assert pseudonymize(PSID, KEY) == "u_" + base64.b32encode(digest).decode()[:10].lower()


def test_different_users_get_different_ids():
    ids = {pseudonymize(str(6043127745808817 + n), KEY) for n in range(10_000)}
    assert len(ids) == 10_000


def test_another_key_gives_other_ids():
    assert pseudonymize(PSID, KEY) != pseudonymize(PSID, b"another-deployment-key")


def test_the_psid_does_not_appear_in_the_id():
    assert PSID not in pseudonymize(PSID, KEY)
    assert not any(char.isdigit() and char in "0189" for char in pseudonymize(PSID, KEY)[2:])


def test_an_empty_key_is_refused():
    with pytest.raises(ValueError, match="key"):
        pseudonymize(PSID, b"")


def test_the_id_fits_the_wire_contract():
    event = MessageProcessed(
        instance="bot-1",
        id="m1",
        user=pseudonymize(PSID, KEY),
        kind="text",
        direction="in",
        outcome="answered",
        at=0.0,
    )
    assert event.user.startswith("u_")
