"""What a customer gets back from the default ESSEN content, and the Send API shapes of it."""

from __future__ import annotations

import pytest

from essen.messenger.rules import (
    ButtonsReply,
    Handoff,
    NoReply,
    NoReplyReason,
    PostbackButton,
    QuickReplyOption,
    RuleBook,
    TextReply,
    UrlButton,
    normalize,
)
from essen.messenger.webhook import (
    Attachment,
    AttachmentMessage,
    AttachmentType,
    Delivery,
    Echo,
    Handover,
    HandoverAction,
    Optin,
    Postback,
    QuickReply,
    Read,
    Referral,
    TextMessage,
    Unknown,
)

COMMON = {"page_id": "P", "sender_id": "6043127745808817", "recipient_id": "P", "timestamp": 1}


@pytest.fixture(scope="module")
def book():
    return RuleBook.load()


def says(text, **extra):
    return TextMessage(**COMMON, mid="m1", text=text, **extra)


def test_a_user_asking_for_the_opening_hours_gets_the_hours(book):
    reply = book.reply_for(says("What are your opening hours?"))
    assert isinstance(reply, TextReply)
    assert reply.rule == "hours"
    assert "Mon–Fri" in reply.text


@pytest.mark.parametrize(
    "text",
    ["Öffnungszeiten?", "OEFFNUNGSZEITEN!!", "wann habt ihr offen", "Are you open on Sunday?"],
)
def test_hours_in_german_english_and_without_accents(book, text):
    assert book.reply_for(says(text)).rule == "hours"


@pytest.mark.parametrize("text", ["hi", "Hello!", "hallo", "Moin moin", "Good morning :)"])
def test_a_greeting_is_greeted_with_the_main_choices(book, text):
    reply = book.reply_for(says(text))
    assert isinstance(reply, TextReply)
    assert reply.rule == "greeting"
    payloads = [option.payload for option in reply.quick_replies]
    assert payloads == ["HOURS", "MENU", "LOCATION", "CONTACT", "HUMAN"]


def test_get_started_gets_the_greeting(book):
    event = Postback(**COMMON, payload="GET_STARTED", title="Get Started")
    assert book.reply_for(event).rule == "greeting"


def test_a_topic_beats_a_greeting_in_the_same_message(book):
    assert book.reply_for(says("Hi, are you open on Sunday?")).rule == "hours"
    assert book.reply_for(says("Hallo, wo seid ihr?")).rule == "location"


def test_keywords_match_whole_words_only(book):
    assert book.reply_for(says("Do you sell a bottle opener?")).rule == "fallback"
    assert book.reply_for(says("this is about something else")).rule == "fallback"


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("Can I see the menu?", "menu"),
        ("Do you have vegan dishes?", "menu"),
        ("Speisekarte bitte", "menu"),
        ("What's your address?", "location"),
        ("I'd like to book a table for 4", "contact"),
        ("Telefonnummer? Ich möchte reservieren", "contact"),
    ],
)
def test_topics(book, text, rule):
    assert book.reply_for(says(text)).rule == rule


@pytest.mark.parametrize(
    "text",
    [
        "I want to talk to a person",
        "Can I speak to a human about the menu?",
        "Bitte einen Mitarbeiter!",
    ],
)
def test_asking_for_a_person_hands_the_conversation_over(book, text):
    reply = book.reply_for(says(text))
    assert isinstance(reply, Handoff)
    assert "team" in reply.text


def test_the_human_quick_reply_and_postback_hand_over(book):
    quick = QuickReply(**COMMON, mid="m2", text="Talk to a person", payload="HUMAN")
    postback = Postback(**COMMON, payload="HUMAN", title="Talk to a person")
    assert isinstance(book.reply_for(quick), Handoff)
    assert isinstance(book.reply_for(postback), Handoff)


def test_a_payload_wins_over_the_words_of_its_title(book):
    quick = QuickReply(**COMMON, mid="m2", text="Opening hours", payload="MENU")
    assert book.reply_for(quick).rule == "menu"


def test_an_unknown_payload_falls_back_to_the_title_then_the_fallback(book):
    quick = QuickReply(**COMMON, mid="m2", text="Opening hours", payload="OLD_PAYLOAD")
    assert book.reply_for(quick).rule == "hours"
    assert book.reply_for(Postback(**COMMON, payload="OLD_PAYLOAD")).rule == "fallback"


def test_gibberish_gets_the_fallback_with_the_main_choices(book):
    reply = book.reply_for(says("asdfghjkl"))
    assert isinstance(reply, TextReply)
    assert reply.rule == "fallback"
    assert "HUMAN" in [option.payload for option in reply.quick_replies]


def test_a_photo_gets_the_attachment_answer_and_a_captioned_one_is_read(book):
    photo = (Attachment(type=AttachmentType.IMAGE, url="https://x/y.jpg"),)
    assert book.reply_for(AttachmentMessage(**COMMON, mid="m3", attachments=photo)).rule == (
        "attachment"
    )
    captioned = AttachmentMessage(
        **COMMON, mid="m4", attachments=photo, text="is this on the menu?"
    )
    assert book.reply_for(captioned).rule == "menu"


def test_an_m_me_link_with_a_known_ref_opens_that_topic(book):
    assert book.reply_for(Referral(**COMMON, ref="MENU", source="SHORTLINK")).rule == "menu"
    assert book.reply_for(Referral(**COMMON, ref="campaign-7")) == NoReply(NoReplyReason.REFERRAL)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (Echo(**COMMON, mid="m5", text="hi", app_id="1"), NoReplyReason.ECHO),
        (Delivery(**COMMON, watermark=1), NoReplyReason.DELIVERY),
        (Read(**COMMON, watermark=1), NoReplyReason.READ),
        (Optin(**COMMON, ref="PLUGIN"), NoReplyReason.OPTIN),
        (Handover(**COMMON, action=HandoverAction.PASS), NoReplyReason.HANDOVER),
        (Unknown(**COMMON, item_type="reaction"), NoReplyReason.UNKNOWN),
    ],
)
def test_events_that_are_never_answered(book, event, reason):
    assert book.reply_for(event) == NoReply(reason)


def test_an_echo_of_a_greeting_is_not_answered_so_the_bot_never_talks_to_itself(book):
    assert book.reply_for(Echo(**COMMON, mid="m6", text="Hi, welcome to ESSEN!")) == NoReply(
        NoReplyReason.ECHO
    )


def test_standby_messages_are_counted_not_answered(book):
    assert book.reply_for(says("hi", standby=True)) == NoReply(NoReplyReason.STANDBY)
    standby_postback = Postback(**{**COMMON, "standby": True}, payload="HUMAN")
    assert book.reply_for(standby_postback) == NoReply(NoReplyReason.STANDBY)


# -- Send API shapes ------------------------------------------------------------------


def test_text_with_quick_replies_is_the_send_api_shape():
    reply = TextReply(text="Hours?", quick_replies=(QuickReplyOption("Menu", "MENU"),))
    assert reply.to_message() == {
        "text": "Hours?",
        "quick_replies": [{"content_type": "text", "title": "Menu", "payload": "MENU"}],
    }
    assert TextReply(text="plain").to_message() == {"text": "plain"}


def test_buttons_are_a_button_template():
    reply = ButtonsReply(
        text="Our menu",
        buttons=(
            UrlButton("See the menu", "https://essen.example/menu"),
            PostbackButton("Hours", "HOURS"),
        ),
    )
    assert reply.to_message() == {
        "attachment": {
            "type": "template",
            "payload": {
                "template_type": "button",
                "text": "Our menu",
                "buttons": [
                    {
                        "type": "web_url",
                        "url": "https://essen.example/menu",
                        "title": "See the menu",
                    },
                    {"type": "postback", "title": "Hours", "payload": "HOURS"},
                ],
            },
        }
    }


def test_a_handoff_sends_its_text():
    assert Handoff(text="A person will answer.").to_message() == {"text": "A person will answer."}


def test_the_default_menu_answer_is_a_button_template_within_messengers_limits(book):
    reply = book.answer_payload("MENU")
    assert isinstance(reply, ButtonsReply)
    message = reply.to_message()
    payload = message["attachment"]["payload"]
    assert payload["template_type"] == "button"
    assert 1 <= len(payload["buttons"]) <= 3
    assert len(payload["text"]) <= 640
    assert all(len(button["title"]) <= 20 for button in payload["buttons"])


def test_every_default_answer_fits_the_send_api(book):
    answers = [rule.answer for rule in book.rules] + [book.fallback, book.attachment]
    for answer in answers:
        message = answer.to_message()
        assert len(message.get("text", "")) <= 2000
        assert len(message.get("quick_replies", [])) <= 13
        for option in message.get("quick_replies", []):
            assert len(option["title"]) <= 20
            assert book.answer_payload(option["payload"]) is not None


def test_normalize():
    assert normalize("Öffnungszeiten?!") == "offnungszeiten"
    assert normalize("  What's on the MENU…  ") == "what s on the menu"
    assert normalize("Straße") == "strasse"
    assert normalize("🍕🍕") == ""
