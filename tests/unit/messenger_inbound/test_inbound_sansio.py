"""The inbound logic is sans-IO: no event loop, no clock, no network in these modules.

Only ``rules.py`` touches the file system (loading and reloading a content
file, which the caller asks for explicitly); everything else takes bytes,
strings and ``now`` as arguments, which is what lets the harness drive it
under a mock clock.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import essen

PURE = [
    "messenger/webhook.py",
    "messenger/_webhook_events.py",
    "messenger/dedupe.py",
    "messenger/_replies.py",
    "messenger/_rule_content.py",
    "sanitize.py",
    "pseudonym.py",
]
FORBIDDEN = {"trio", "anyio", "asyncio", "time", "socket", "httpx", "quart", "os", "pathlib", "io"}


def top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", PURE)
def test_pure_inbound_modules_do_no_io(module):
    path = Path(essen.__file__).parent / module
    assert not top_level_imports(path) & FORBIDDEN
