"""The typed Messenger webhook events (re-exported by :mod:`essen.messenger.webhook`).

One frozen dataclass per item type Messenger documents.  Every event carries
``identity``, the key of the dedupe cache: the message id where Messenger
gives one, otherwise a digest of what makes the item unique (a digest, so an
identity can be shown or logged without the PSID in it).  ``repr()`` hides
PSIDs and what the user wrote, so logging an event is safe; ``preview()``
gives the sanitized text for the dashboard.  ``kind`` is the
:data:`essen.events.MessageKind` the metrics count.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from essen.sanitize import sanitize_text

if TYPE_CHECKING:
    from essen.events import MessageKind

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
)


class AttachmentType(enum.Enum):
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    FILE = "file"
    LOCATION = "location"
    FALLBACK = "fallback"
    TEMPLATE = "template"
    #: A type Messenger added after this code (``reel``, ``story_mention``...).
    OTHER = "other"


class HandoverAction(enum.Enum):
    PASS = "pass_thread_control"
    TAKE = "take_thread_control"
    REQUEST = "request_thread_control"
    APP_ROLES = "app_roles"


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    """One attachment; ``url`` is kept for handlers but never shown in a preview."""

    type: AttachmentType
    url: str | None = field(default=None, repr=False)
    title: str | None = None
    sticker_id: str | None = None
    #: (latitude, longitude) of a location attachment.
    coordinates: tuple[float, float] | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Event:
    KIND: ClassVar[MessageKind]

    page_id: str
    #: The PSID for items from a user (the page's id for echoes); "" when
    #: Messenger omits it (checkbox-plugin optins, ``app_roles``).
    sender_id: str = field(repr=False)
    recipient_id: str = field(repr=False)
    #: Milliseconds since the epoch (the entry's time when the item has none).
    timestamp: int
    #: Arrived in ``standby``: another app owns the thread, we only watch.
    standby: bool = False

    @property
    def kind(self) -> MessageKind:
        """The kind the metrics count: ``"standby"`` for any standby item."""
        return "standby" if self.standby else self.KIND

    @property
    def user_id(self) -> str:
        """The PSID of the user the conversation is with (pseudonymize before use)."""
        return self.sender_id

    @property
    def identity(self) -> str:
        return f"{self.KIND}:{_digest(self.user_id, str(self.timestamp))}"

    def _preview_source(self) -> str:
        return ""

    def preview(self, limit: int = 120) -> str:
        """What the dashboard may show of this item: sanitized, URLs and PSIDs left out."""
        return sanitize_text(self._preview_source(), limit=limit)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Message(_Event):
    mid: str

    @property
    def identity(self) -> str:
        return f"mid:{self.mid}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TextMessage(_Message):
    KIND: ClassVar[MessageKind] = "text"
    text: str = field(repr=False)

    def _preview_source(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True, kw_only=True)
class QuickReply(_Message):
    """The user tapped a quick reply: ``text`` is its title, ``payload`` ours."""

    KIND: ClassVar[MessageKind] = "quick_reply"
    text: str = field(repr=False)
    payload: str

    def _preview_source(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachmentMessage(_Message):
    KIND: ClassVar[MessageKind] = "attachment"
    attachments: tuple[Attachment, ...]
    text: str | None = field(default=None, repr=False)

    def _preview_source(self) -> str:
        return _describe(self.attachments, self.text)


@dataclass(frozen=True, slots=True, kw_only=True)
class Echo(_Message):
    """A message the page sent (this app, another app, or a person in the inbox)."""

    KIND: ClassVar[MessageKind] = "echo"
    app_id: str | None = None
    text: str | None = field(default=None, repr=False)
    attachments: tuple[Attachment, ...] = ()
    metadata: str | None = None

    @property
    def user_id(self) -> str:
        return self.recipient_id  # an echo goes from the page to the user

    def _preview_source(self) -> str:
        return _describe(self.attachments, self.text)


@dataclass(frozen=True, slots=True, kw_only=True)
class Referral(_Event):
    """The user came through an m.me link, an ad, a QR code or a chat plugin."""

    KIND: ClassVar[MessageKind] = "referral"
    ref: str | None = None
    source: str | None = None
    type: str | None = None
    ad_id: str | None = None

    def _preview_source(self) -> str:
        return " ".join(part for part in (self.source, self.ref) if part)


@dataclass(frozen=True, slots=True, kw_only=True)
class Postback(_Event):
    """The user pressed a postback button (or Get Started, or a persistent menu item)."""

    KIND: ClassVar[MessageKind] = "postback"
    payload: str
    title: str | None = None
    mid: str | None = None
    referral: Referral | None = None

    @property
    def identity(self) -> str:
        if self.mid:
            return f"mid:{self.mid}"
        return f"postback:{_digest(self.sender_id, str(self.timestamp), self.payload)}"

    def _preview_source(self) -> str:
        return self.title or self.payload


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery(_Event):
    """Messages up to ``watermark`` (ms) were delivered to the user."""

    KIND: ClassVar[MessageKind] = "delivery"
    watermark: int
    mids: tuple[str, ...] = ()

    @property
    def identity(self) -> str:
        return f"delivery:{_digest(self.sender_id, str(self.watermark))}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Read(_Event):
    """The user read the messages up to ``watermark`` (ms)."""

    KIND: ClassVar[MessageKind] = "read"
    watermark: int

    @property
    def identity(self) -> str:
        return f"read:{_digest(self.sender_id, str(self.watermark))}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Optin(_Event):
    """A plugin opt-in or a notification-messages opt-in.

    ``ref`` is the plugin's ``data-ref`` (or the notification request's
    payload); tokens Messenger sends with notification opt-ins are not kept.
    """

    KIND: ClassVar[MessageKind] = "optin"
    ref: str | None = None
    user_ref: str | None = field(default=None, repr=False)
    #: ``"notification_messages"``, ``"one_time_notif_req"``; None for plugins.
    type: str | None = None

    @property
    def user_id(self) -> str:
        return self.sender_id or self.user_ref or ""

    def _preview_source(self) -> str:
        return " ".join(part for part in (self.type, self.ref) if part)


@dataclass(frozen=True, slots=True, kw_only=True)
class Handover(_Event):
    """Thread ownership moved, was requested, or the page's app roles changed."""

    KIND: ClassVar[MessageKind] = "handover"
    action: HandoverAction
    new_owner_app_id: str | None = None
    previous_owner_app_id: str | None = None
    requested_owner_app_id: str | None = None
    metadata: str | None = None
    #: ``app_roles`` only: (app id, roles) pairs.
    app_roles: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def identity(self) -> str:
        return f"handover:{_digest(self.action.value, self.sender_id, str(self.timestamp))}"

    def _preview_source(self) -> str:
        return self.action.value


@dataclass(frozen=True, slots=True, kw_only=True)
class Unknown(_Event):
    """An item ESSEN does not handle (a newer event type, or one missing a field)."""

    KIND: ClassVar[MessageKind] = "unknown"
    #: The item's type key (``"reaction"``, ``"message_edit"``, ``"changes:feed"``...).
    item_type: str
    #: Why it is unknown: None for an unsupported type, else what was wrong.
    reason: str | None = None

    @property
    def identity(self) -> str:
        return f"unknown:{_digest(self.item_type, self.sender_id, str(self.timestamp))}"

    def _preview_source(self) -> str:
        return self.item_type


MessengerEvent = (
    TextMessage
    | QuickReply
    | AttachmentMessage
    | Echo
    | Postback
    | Delivery
    | Read
    | Optin
    | Referral
    | Handover
    | Unknown
)


def _digest(*parts: str) -> str:
    joined = "\x1f".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(joined, digest_size=12).hexdigest()


def _describe(attachments: tuple[Attachment, ...], text: str | None) -> str:
    labels = " ".join(f"[{attachment.type.value}]" for attachment in attachments)
    return f"{labels} {text}" if text else labels
