"""What the dashboard shows of a message never contains the customer's personal data."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from essen.sanitize import MASKS, sanitize_text

BIG = 100_000  # a limit that never truncates, to test masking alone


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Write to jane.doe+table@example.co.uk please", "Write to [email] please"),
        ("Ruf an: +49 171 1234567", "Ruf an: [phone]"),
        ("call 0049 30 12345678", "call [phone]"),
        ("Festnetz 030 12345678, mobil 0171-2345678", "Festnetz [phone], mobil [phone]"),
        ("(030) 1234567 or 030/1234567", "[phone] or [phone]"),
        ("US: (555) 123-4567, 555.123.4567", "US: [phone], [phone]"),
        ("card 4111 1111 1111 1111 exp 12/27", "card [card] exp 12/27"),
        ("4111-1111-1111-1112", "[card]"),  # Luhn-invalid, masked all the same
        ("amex 378282246310005", "amex [card]"),
        ("IBAN DE89 3704 0044 0532 0130 00 danke", "IBAN [iban] danke"),
        ("iban: de89370400440532013000", "iban: [iban]"),
        ("NL91ABNA0417164300", "[iban]"),
        ("token a3f9e2b1c4d5e6f7a8b9c0d1e2f3a4b5", "token [token]"),
        ("key=dGhpcyBpcyBhIHNlY3JldCBrZXkgMTIz==", "key=[token]"),
        ("password: hunter2 ok", "password: [secret] ok"),
        ("my PIN=1234", "my PIN=[secret]"),
        ("https://essen.example/reset?access_token=abc123&sig=ff", "https://essen.example/…"),
        ("https://jane:pw@essen.example:8443/x", "https://essen.example:8443/…"),
        ("see www.essen.example/menu?ref=qr", "see www.essen.example/…"),
        ("https://essen.example/", "https://essen.example/"),
    ],
)
def test_personal_data_is_masked(text, expected):
    assert sanitize_text(text, limit=BIG) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Table for 4 at 19:30, please",
        "Reservierung am 15.01.2026 um 19:30",
        "on 2026-01-15",
        "Total 12.50 EUR, order #12345",
        "Donaudampfschifffahrtsgesellschaftskapitänsmütze",
        "AB12 this word is here",
        "Hi! 🍕 Do you have vegan options?",
    ],
)
def test_ordinary_text_survives(text):
    assert sanitize_text(text, limit=BIG) == text


def test_whitespace_is_collapsed_and_control_characters_removed():
    assert sanitize_text("  line one\n\n\tline\r\ntwo\x00\x07 \u200bend\u202e ") == (
        "line one line two end"
    )


def test_invisible_characters_cannot_hide_an_email():
    assert sanitize_text("jane\u200b.doe\u00ad@example.org") == "[email]"


def test_truncation_happens_after_masking_and_never_half_shows_a_secret():
    text = "x" * 100 + " 4111 1111 1111 1111 and more text after it"
    out = sanitize_text(text, limit=110)
    assert len(out) <= 110
    assert out.endswith("…")
    assert "4111" not in out
    assert "[ca" not in out or "[card]" in out


def test_a_placeholder_is_never_cut_in_half():
    out = sanitize_text("a" * 20 + " jane@example.org tail", limit=25)
    assert out == "a" * 20 + "…"


def test_short_text_is_unchanged_and_limits_are_respected():
    assert sanitize_text("Hello") == "Hello"
    assert sanitize_text("x" * 500) == "x" * 119 + "…"
    assert sanitize_text("Hello", limit=1) == "…"
    assert sanitize_text("Hello", limit=0) == ""


def test_pathological_inputs_take_linear_time():
    # A quadratic regex would need minutes for these; linear ones take milliseconds.
    started = time.perf_counter()
    for text in ("a" * 200_000 + "@", "1 " * 100_000, "a-" * 100_000, "DE12 " * 50_000):
        sanitize_text(text)
    assert time.perf_counter() - started < 5


# -- properties ------------------------------------------------------------------

surrounding = st.text(max_size=40)
digit = st.sampled_from("0123456789")


def digits(n):
    return st.text(digit, min_size=n, max_size=n)


phones = st.one_of(
    st.builds(lambda a, b: f"+49 {a} {b}", digits(3), digits(7)),
    st.builds(lambda a, b, c: f"+1 ({a}) {b}-{c}", digits(3), digits(3), digits(4)),
    st.builds(lambda a, b: f"0049 {a} {b}", digits(2), digits(8)),
    st.builds(lambda a, b: f"0{a} {b}", digits(2), digits(8)),
    st.builds(lambda a, b: f"0{a}-{b}", digits(3), digits(7)),
    st.builds(lambda a, b: f"(0{a}) {b}", digits(2), digits(7)),
    st.builds(lambda a, b: f"0{a}/{b}", digits(2), digits(7)),
    st.builds(lambda a, b, c: f"{a}-{b}-{c}", digits(3), digits(3), digits(4)),
    st.builds(lambda a, b, c: f"{a}.{b}.{c}", digits(3), digits(3), digits(4)),
    st.builds(lambda a: f"0{a}", digits(10)),
)


@st.composite
def cards(draw):
    number = draw(st.integers(13, 19).flatmap(digits))
    separator = draw(st.sampled_from(["", " ", "-"]))
    groups = [number[i : i + 4] for i in range(0, len(number), 4)]
    return separator.join(groups)


@settings(max_examples=300)
@given(before=surrounding, email=st.emails(), after=surrounding)
def test_an_email_in_any_text_never_survives(before, email, after):
    assert email not in sanitize_text(f"{before}{email}{after}", limit=BIG)
    assert email not in sanitize_text(f"{before} {email} {after}", limit=BIG)


@settings(max_examples=300)
@given(before=surrounding, phone=phones, after=surrounding)
def test_a_phone_number_in_any_text_never_survives(before, phone, after):
    assert phone not in sanitize_text(f"{before}{phone}{after}", limit=BIG)
    assert phone not in sanitize_text(f"{before} {phone} {after}", limit=BIG)


@settings(max_examples=300)
@given(before=surrounding, card=cards(), after=surrounding)
def test_a_card_number_in_any_text_never_survives_not_even_its_digits(before, card, after):
    card_digits = re.sub(r"\D", "", card)
    for text in (f"{before}{card}{after}", f"{before} {card} {after}"):
        out = sanitize_text(text, limit=BIG)
        assert card not in out
        assert card_digits not in re.sub(r"\D", "", out)


@given(text=st.text(), limit=st.integers(-5, 300))
def test_sanitize_is_total_and_bounded(text, limit):
    out = sanitize_text(text, limit=limit)
    assert len(out) <= max(limit, 0)
    assert out == out.strip()
    assert "  " not in out
    assert not any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in out)


@given(text=st.text())
def test_sanitizing_twice_changes_nothing_more(text):
    once = sanitize_text(text, limit=BIG)
    assert sanitize_text(once, limit=BIG) == once


def test_masks_are_what_the_docs_promise():
    assert set(MASKS) == {"[email]", "[phone]", "[card]", "[iban]", "[token]", "[secret]"}
