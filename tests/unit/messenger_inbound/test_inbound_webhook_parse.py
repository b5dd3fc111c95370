"""Every Messenger webhook item becomes a typed event; only a broken envelope is an error.

The payloads follow the examples of Meta's Messenger Platform webhook
reference (messages, messaging_postbacks, message_deliveries, message_reads,
messaging_optins, messaging_referrals, messaging_handovers, standby).
"""

from __future__ import annotations

import json

import pytest

from essen.errors import MalformedWebhook
from essen.messenger.webhook import (
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
    parse_webhook,
)

PAGE = "107318581234567"
PSID = "6043127745808817"
APP = "263902037430900"
TS = 1458692752478


def envelope(*items, standby=(), page=PAGE, time=TS):
    entry = {"id": page, "time": time, "messaging": list(items)}
    if standby:
        entry["standby"] = list(standby)
    return json.dumps({"object": "page", "entry": [entry]}).encode()


def from_user(**fields):
    return {"sender": {"id": PSID}, "recipient": {"id": PAGE}, "timestamp": TS, **fields}


def parse_one(item):
    (event,) = parse_webhook(envelope(item), max_events=100)
    return event


def test_text_message():
    event = parse_one(
        from_user(message={"mid": "mid.1457764197618:41d102a3e1ae206a38", "text": "hello, world!"})
    )
    assert event == TextMessage(
        page_id=PAGE,
        sender_id=PSID,
        recipient_id=PAGE,
        timestamp=TS,
        mid="mid.1457764197618:41d102a3e1ae206a38",
        text="hello, world!",
    )
    assert event.kind == "text"
    assert event.user_id == PSID
    assert event.identity == "mid:mid.1457764197618:41d102a3e1ae206a38"
    assert event.preview() == "hello, world!"


def test_quick_reply():
    event = parse_one(
        from_user(
            message={
                "mid": "m_quick",
                "text": "Opening hours",
                "quick_reply": {"payload": "HOURS"},
            }
        )
    )
    assert isinstance(event, QuickReply)
    assert (event.kind, event.payload, event.text) == ("quick_reply", "HOURS", "Opening hours")


@pytest.mark.parametrize(
    ("attachment", "expected_type"),
    [
        ({"type": "image", "payload": {"url": "https://scontent.xx.fbcdn.net/a.jpg"}}, "image"),
        ({"type": "audio", "payload": {"url": "https://cdn.fbsbx.com/v.mp4"}}, "audio"),
        ({"type": "video", "payload": {"url": "https://video.xx.fbcdn.net/v.mp4"}}, "video"),
        ({"type": "file", "payload": {"url": "https://cdn.fbsbx.com/menu.pdf"}}, "file"),
        (
            {
                "title": "Pinned Location",
                "url": "https://l.facebook.com/l.php?u=https%3A%2F%2Fwww.bing.com%2Fmaps",
                "type": "location",
                "payload": {"coordinates": {"lat": 51.4297, "long": 7.0034}},
            },
            "location",
        ),
        (
            {
                "title": "Example Domain",
                "url": "https://l.facebook.com/l.php?u=https%3A%2F%2Fexample.com%2F",
                "type": "fallback",
                "payload": None,
            },
            "fallback",
        ),
        (
            {"type": "template", "payload": {"template_type": "generic", "elements": []}},
            "template",
        ),
        ({"type": "ig_reel", "payload": {"url": "https://lookaside.fbsbx.com/r"}}, "other"),
    ],
)
def test_attachments_of_every_type(attachment, expected_type):
    event = parse_one(from_user(message={"mid": "m_att", "attachments": [attachment]}))
    assert isinstance(event, AttachmentMessage)
    assert event.kind == "attachment"
    (parsed,) = event.attachments
    assert parsed.type is AttachmentType(expected_type)
    assert parsed.url == (attachment.get("url") or (attachment["payload"] or {}).get("url"))
    assert "http" not in event.preview()
    assert "fbcdn" not in event.preview()
    assert event.preview() == f"[{expected_type}]"


def test_location_keeps_coordinates_but_never_shows_them():
    event = parse_one(
        from_user(
            message={
                "mid": "m_loc",
                "attachments": [
                    {"type": "location", "payload": {"coordinates": {"lat": 51.4297, "long": 7}}}
                ],
            }
        )
    )
    assert isinstance(event, AttachmentMessage)
    assert event.attachments[0].coordinates == (51.4297, 7.0)
    assert "51.4297" not in event.preview() + repr(event)


def test_sticker_and_shared_link_with_text():
    event = parse_one(
        from_user(
            message={
                "mid": "m_like",
                "text": "look https://example.com/menu?token=abc",
                "attachments": [
                    {
                        "type": "image",
                        "payload": {
                            "url": "https://x.fbcdn.net/s.png",
                            "sticker_id": 369239263222822,
                        },
                    }
                ],
            }
        )
    )
    assert isinstance(event, AttachmentMessage)
    assert event.attachments[0].sticker_id == "369239263222822"
    assert event.text == "look https://example.com/menu?token=abc"
    assert event.preview() == "[image] look https://example.com/…"


def test_echo_of_a_page_message():
    event = parse_one(
        {
            "sender": {"id": PAGE},
            "recipient": {"id": PSID},
            "timestamp": TS,
            "message": {
                "is_echo": True,
                "app_id": 1517776481860111,
                "metadata": "sent-by-essen",
                "mid": "mid.1457764197618:echo",
                "text": "Our opening hours: ...",
            },
        }
    )
    assert isinstance(event, Echo)
    assert (event.kind, event.app_id, event.metadata) == (
        "echo",
        "1517776481860111",
        "sent-by-essen",
    )
    assert event.user_id == PSID, "an echo's user is its recipient"


def test_echo_of_a_template():
    event = parse_one(
        {
            "sender": {"id": PAGE},
            "recipient": {"id": PSID},
            "timestamp": TS,
            "message": {
                "is_echo": True,
                "app_id": APP,
                "mid": "m_tpl",
                "attachments": [
                    {
                        "title": "",
                        "url": None,
                        "type": "template",
                        "payload": {"template_type": "button"},
                    }
                ],
            },
        }
    )
    assert isinstance(event, Echo)
    assert event.attachments[0].type is AttachmentType.TEMPLATE
    assert event.preview() == "[template]"


def test_postback_with_referral():
    event = parse_one(
        from_user(
            postback={
                "mid": "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAjSdjfipqxqMvK8ma6AC8fplwlqLP",
                "title": "Get Started",
                "payload": "GET_STARTED",
                "referral": {"ref": "MENU", "source": "SHORTLINK", "type": "OPEN_THREAD"},
            }
        )
    )
    assert isinstance(event, Postback)
    assert (event.kind, event.payload, event.title) == ("postback", "GET_STARTED", "Get Started")
    assert event.referral is not None
    assert (event.referral.ref, event.referral.source, event.referral.type) == (
        "MENU",
        "SHORTLINK",
        "OPEN_THREAD",
    )
    assert event.identity.startswith("mid:m_AG5Hz2")
    assert event.preview() == "Get Started"


def test_postback_without_mid_is_identified_by_sender_time_and_payload():
    first = parse_one(from_user(postback={"title": "Menu", "payload": "MENU"}))
    again = parse_one(from_user(postback={"title": "Menu", "payload": "MENU"}))
    other = parse_one(from_user(postback={"title": "Hours", "payload": "HOURS"}))
    assert first.identity == again.identity != other.identity
    assert PSID not in first.identity


def test_delivery_without_timestamp_takes_the_entry_time():
    event = parse_one(
        {
            "sender": {"id": PSID},
            "recipient": {"id": PAGE},
            "delivery": {
                "mids": ["mid.1458668856218:ed81099e15d3f4f233"],
                "watermark": 1458668856253,
            },
        }
    )
    assert isinstance(event, Delivery)
    assert event.kind == "delivery"
    assert event.mids == ("mid.1458668856218:ed81099e15d3f4f233",)
    assert (event.watermark, event.timestamp) == (1458668856253, TS)


def test_receipts_are_identified_by_sender_and_watermark():
    def delivery(watermark, sender=PSID):
        item = {
            "sender": {"id": sender},
            "recipient": {"id": PAGE},
            "delivery": {"watermark": watermark},
        }
        return parse_one(item)

    assert delivery(10).identity == delivery(10).identity
    assert delivery(10).identity != delivery(11).identity
    assert delivery(10).identity != delivery(10, sender="999").identity
    assert PSID not in delivery(10).identity


def test_read():
    event = parse_one(from_user(timestamp=1458668856463, read={"watermark": 1458668856253}))
    assert isinstance(event, Read)
    assert (event.kind, event.watermark, event.timestamp) == ("read", 1458668856253, 1458668856463)
    assert event.identity != parse_one(from_user(read={"watermark": 1458668856254})).identity


def test_plugin_optin():
    event = parse_one(from_user(optin={"ref": "RESERVATION_WIDGET", "user_ref": "ur-42"}))
    assert isinstance(event, Optin)
    assert (event.kind, event.ref, event.user_ref, event.type) == (
        "optin",
        "RESERVATION_WIDGET",
        "ur-42",
        None,
    )


def test_checkbox_optin_has_no_sender_and_is_keyed_by_user_ref():
    event = parse_one(
        {"recipient": {"id": PAGE}, "timestamp": TS, "optin": {"ref": "CHK", "user_ref": "ur-7"}}
    )
    assert isinstance(event, Optin)
    assert event.sender_id == ""
    assert event.user_id == "ur-7"


def test_notification_messages_optin_keeps_type_and_ref_not_the_token():
    event = parse_one(
        from_user(
            optin={
                "type": "notification_messages",
                "payload": "WEEKLY_SPECIALS",
                "notification_messages_token": "NOTIFICATION-MESSAGES-TOKEN-SECRET",
                "notification_messages_frequency": "WEEKLY",
                "token_expiry_timestamp": 1767225600000,
                "user_token_status": "NOT_REFRESHED",
                "notification_messages_timezone": "Europe/Berlin",
                "title": "Weekly specials",
            }
        )
    )
    assert isinstance(event, Optin)
    assert (event.type, event.ref) == ("notification_messages", "WEEKLY_SPECIALS")
    assert "TOKEN-SECRET" not in repr(event)


def test_one_time_notification_optin():
    event = parse_one(
        from_user(
            optin={
                "type": "one_time_notif_req",
                "payload": "TABLE_FREE",
                "one_time_notif_token": "t",
            }
        )
    )
    assert isinstance(event, Optin)
    assert (event.type, event.ref) == ("one_time_notif_req", "TABLE_FREE")


def test_referral_from_an_ad():
    event = parse_one(
        from_user(
            referral={
                "ref": "LUNCH",
                "ad_id": 6045246247433,
                "source": "ADS",
                "type": "OPEN_THREAD",
                "ads_context_data": {"ad_title": "Lunch at ESSEN"},
            }
        )
    )
    assert isinstance(event, Referral)
    assert (event.kind, event.ref, event.source, event.type, event.ad_id) == (
        "referral",
        "LUNCH",
        "ADS",
        "OPEN_THREAD",
        "6045246247433",
    )


@pytest.mark.parametrize(
    ("key", "body", "expected"),
    [
        (
            "pass_thread_control",
            {"new_owner_app_id": "123456789", "metadata": "over to you"},
            {"new_owner_app_id": "123456789", "metadata": "over to you"},
        ),
        (
            "take_thread_control",
            {"previous_owner_app_id": "123456789", "metadata": "taking over"},
            {"previous_owner_app_id": "123456789", "metadata": "taking over"},
        ),
        (
            "request_thread_control",
            {"requested_owner_app_id": 123456789, "metadata": "may I?"},
            {"requested_owner_app_id": "123456789", "metadata": "may I?"},
        ),
    ],
)
def test_thread_control_handover(key, body, expected):
    event = parse_one(from_user(**{key: body}))
    assert isinstance(event, Handover)
    assert event.kind == "handover"
    assert event.action is HandoverAction(key)
    for name, value in expected.items():
        assert getattr(event, name) == value


def test_app_roles_handover_has_no_sender():
    event = parse_one(
        {"recipient": {"id": PAGE}, "timestamp": TS, "app_roles": {APP: ["primary_receiver"]}}
    )
    assert isinstance(event, Handover)
    assert event.action is HandoverAction.APP_ROLES
    assert event.app_roles == ((APP, ("primary_receiver",)),)


def test_standby_items_are_flagged_and_counted_as_standby():
    body = envelope(
        standby=[
            from_user(message={"mid": "m_sb1", "text": "is anyone there?"}),
            from_user(read={"watermark": 1}),
        ]
    )
    first, second = parse_webhook(body, max_events=10)
    assert isinstance(first, TextMessage)
    assert first.standby
    assert isinstance(second, Read)
    assert second.standby
    assert first.kind == second.kind == "standby"
    assert first.identity == "mid:m_sb1"


def test_a_batch_keeps_messenger_order_across_entries_and_arrays():
    body = json.dumps(
        {
            "object": "page",
            "entry": [
                {
                    "id": PAGE,
                    "time": TS,
                    "messaging": [
                        from_user(message={"mid": "m1", "text": "one"}),
                        from_user(postback={"payload": "MENU", "title": "Menu"}),
                    ],
                    "standby": [from_user(message={"mid": "m3", "text": "three"})],
                },
                {
                    "id": "222",
                    "time": TS + 1,
                    "messaging": [
                        {
                            "sender": {"id": "u2"},
                            "recipient": {"id": "222"},
                            "delivery": {"watermark": 5},
                        }
                    ],
                },
            ],
        }
    ).encode()
    events = parse_webhook(body, max_events=10)
    assert [type(event) for event in events] == [TextMessage, Postback, TextMessage, Delivery]
    assert [event.page_id for event in events] == [PAGE, PAGE, PAGE, "222"]
    assert events[3].timestamp == TS + 1


def test_unknown_item_types_become_unknown_events_not_errors():
    events = parse_webhook(
        envelope(
            from_user(reaction={"reaction": "love", "emoji": "❤", "action": "react", "mid": "m1"}),
            from_user(message_edit={"mid": "m1", "text": "edited", "num_edit": 1}),
            from_user(message={"mid": "m2", "text": "still parsed"}),
        ),
        max_events=10,
    )
    assert [event.kind for event in events] == ["unknown", "unknown", "text"]
    assert [getattr(event, "item_type", None) for event in events[:2]] == [
        "reaction",
        "message_edit",
    ]
    assert events[0].identity != events[1].identity


@pytest.mark.parametrize(
    ("item", "item_type"),
    [
        (from_user(message={"text": "no mid"}), "message"),
        (from_user(message={"mid": "m_empty"}), "message"),
        (from_user(message={"mid": "m", "quick_reply": {}}), "message"),
        (from_user(postback={"title": "no payload"}), "postback"),
        (from_user(delivery={"mids": "not-a-list", "watermark": 1}), "delivery"),
        (from_user(read={}), "read"),
        (from_user(sender="not-an-object", message={"mid": "m", "text": "x"}), "message"),
        ("not an object", "invalid"),
        ({}, "empty"),
    ],
)
def test_a_malformed_item_becomes_unknown_with_the_reason(item, item_type):
    event = parse_one(item)
    assert isinstance(event, Unknown)
    assert event.item_type == item_type
    assert (event.reason is None) == (item_type == "empty")


def test_page_feed_changes_are_unknown():
    body = json.dumps(
        {
            "object": "page",
            "entry": [{"id": PAGE, "time": TS, "changes": [{"field": "feed", "value": {}}]}],
        }
    ).encode()
    (event,) = parse_webhook(body, max_events=10)
    assert isinstance(event, Unknown)
    assert event.item_type == "changes:feed"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[" * 100_000,
        b"[]",
        b'{"object": "instagram", "entry": []}',
        b'{"object": "page"}',
        b'{"object": "page", "entry": {}}',
        b'{"object": "page", "entry": ["x"]}',
        b'{"object": "page", "entry": [{"id": "1", "messaging": {}}]}',
    ],
)
def test_a_body_that_is_not_a_page_webhook_is_refused(body):
    with pytest.raises(MalformedWebhook):
        parse_webhook(body, max_events=10)


def test_an_empty_batch_is_fine():
    assert parse_webhook(b'{"object": "page", "entry": []}', max_events=10) == []


def test_more_events_than_allowed_is_refused():
    items = [from_user(message={"mid": f"m{i}", "text": "x"}) for i in range(4)]
    assert len(parse_webhook(envelope(*items), max_events=4)) == 4
    with pytest.raises(MalformedWebhook, match="more than 3"):
        parse_webhook(envelope(*items), max_events=3)


def test_repr_never_shows_the_psid_or_what_the_user_wrote():
    event = parse_one(from_user(message={"mid": "m1", "text": "my number is 0171 2345678"}))
    assert PSID not in repr(event)
    assert "0171" not in repr(event)
    assert "m1" in repr(event)


def test_preview_is_sanitized_and_bounded():
    event = parse_one(
        from_user(message={"mid": "m1", "text": "mail me: jane@example.org " + "x" * 300})
    )
    preview = event.preview(limit=50)
    assert "jane@example.org" not in preview
    assert len(preview) <= 50
