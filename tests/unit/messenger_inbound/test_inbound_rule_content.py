"""A mistake in a content file is named (file and key) at load; a reload keeps the old rules."""

from __future__ import annotations

import os

import pytest

from essen.errors import ContentError
from essen.messenger.rules import ReloadStatus, RuleBook, RuleBookFile, TextReply
from essen.messenger.webhook import TextMessage

VALID = """
[fallback]
text = "Sorry?"

[rules.hours]
payloads = ["HOURS"]
keywords = ["hours"]
text = "We are open 9 to 5."
quick_replies = [{ title = "Hours", payload = "HOURS" }]
"""


def asks(text):
    return TextMessage(
        page_id="P", sender_id="U", recipient_id="P", timestamp=1, mid="m", text=text
    )


def test_a_custom_file_is_loaded_and_answers(tmp_path):
    path = tmp_path / "content.toml"
    path.write_text(VALID, encoding="utf-8")
    book = RuleBook.load(path)
    assert book.source == str(path)
    reply = book.reply_for(asks("your hours?"))
    assert isinstance(reply, TextReply)
    assert reply.text == "We are open 9 to 5."


def test_the_packaged_default_is_used_without_a_path():
    book = RuleBook.load(None)
    assert book.source == "essen/content/default.toml"
    assert {rule.id for rule in book.rules} >= {"greeting", "hours", "menu", "location", "contact"}


BAD = [
    pytest.param(VALID.replace('title = "Hours"', 'title = "' + "H" * 21 + '"'),
        "rules.hours.quick_replies[0].title", "at most 20", id="long-quick-reply-title"),
    pytest.param(VALID.replace("keywords", "keyword"), "rules.hours.keyword", "unknown key",
        id="typo-in-key"),
    pytest.param(VALID.replace('payload = "HOURS" }', 'payload = "HOURZ" }'),
        "rules.hours.quick_replies[0].payload", "not a payload of any rule", id="dead-quick-reply"),
    pytest.param(VALID.replace("[fallback]\ntext = \"Sorry?\"", ""), "fallback", "missing",
        id="no-fallback"),
    pytest.param(VALID + '\n[rules.again]\npayloads = ["HOURS"]\ntext = "x"\n',
        "rules.again.payloads[0]", "already a payload of rules.hours", id="duplicate-payload"),
    pytest.param(VALID + '\n[rules.lonely]\ntext = "x"\n', "rules.lonely",
        "can never be chosen", id="unreachable-rule"),
    pytest.param(VALID + '\n[rules.k]\nkeywords = ["?!"]\ntext = "x"\n', "rules.k.keywords[0]",
        "never match", id="punctuation-keyword"),
    pytest.param(VALID + '\n[rules.p]\nkeywords = ["p"]\npriority = "high"\ntext = "x"\n',
        "rules.p.priority", "integer", id="priority-not-int"),
    pytest.param(VALID + '\n[rules.e]\nkeywords = ["e"]\ntext = "   "\n', "rules.e.text",
        "empty", id="empty-text"),
    pytest.param(VALID + '\n[rules.t]\nkeywords = ["t"]\ntext = "' + "x" * 2001 + '"\n',
        "rules.t.text", "at most 2000", id="text-too-long"),
    pytest.param(
        VALID + '\n[rules.b]\nkeywords = ["b"]\ntext = "' + "x" * 641 + '"\n'
        'buttons = [{ title = "Hours", payload = "HOURS" }]\n',
        "rules.b.text", "at most 640", id="button-text-too-long"),
    pytest.param(
        VALID + '\n[rules.b]\nkeywords = ["b"]\ntext = "x"\nbuttons = ['
        + ", ".join('{ title = "Hours", payload = "HOURS" }' for _ in range(4)) + "]\n",
        "rules.b.buttons", "at most 3", id="four-buttons"),
    pytest.param(VALID + '\n[rules.b]\nkeywords = ["b"]\ntext = "x"\nbuttons = []\n',
        "rules.b.buttons", "at least one", id="no-buttons"),
    pytest.param(
        VALID + '\n[rules.b]\nkeywords = ["b"]\ntext = "x"\n'
        'buttons = [{ title = "Go", payload = "HOURS", url = "https://x.example" }]\n',
        "rules.b.buttons[0]", "exactly one", id="button-payload-and-url"),
    pytest.param(
        VALID + '\n[rules.b]\nkeywords = ["b"]\ntext = "x"\n'
        'buttons = [{ title = "Go", url = "javascript:alert(1)" }]\n',
        "rules.b.buttons[0].url", "https://", id="button-bad-url"),
    pytest.param(
        VALID + '\n[rules.h]\nkeywords = ["h"]\ntext = "x"\nhandoff = true\n'
        'quick_replies = [{ title = "Hours", payload = "HOURS" }]\n',
        "rules.h.handoff", "text only", id="handoff-with-quick-replies"),
    pytest.param(VALID + '\n[rules.h]\nkeywords = ["h"]\ntext = "x"\nhandoff = "yes"\n',
        "rules.h.handoff", "true or false", id="handoff-not-bool"),
    pytest.param(
        VALID + "\n[rules.q]\nkeywords = [\"q\"]\ntext = \"x\"\nquick_replies = ["
        + ", ".join('{ title = "Hours", payload = "HOURS" }' for _ in range(14)) + "]\n",
        "rules.q.quick_replies", "at most 13", id="fourteen-quick-replies"),
    pytest.param(VALID + "\n[extra]\nx = 1\n", "extra", "unknown key", id="unknown-top-level"),
    pytest.param('[fallback]\ntext = "x"\n', "rules", "missing", id="no-rules"),
    pytest.param('[fallback]\ntext = "x"\n[rules]\n', "rules", "at least one", id="empty-rules"),
    pytest.param('rules = 3\n[fallback]\ntext = "x"\n', "rules",
        "must be a table", id="rules-not-table"),
]  # fmt: skip


@pytest.mark.parametrize(("content", "key", "problem"), BAD)
def test_a_mistake_names_the_file_and_the_key(tmp_path, content, key, problem):
    path = tmp_path / "content.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ContentError) as raised:
        RuleBook.load(path)
    error = raised.value
    assert (error.source, error.key) == (str(path), key)
    assert problem in error.problem
    assert str(error).startswith(f"{path}: {key}: ")


def test_a_file_that_is_not_toml_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "content.toml"
    path.write_text(VALID + "\n[rules.broken\n", encoding="utf-8")
    with pytest.raises(ContentError, match=r"content\.toml: is not valid TOML .*line") as raised:
        RuleBook.load(path)
    assert raised.value.key is None


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "content.toml"
    path.write_bytes(VALID.encode("utf-16"))
    with pytest.raises(ContentError, match="UTF-8"):
        RuleBook.load(path)


def test_a_missing_file_is_a_content_error(tmp_path):
    with pytest.raises(ContentError, match="cannot be read"):
        RuleBook.load(tmp_path / "nope.toml")


# -- reloading -----------------------------------------------------------------------


class ContentFile:
    """A content file whose every write has a new, explicit modification time."""

    def __init__(self, path):
        self.path = path
        self.mtime_ns = 1_767_225_600_000_000_000

    def write(self, text):
        self.path.write_text(text, encoding="utf-8")
        self.mtime_ns += 1_000_000_000
        os.utime(self.path, ns=(self.mtime_ns, self.mtime_ns))


@pytest.fixture
def content(tmp_path):
    file = ContentFile(tmp_path / "content.toml")
    file.write(VALID)
    return file


def hours_text(book):
    return book.reply_for(asks("hours")).text


def test_an_unchanged_file_is_not_reread(content):
    rules = RuleBookFile(content.path)
    book = rules.book
    assert rules.reload_if_changed().status is ReloadStatus.UNCHANGED
    assert rules.book is book


def test_after_the_owner_edits_the_file_users_get_the_new_hours(content):
    rules = RuleBookFile(content.path)
    assert hours_text(rules.book) == "We are open 9 to 5."
    content.write(VALID.replace("9 to 5", "10 to 6"))
    result = rules.reload_if_changed()
    assert (result.status, result.error) == (ReloadStatus.RELOADED, None)
    assert hours_text(rules.book) == "We are open 10 to 6."


def test_a_broken_edit_keeps_the_old_rules_and_is_reported_once(content):
    rules = RuleBookFile(content.path)
    content.write(VALID.replace('title = "Hours"', 'title = "' + "H" * 30 + '"'))
    result = rules.reload_if_changed()
    assert result.status is ReloadStatus.FAILED
    assert result.error is not None
    assert result.error.key == "rules.hours.quick_replies[0].title"
    assert rules.last_error is result.error
    assert hours_text(rules.book) == "We are open 9 to 5."
    assert rules.reload_if_changed().status is ReloadStatus.UNCHANGED  # not reported again
    content.write(VALID.replace("9 to 5", "8 to 4"))
    assert rules.reload_if_changed().status is ReloadStatus.RELOADED
    assert rules.last_error is None
    assert hours_text(rules.book) == "We are open 8 to 4."


def test_a_deleted_file_keeps_the_old_rules_until_it_comes_back(content):
    rules = RuleBookFile(content.path)
    content.path.unlink()
    result = rules.reload_if_changed()
    assert result.status is ReloadStatus.FAILED
    assert "cannot be read" in str(result.error)
    assert hours_text(rules.book) == "We are open 9 to 5."
    assert rules.reload_if_changed().status is ReloadStatus.UNCHANGED
    content.write(VALID.replace("9 to 5", "11 to 3"))
    assert rules.reload_if_changed().status is ReloadStatus.RELOADED
    assert hours_text(rules.book) == "We are open 11 to 3."


def test_the_caller_may_pass_the_stat_it_already_has(content):
    rules = RuleBookFile(content.path)
    content.write(VALID.replace("9 to 5", "noon to midnight"))
    stat = os.stat(content.path)
    assert rules.reload_if_changed(stat).status is ReloadStatus.RELOADED
    assert rules.reload_if_changed(stat).status is ReloadStatus.UNCHANGED


def test_a_file_that_is_broken_at_start_refuses_to_start(content):
    content.write("not toml at all [")
    with pytest.raises(ContentError):
        RuleBookFile(content.path)
