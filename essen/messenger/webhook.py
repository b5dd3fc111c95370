"""The Messenger webhook, sans-IO: signatures, the subscription handshake, typed events.

The web layer hands this module bytes and headers and gets back a verdict or a
list of events; nothing here does I/O or reads a clock.

Theory of operation.  Messenger POSTs ``{"object": "page", "entry": [...]}``;
each entry is one page and carries ``messaging`` items (this app owns the
thread) and ``standby`` items (another app owns it, we only watch).  Messenger
batches: one POST may hold many entries and many items, and it redelivers a
POST that was not answered 200 for hours.  So the envelope is strict (a body
that is not a page webhook is refused, and the web layer answers 400) while
the items are lenient: each item becomes one event, and an item ESSEN does not
know (or that lacks a documented field) becomes :class:`Unknown`, which is
counted, never an error — refusing the batch would make Messenger retry items
we handled already.

Every event carries ``identity``, the key of the dedupe cache: the message id
where Messenger gives one, otherwise a digest of what makes the item unique
(a digest, so the identity can be shown or logged without the PSID in it).
The event types live in :mod:`essen.messenger._webhook_events` and are
re-exported here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Final, TypedDict

from essen.errors import MalformedWebhook
from essen.messenger._webhook_events import (
    Attachment,
    AttachmentMessage,
    AttachmentType,
    Delivery,
    Echo,
    Handover,
    HandoverAction,
    MessengerEvent,
    Optin,
    Postback,
    QuickReply,
    Read,
    Referral,
    TextMessage,
    Unknown,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = (
    "Attachment",
    "AttachmentMessage",
    "AttachmentType",
    "Delivery",
    "Echo",
    "Handover",
    "HandoverAction",
    "MessengerEvent",
    "Optin",
    "Postback",
    "QuickReply",
    "Read",
    "Referral",
    "TextMessage",
    "Unknown",
    "parse_webhook",
    "verify_signature",
    "verify_subscription",
)

SIGNATURE_PREFIX: Final = "sha256="


def verify_signature(body: bytes, header: str | None, app_secret: str) -> bool:
    """Whether ``X-Hub-Signature-256`` proves that Messenger sent ``body``.

    The header is ``sha256=<hex HMAC-SHA256 of the raw body, keyed with the
    app secret>``.  The comparison takes the same time wherever the first
    wrong digit is, so the signature cannot be guessed digit by digit.

    Returns False for a missing or malformed header and for an empty
    ``app_secret`` (a misconfigured bot must refuse everything, not accept
    everything).
    """
    if not header or not app_secret or not header.startswith(SIGNATURE_PREFIX):
        return False
    claimed = header[len(SIGNATURE_PREFIX) :].strip().lower()
    if not claimed.isascii():
        return False
    expected = hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), claimed.encode("ascii"))


def verify_subscription(
    mode: str | None, token: str | None, challenge: str | None, expected_token: str
) -> str | None:
    """The answer to Messenger's ``GET /webhook`` handshake, or None to refuse it.

    Messenger sends ``hub.mode=subscribe``, ``hub.verify_token`` (the token set
    in the app dashboard) and ``hub.challenge``; the endpoint must echo the
    challenge.  The token is compared in constant time; an empty
    ``expected_token`` refuses every handshake.
    """
    if mode != "subscribe" or token is None or challenge is None or not expected_token:
        return None
    if not hmac.compare_digest(token.encode("utf-8"), expected_token.encode("utf-8")):
        return None
    return challenge


def parse_webhook(body: bytes, *, max_events: int) -> list[MessengerEvent]:
    """The events of one webhook POST body, in the order Messenger sent them.

    Args:
        body: the raw body (verify its signature first).
        max_events: the most items one body may carry (Messenger batches up
            to 1000); a body with more is refused rather than half handled.

    Returns:
        One event per item of every entry's ``messaging`` then ``standby``
        array (``standby`` items have ``standby=True``), and one
        :class:`Unknown` per item of an entry's ``changes`` (page feed
        webhooks are not Messenger events).

    Raises:
        MalformedWebhook: the body is not JSON, not ``{"object": "page",
            "entry": [...]}``, an entry or its arrays are not the documented
            shapes, or it carries more than ``max_events`` items.
    """
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise MalformedWebhook(f"the body is not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("object") != "page":
        raise MalformedWebhook('the body is not a page webhook ({"object": "page", ...})')
    entries = document.get("entry")
    if not isinstance(entries, list):
        raise MalformedWebhook('the body has no "entry" array')
    events: list[MessengerEvent] = []
    for event in _entries(entries):
        if len(events) == max_events:
            raise MalformedWebhook(f"the body carries more than {max_events} events")
        events.append(event)
    return events


class _BadItem(Exception):
    """An item inside a valid envelope lacks a documented field (becomes Unknown)."""


class _Common(TypedDict):
    page_id: str
    sender_id: str
    recipient_id: str
    timestamp: int
    standby: bool


def _entries(entries: list[object]) -> Iterator[MessengerEvent]:
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise MalformedWebhook(f"entry[{index}] is not an object")
        page_id = _ident(entry.get("id")) or ""
        entry_time = _integer(entry.get("time")) or 0
        for array, standby in (("messaging", False), ("standby", True)):
            items = entry.get(array)
            if items is None:
                continue
            if not isinstance(items, list):
                raise MalformedWebhook(f"entry[{index}].{array} is not an array")
            for item in items:
                yield _item(item, page_id, entry_time, standby=standby)
        changes = entry.get("changes")
        if isinstance(changes, list):
            for change in changes:
                name = change.get("field") if isinstance(change, dict) else None
                yield Unknown(
                    page_id=page_id,
                    sender_id="",
                    recipient_id=page_id,
                    timestamp=entry_time,
                    item_type=f"changes:{name}" if isinstance(name, str) else "changes",
                )


def _item(item: object, page_id: str, entry_time: int, *, standby: bool) -> MessengerEvent:
    common = _Common(
        page_id=page_id, sender_id="", recipient_id="", timestamp=entry_time, standby=standby
    )
    if not isinstance(item, dict):
        return Unknown(**common, item_type="invalid", reason="the item is not an object")
    item_type = next((key for key in _PARSERS if key in item), None)
    if item_type is None:
        others = sorted(key for key in item if key not in ("sender", "recipient", "timestamp"))
        item_type = others[0] if others else "empty"
    try:
        common["sender_id"] = _party(item, "sender")
        common["recipient_id"] = _party(item, "recipient")
        common["timestamp"] = _integer(item.get("timestamp")) or entry_time
        parser = _PARSERS.get(item_type)
        if parser is None:
            return Unknown(**common, item_type=item_type)
        return parser(item, common)
    except _BadItem as exc:
        return Unknown(**common, item_type=item_type, reason=str(exc))


def _message(item: dict[str, object], common: _Common) -> MessengerEvent:
    message = _object(item, "message")
    mid = _required_text(message, "mid", "message")
    text = _text(message, "text", "message")
    attachments = _attachments(message)
    if message.get("is_echo") is True:
        return Echo(
            **common,
            mid=mid,
            app_id=_ident(message.get("app_id")),
            text=text,
            attachments=attachments,
            metadata=_text(message, "metadata", "message"),
        )
    if "quick_reply" in message:
        quick_reply = _object(message, "quick_reply", "message.")
        payload = _required_text(quick_reply, "payload", "message.quick_reply")
        return QuickReply(**common, mid=mid, text=text or "", payload=payload)
    if attachments:
        return AttachmentMessage(**common, mid=mid, attachments=attachments, text=text)
    if text is None:
        raise _BadItem("the message has neither text nor attachments")
    return TextMessage(**common, mid=mid, text=text)


def _attachments(message: dict[str, object]) -> tuple[Attachment, ...]:
    raw = message.get("attachments")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _BadItem("message.attachments is not an array")
    return tuple(_attachment(entry, index) for index, entry in enumerate(raw))


def _attachment(raw: object, index: int) -> Attachment:
    where = f"message.attachments[{index}]"
    if not isinstance(raw, dict):
        raise _BadItem(f"{where} is not an object")
    type_name = _text(raw, "type", where)
    known = {member.value for member in AttachmentType}
    kind = AttachmentType(type_name) if type_name in known else AttachmentType.OTHER
    payload = raw.get("payload")
    payload = payload if isinstance(payload, dict) else {}
    coordinates = payload.get("coordinates")
    position: tuple[float, float] | None = None
    if isinstance(coordinates, dict):
        lat, long = _number(coordinates.get("lat")), _number(coordinates.get("long"))
        if lat is not None and long is not None:
            position = (lat, long)
    url = _text(payload, "url", where) or _text(raw, "url", where) or _text(raw, "URL", where)
    return Attachment(
        type=kind,
        url=url,
        title=_text(raw, "title", where) or _text(payload, "title", where),
        sticker_id=_ident(payload.get("sticker_id")),
        coordinates=position,
    )


def _postback(item: dict[str, object], common: _Common) -> MessengerEvent:
    postback = _object(item, "postback")
    referral = postback.get("referral")
    return Postback(
        **common,
        payload=_required_text(postback, "payload", "postback"),
        title=_text(postback, "title", "postback"),
        mid=_text(postback, "mid", "postback"),
        referral=_referral_of(referral, common) if isinstance(referral, dict) else None,
    )


def _referral(item: dict[str, object], common: _Common) -> MessengerEvent:
    return _referral_of(_object(item, "referral"), common)


def _referral_of(referral: dict[str, object], common: _Common) -> Referral:
    return Referral(
        **common,
        ref=_text(referral, "ref", "referral"),
        source=_text(referral, "source", "referral"),
        type=_text(referral, "type", "referral"),
        ad_id=_ident(referral.get("ad_id")),
    )


def _delivery(item: dict[str, object], common: _Common) -> MessengerEvent:
    delivery = _object(item, "delivery")
    mids = delivery.get("mids", [])
    if not isinstance(mids, list) or not all(isinstance(mid, str) for mid in mids):
        raise _BadItem("delivery.mids is not an array of strings")
    watermark = _integer(delivery.get("watermark"))
    if watermark is None:
        raise _BadItem("delivery.watermark is missing")
    return Delivery(**common, watermark=watermark, mids=tuple(mids))


def _read(item: dict[str, object], common: _Common) -> MessengerEvent:
    watermark = _integer(_object(item, "read").get("watermark"))
    if watermark is None:
        raise _BadItem("read.watermark is missing")
    return Read(**common, watermark=watermark)


def _optin(item: dict[str, object], common: _Common) -> MessengerEvent:
    optin = _object(item, "optin")
    return Optin(
        **common,
        ref=_text(optin, "ref", "optin") or _text(optin, "payload", "optin"),
        user_ref=_text(optin, "user_ref", "optin"),
        type=_text(optin, "type", "optin"),
    )


def _handover(action: HandoverAction) -> Callable[[dict[str, object], _Common], MessengerEvent]:
    def parse(item: dict[str, object], common: _Common) -> MessengerEvent:
        body = _object(item, action.value)
        if action is HandoverAction.APP_ROLES:
            roles = tuple(
                (app_id, tuple(role for role in app_roles if isinstance(role, str)))
                for app_id, app_roles in body.items()
                if isinstance(app_roles, list)
            )
            return Handover(**common, action=action, app_roles=roles)
        return Handover(
            **common,
            action=action,
            new_owner_app_id=_ident(body.get("new_owner_app_id")),
            previous_owner_app_id=_ident(body.get("previous_owner_app_id")),
            requested_owner_app_id=_ident(body.get("requested_owner_app_id")),
            metadata=_text(body, "metadata", action.value),
        )

    return parse


#: Item parsers by the key that names the item's type, in the order they are
#: tried (an echo is a ``message`` with ``is_echo``).
_PARSERS: Final[dict[str, Callable[[dict[str, object], _Common], MessengerEvent]]] = {
    "message": _message,
    "postback": _postback,
    "delivery": _delivery,
    "read": _read,
    "optin": _optin,
    "referral": _referral,
    **{action.value: _handover(action) for action in HandoverAction},
}


# -- typed access to JSON --------------------------------------------------------


def _object(parent: dict[str, object], key: str, prefix: str = "") -> dict[str, object]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise _BadItem(f"{prefix}{key} is not an object")
    return value


def _text(parent: dict[str, object], key: str, where: str) -> str | None:
    value = parent.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _BadItem(f"{where}.{key} is not a string")


def _required_text(parent: dict[str, object], key: str, where: str) -> str:
    value = _text(parent, key, where)
    if value is None:
        raise _BadItem(f"{where}.{key} is missing")
    return value


def _ident(value: object) -> str | None:
    """Ids are strings in Messenger's payloads, numbers in a few of its examples."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _integer(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _party(item: dict[str, object], key: str) -> str:
    party = item.get(key)
    if party is None:
        return ""
    if not isinstance(party, dict):
        raise _BadItem(f"{key} is not an object")
    return _ident(party.get("id")) or ""
