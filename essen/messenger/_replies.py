"""The bot's replies as types, and their Send API shapes (re-exported by :mod:`.rules`).

A reply is decided by the rule book (pure) and sent by the webhook actor; the
two meet here.  :meth:`to_message` gives the ``message`` object of a Send API
request (``POST /me/messages`` with ``recipient`` and ``messaging_type``
added by the sender), following Messenger's documented shapes: plain text,
text with ``quick_replies`` (``content_type: "text"``), and the button
template (``attachment.type: "template"``, ``template_type: "button"``).
The limits those shapes have (titles of 20 characters, 3 buttons...) are
checked when a content file is loaded, not here: a reply that exists is
sendable.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = (
    "Answer",
    "Button",
    "ButtonsReply",
    "Handoff",
    "NoReply",
    "NoReplyReason",
    "PostbackButton",
    "QuickReplyOption",
    "Reply",
    "TextReply",
    "UrlButton",
)


@dataclass(frozen=True, slots=True)
class QuickReplyOption:
    """A quick reply: a chip under the message; tapping it sends ``payload`` back."""

    title: str
    payload: str

    def to_json(self) -> dict[str, object]:
        return {"content_type": "text", "title": self.title, "payload": self.payload}


@dataclass(frozen=True, slots=True)
class PostbackButton:
    """A button that sends ``payload`` back as a postback."""

    title: str
    payload: str

    def to_json(self) -> dict[str, object]:
        return {"type": "postback", "title": self.title, "payload": self.payload}


@dataclass(frozen=True, slots=True)
class UrlButton:
    """A button that opens ``url`` (the menu on the website, a map)."""

    title: str
    url: str

    def to_json(self) -> dict[str, object]:
        return {"type": "web_url", "url": self.url, "title": self.title}


Button = PostbackButton | UrlButton


@dataclass(frozen=True, slots=True, kw_only=True)
class TextReply:
    """A text message, with quick replies under it when there are any."""

    text: str
    quick_replies: tuple[QuickReplyOption, ...] = ()
    #: The id of the rule that chose it (``"fallback"``, ``"attachment"``...).
    rule: str = ""

    def to_message(self) -> dict[str, object]:
        message: dict[str, object] = {"text": self.text}
        if self.quick_replies:
            message["quick_replies"] = [option.to_json() for option in self.quick_replies]
        return message


@dataclass(frozen=True, slots=True, kw_only=True)
class ButtonsReply:
    """A button template: text with one to three buttons."""

    text: str
    buttons: tuple[Button, ...]
    rule: str = ""

    def to_message(self) -> dict[str, object]:
        return {
            "attachment": {
                "type": "template",
                "payload": {
                    "template_type": "button",
                    "text": self.text,
                    "buttons": [button.to_json() for button in self.buttons],
                },
            }
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Handoff:
    """The user asked for a person: send ``text``, then pause the bot for this user."""

    text: str
    rule: str = ""

    def to_message(self) -> dict[str, object]:
        return {"text": self.text}


class NoReplyReason(enum.Enum):
    ECHO = "echo"
    DELIVERY = "delivery"
    READ = "read"
    STANDBY = "standby"
    OPTIN = "optin"
    REFERRAL = "referral"
    HANDOVER = "handover"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class NoReply:
    """Nothing is sent; ``reason`` says why (for the counters)."""

    reason: NoReplyReason


#: The replies that are sent (each has ``to_message()``).
Answer = TextReply | ButtonsReply | Handoff
Reply = TextReply | ButtonsReply | Handoff | NoReply
