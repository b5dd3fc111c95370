"""What the bot answers: conversation rules read from a content file.

The content (``essen/content/default.toml`` unless ``CONTENT_FILE`` names
another file) is data, so the people who run the restaurant can change the
answers without touching code; the syntax is explained at the top of the
default file.  Loading validates everything the Send API would refuse later
(titles over 20 characters, more than 3 buttons...) and every payload a button
sends, so a mistake is reported at load time with the file and the key, not
as a failed send in front of a customer.

Theory of operation.  :meth:`RuleBook.reply_for` maps one webhook event to a
:data:`Reply`, a pure decision: a payload (postback, quick reply, m.me
``ref``) picks its rule exactly; otherwise keywords are looked up as whole
words in the normalized text (:func:`normalize`), highest ``priority`` first,
then the longest keyword, then file order; otherwise the fallback.  Events
that must never be answered (echoes of our own messages, receipts, standby
items we only watch, handover notices) get :class:`NoReply` with the reason,
so the caller can count them.  A :class:`Handoff` asks the caller to pause the
bot for that user; what "pause" means is the webhook actor's business.

The replies are frozen and built once per load; :meth:`~TextReply.to_message`
gives the Send API's ``message`` object.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final, assert_never

from essen.errors import ContentError
from essen.messenger._replies import (
    Answer,
    Button,
    ButtonsReply,
    Handoff,
    NoReply,
    NoReplyReason,
    PostbackButton,
    QuickReplyOption,
    Reply,
    TextReply,
    UrlButton,
)
from essen.messenger._rule_content import Rule, load_content, normalize
from essen.messenger.webhook import (
    AttachmentMessage,
    Delivery,
    Echo,
    Handover,
    MessengerEvent,
    Optin,
    Postback,
    QuickReply,
    Read,
    Referral,
    TextMessage,
    Unknown,
)

__all__ = (
    "Answer",
    "Button",
    "ButtonsReply",
    "Handoff",
    "NoReply",
    "NoReplyReason",
    "PostbackButton",
    "QuickReplyOption",
    "ReloadResult",
    "ReloadStatus",
    "Reply",
    "Rule",
    "RuleBook",
    "RuleBookFile",
    "TextReply",
    "UrlButton",
    "normalize",
)

DEFAULT_SOURCE: Final = "essen/content/default.toml"


class RuleBook:
    """The conversation rules of one content file; immutable, so safe to share."""

    __slots__ = ("_by_keyword", "_by_payload", "attachment", "fallback", "rules", "source")

    def __init__(
        self,
        *,
        source: str,
        rules: tuple[Rule, ...],
        fallback: Answer,
        attachment: Answer | None = None,
    ) -> None:
        self.source = source
        self.rules = rules
        self.fallback = fallback
        self.attachment = attachment
        self._by_payload = {payload: rule.answer for rule in rules for payload in rule.payloads}
        # Most preferred first, so the first keyword found in a text wins:
        # higher priority, then the longer (more specific) keyword, then file order.
        ranked = sorted(
            (
                (-rule.priority, -len(keyword), order, f" {keyword} ", rule.answer)
                for order, rule in enumerate(rules)
                for keyword in rule.keywords
            ),
            key=lambda entry: entry[:3],
        )
        self._by_keyword = tuple((padded, answer) for *_, padded, answer in ranked)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> RuleBook:
        """The rule book of the content file at ``path`` (None: the packaged default).

        Raises:
            ContentError: the file cannot be read, is not TOML, or breaks a
                rule of the format; the message names the file and the key.
        """
        if path is None:
            text = resources.files("essen.content").joinpath("default.toml").read_bytes()
            return cls.parse(text, source=DEFAULT_SOURCE)
        source = os.fspath(path)
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ContentError(source, None, f"cannot be read ({exc.strerror})") from None
        return cls.parse(data, source=source)

    @classmethod
    def parse(cls, content: str | bytes, *, source: str = "<content>") -> RuleBook:
        """The rule book of ``content`` (TOML); ``source`` names it in errors.

        Raises:
            ContentError: as :meth:`load`.
        """
        loaded = load_content(content, source=source)
        return cls(
            source=source,
            rules=loaded.rules,
            fallback=loaded.fallback,
            attachment=loaded.attachment,
        )

    def reply_for(self, event: MessengerEvent) -> Reply:
        """What to answer ``event`` with; :class:`NoReply` when it must not be answered."""
        if event.standby:
            return NoReply(NoReplyReason.STANDBY)  # another app owns the thread
        match event:
            case TextMessage():
                return self.answer_text(event.text)
            case QuickReply():
                return self._by_payload.get(event.payload) or self.answer_text(event.text)
            case Postback():
                return self._by_payload.get(event.payload) or self.answer_text(event.title or "")
            case AttachmentMessage():
                if event.text:
                    return self.answer_text(event.text)
                return self.attachment or self.fallback
            case Referral():
                # An m.me link or ad with ?ref=MENU may open a rule; otherwise
                # the user has not said anything yet, so the bot stays quiet.
                found = self._by_payload.get(event.ref) if event.ref else None
                return found or NoReply(NoReplyReason.REFERRAL)
            case Echo():
                return NoReply(NoReplyReason.ECHO)  # our own (or the inbox's) message
            case Delivery():
                return NoReply(NoReplyReason.DELIVERY)
            case Read():
                return NoReply(NoReplyReason.READ)
            case Optin():
                return NoReply(NoReplyReason.OPTIN)
            case Handover():
                return NoReply(NoReplyReason.HANDOVER)
            case Unknown():
                return NoReply(NoReplyReason.UNKNOWN)
            case _:
                assert_never(event)

    def answer_payload(self, payload: str) -> Answer | None:
        """The answer of the rule that owns ``payload``, if any."""
        return self._by_payload.get(payload)

    def answer_text(self, text: str) -> Answer:
        """The answer to free text: the best keyword match, else the fallback."""
        padded = f" {normalize(text)} "
        for keyword, answer in self._by_keyword:
            if keyword in padded:
                return answer
        return self.fallback


class ReloadStatus(enum.Enum):
    UNCHANGED = "unchanged"
    RELOADED = "reloaded"
    #: The file changed but cannot be used; the previous rule book stays.
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ReloadResult:
    status: ReloadStatus
    error: ContentError | None = None


class RuleBookFile:
    """A content file and its rule book, reloaded when the file changes.

    No task watches the file: the owner calls :meth:`reload_if_changed` when
    it wants (on a timer, on SIGHUP), from a worker thread if it minds the
    small blocking read.  A file that changes into something invalid is
    reported once and the previous rule book stays in service.
    """

    __slots__ = ("_book", "_signature", "last_error", "path")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Load ``path``; raises :class:`ContentError` if it is unusable now."""
        self.path = Path(path)
        self._signature: tuple[int, int] | None = self._stat_signature(None)
        self._book = RuleBook.load(self.path)
        self.last_error: ContentError | None = None

    @property
    def book(self) -> RuleBook:
        """The rule book in service (the last one that loaded)."""
        return self._book

    def reload_if_changed(self, stat: os.stat_result | None = None) -> ReloadResult:
        """Reload the file if its modification time or size changed.

        Args:
            stat: the file's ``os.stat`` result if the caller has it (None:
                stat it here).

        Returns:
            UNCHANGED; RELOADED (``book`` is the new one); or FAILED with the
            error (``book`` is still the previous one, and the same broken
            version is not reported again).
        """
        try:
            signature = self._stat_signature(stat)
        except ContentError as exc:
            signature = None
            error: ContentError | None = exc
        else:
            error = None
        if signature == self._signature:
            return ReloadResult(ReloadStatus.UNCHANGED)
        self._signature = signature
        if error is None:
            try:
                self._book = RuleBook.load(self.path)
            except ContentError as exc:
                error = exc
        self.last_error = error
        if error is not None:
            return ReloadResult(ReloadStatus.FAILED, error)
        return ReloadResult(ReloadStatus.RELOADED)

    def _stat_signature(self, stat: os.stat_result | None) -> tuple[int, int]:
        if stat is None:
            try:
                stat = os.stat(self.path)
            except OSError as exc:
                problem = f"cannot be read ({exc.strerror})"
                raise ContentError(str(self.path), None, problem) from None
        return (stat.st_mtime_ns, stat.st_size)
