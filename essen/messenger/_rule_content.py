"""Reading and validating a content file (the loader behind :class:`.rules.RuleBook`).

Everything the Send API would refuse later is refused here, at load, with the
file and the key in the message: a title over 20 characters, a fourth button,
a quick reply whose payload no rule answers.  The result is plain data
(:class:`Content`); matching lives in :mod:`.rules`.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass
from typing import Final, NoReturn

from essen.errors import ContentError
from essen.messenger._replies import (
    Answer,
    Button,
    ButtonsReply,
    Handoff,
    PostbackButton,
    QuickReplyOption,
    TextReply,
    UrlButton,
)

__all__ = ("Content", "Rule", "load_content", "normalize")

#: The Send API's limits (characters; counts), checked at load.
MAX_TEXT: Final = 2000
MAX_BUTTON_TEXT: Final = 640
MAX_TITLE: Final = 20
MAX_PAYLOAD: Final = 1000
MAX_URL: Final = 2000
MAX_QUICK_REPLIES: Final = 13
MAX_BUTTONS: Final = 3

_NOT_WORD: Final = re.compile(r"[\W_]+")


def normalize(text: str) -> str:
    """``text`` as keywords are matched: casefolded, accents and punctuation gone.

    ``"Öffnungszeiten?!"`` → ``"offnungszeiten"``, ``"What's on the MENU"`` →
    ``"what s on the menu"``: words separated by single spaces.
    """
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _NOT_WORD.sub(" ", bare).strip()


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``[rules.<id>]`` of a content file, validated; keywords are normalized."""

    id: str
    payloads: tuple[str, ...]
    keywords: tuple[str, ...]
    priority: int
    answer: Answer


@dataclass(frozen=True, slots=True)
class Content:
    """A validated content file."""

    rules: tuple[Rule, ...]
    fallback: Answer
    attachment: Answer | None


def load_content(content: str | bytes, *, source: str) -> Content:
    """Validate ``content`` (TOML); raises :class:`ContentError` naming ``source`` and the key."""
    return _Loader(source).content(content)


_ANSWER_KEYS: Final = frozenset({"text", "quick_replies", "buttons", "handoff"})
_RULE_KEYS: Final = frozenset({"payloads", "keywords", "priority"})
_TOP_KEYS: Final = ("fallback", "attachment", "rules")


class _Loader:
    """Validates one content file; every failure names the file and the key."""

    def __init__(self, source: str) -> None:
        self.source = source
        # (key, payload) of every quick reply and postback button, checked
        # once all rules are known: a payload nobody answers is a dead button.
        self.references: list[tuple[str, str]] = []

    def fail(self, key: str | None, problem: str) -> NoReturn:
        raise ContentError(self.source, key, problem)

    def content(self, content: str | bytes) -> Content:
        try:
            text = content.decode("utf-8") if isinstance(content, bytes) else content
            document = tomllib.loads(text)
        except UnicodeDecodeError:
            self.fail(None, "is not UTF-8 text")
        except tomllib.TOMLDecodeError as exc:
            self.fail(None, f"is not valid TOML ({exc})")
        for key in document:
            if key not in _TOP_KEYS:
                self.fail(key, f"unknown key (expected {', '.join(_TOP_KEYS)})")
        if "fallback" not in document:
            self.fail("fallback", "missing (the answer when no rule matches)")
        fallback = self.answer(self.table(document["fallback"], "fallback"), "fallback", "fallback")
        attachment = None
        if "attachment" in document:
            table = self.table(document["attachment"], "attachment")
            attachment = self.answer(table, "attachment", "attachment")
        rules_table = self.table(document.get("rules"), "rules")
        if not rules_table:
            self.fail("rules", "there must be at least one rule")
        rules = tuple(self.rule(rule_id, value) for rule_id, value in rules_table.items())
        owners: dict[str, str] = {}
        for rule in rules:
            for index, payload in enumerate(rule.payloads):
                if payload in owners:
                    self.fail(
                        f"rules.{rule.id}.payloads[{index}]",
                        f"{payload!r} is already a payload of rules.{owners[payload]}",
                    )
                owners[payload] = rule.id
        for key, payload in self.references:
            if payload not in owners:
                self.fail(key, f"{payload!r} is not a payload of any rule, nothing would answer it")
        return Content(rules, fallback, attachment)

    def rule(self, rule_id: str, value: object) -> Rule:
        key = f"rules.{rule_id}"
        table = self.table(value, key)
        raw_payloads = self.array(table.get("payloads", []), f"{key}.payloads")
        payloads = tuple(
            self.string(payload, f"{key}.payloads[{index}]", limit=MAX_PAYLOAD)
            for index, payload in enumerate(raw_payloads)
        )
        keywords = []
        for index, keyword in enumerate(self.array(table.get("keywords", []), f"{key}.keywords")):
            where = f"{key}.keywords[{index}]"
            normalized = normalize(self.string(keyword, where, limit=MAX_TEXT))
            if not normalized:
                self.fail(where, "has no letters or digits, it would never match")
            keywords.append(normalized)
        priority = table.get("priority", 0)
        if not isinstance(priority, int) or isinstance(priority, bool):
            self.fail(f"{key}.priority", "must be an integer")
        if not payloads and not keywords:
            self.fail(key, "needs payloads or keywords, or it can never be chosen")
        answer = self.answer(table, key, rule_id, extra=_RULE_KEYS)
        return Rule(rule_id, payloads, tuple(keywords), priority, answer)

    def answer(
        self, table: dict[str, object], key: str, rule_id: str, extra: frozenset[str] = frozenset()
    ) -> Answer:
        for name in table:
            if name not in _ANSWER_KEYS and name not in extra:
                allowed = ", ".join(sorted(_ANSWER_KEYS | extra))
                self.fail(f"{key}.{name}", f"unknown key (expected {allowed})")
        handoff = table.get("handoff", False)
        if not isinstance(handoff, bool):
            self.fail(f"{key}.handoff", "must be true or false")
        if handoff and ("buttons" in table or "quick_replies" in table):
            self.fail(
                f"{key}.handoff", "a handoff answer is text only (no buttons or quick replies)"
            )
        if "buttons" in table and "quick_replies" in table:
            self.fail(f"{key}.buttons", "an answer has buttons or quick_replies, not both")
        if "text" not in table:
            self.fail(f"{key}.text", "missing")
        limit = MAX_BUTTON_TEXT if "buttons" in table else MAX_TEXT
        text = self.string(table["text"], f"{key}.text", limit=limit)
        if handoff:
            return Handoff(text=text, rule=rule_id)
        if "buttons" in table:
            buttons = self.buttons(table["buttons"], key)
            return ButtonsReply(text=text, buttons=buttons, rule=rule_id)
        options = self.quick_replies(table.get("quick_replies", []), key)
        return TextReply(text=text, quick_replies=options, rule=rule_id)

    def quick_replies(self, value: object, key: str) -> tuple[QuickReplyOption, ...]:
        items = self.array(value, f"{key}.quick_replies", limit=MAX_QUICK_REPLIES)
        options = []
        for index, item in enumerate(items):
            where = f"{key}.quick_replies[{index}]"
            table = self.table(item, where)
            self.only(table, where, ("title", "payload"))
            title = self.string(table.get("title"), f"{where}.title", limit=MAX_TITLE)
            payload = self.string(table.get("payload"), f"{where}.payload", limit=MAX_PAYLOAD)
            self.references.append((f"{where}.payload", payload))
            options.append(QuickReplyOption(title, payload))
        return tuple(options)

    def buttons(self, value: object, key: str) -> tuple[Button, ...]:
        items = self.array(value, f"{key}.buttons", limit=MAX_BUTTONS)
        if not items:
            self.fail(f"{key}.buttons", "needs at least one button")
        buttons: list[Button] = []
        for index, item in enumerate(items):
            where = f"{key}.buttons[{index}]"
            table = self.table(item, where)
            self.only(table, where, ("title", "payload", "url"))
            title = self.string(table.get("title"), f"{where}.title", limit=MAX_TITLE)
            if ("payload" in table) == ("url" in table):
                self.fail(where, "a button has a payload or a url (exactly one)")
            if "url" in table:
                url = self.string(table["url"], f"{where}.url", limit=MAX_URL)
                if not url.startswith(("https://", "http://")):
                    self.fail(f"{where}.url", "must start with https:// or http://")
                buttons.append(UrlButton(title, url))
            else:
                payload = self.string(table["payload"], f"{where}.payload", limit=MAX_PAYLOAD)
                self.references.append((f"{where}.payload", payload))
                buttons.append(PostbackButton(title, payload))
        return tuple(buttons)

    def only(self, table: dict[str, object], key: str, allowed: tuple[str, ...]) -> None:
        for name in table:
            if name not in allowed:
                self.fail(f"{key}.{name}", f"unknown key (expected {', '.join(allowed)})")

    def table(self, value: object, key: str) -> dict[str, object]:
        if value is None:
            self.fail(key, "missing")
        if not isinstance(value, dict):
            self.fail(key, "must be a table")
        return value

    def array(self, value: object, key: str, *, limit: int | None = None) -> list[object]:
        if not isinstance(value, list):
            self.fail(key, "must be an array")
        if limit is not None and len(value) > limit:
            self.fail(key, f"has {len(value)} entries, at most {limit} are allowed")
        return value

    def string(self, value: object, key: str, *, limit: int) -> str:
        if value is None:
            self.fail(key, "missing")
        if not isinstance(value, str):
            self.fail(key, "must be a string")
        if not value.strip():
            self.fail(key, "must not be empty")
        if len(value) > limit:
            self.fail(key, f"is {len(value)} characters long, at most {limit} are allowed")
        return value
