"""The sans-IO rule: nothing under ``essen/protocol`` imports an I/O, clock or
framework module, directly or under ``TYPE_CHECKING``.  Checked on the source
(AST), so an import hidden in a function body counts too."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import essen.protocol

FORBIDDEN = frozenset(
    {"trio", "anyio", "quart", "quart_trio", "httpx", "hypercorn", "time", "asyncio", "socket"}
)
PACKAGE = Path(essen.protocol.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))


def package_of(path: Path) -> str:
    """The dotted package a module file belongs to (``essen.protocol``)."""
    parts = path.relative_to(PACKAGE.parent.parent).with_suffix("").parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module imported anywhere in ``path``."""
    return imports_in(path.read_text(encoding="utf-8"), package_of(path))


def imports_in(source: str, package: str) -> set[str]:
    """Absolute names of every module ``source`` (a module of ``package``) imports."""
    tree = ast.parse(source)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            # importlib.import_module("x") / __import__("x") with a literal
            if node.func.id == "__import__" and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    names.add(arg.value)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def test_the_package_has_modules() -> None:
    found = {path.name for path in MODULES}
    assert {"engineio.py", "socketio.py", "engine_server.py", "engine_client.py"} <= found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_io_imports(path: Path) -> None:
    imported = imported_modules(path)
    offending = sorted(name for name in imported if name.split(".")[0] in FORBIDDEN)
    assert offending == [], f"{path.name} imports {offending}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_imports_of_the_io_layer(path: Path) -> None:
    imported = imported_modules(path)
    essen_imports = {name for name in imported if name.split(".")[0] == "essen"}
    allowed_roots = ("essen.protocol", "essen.errors")
    offending = sorted(
        name
        for name in essen_imports
        if not any(name == root or name.startswith(root + ".") for root in allowed_roots)
    )
    assert offending == [], f"{path.name} imports {offending}"


def test_the_walker_sees_imports() -> None:
    """Guard the guard: the walker finds every form of import."""
    source = PACKAGE / "engine_server.py"
    imported = imported_modules(source)
    assert "json" in imported
    assert "essen.protocol.engineio" in imported
    assert "essen.errors.RemoteProtocolError" in imported


def test_the_walker_resolves_forms() -> None:
    code = (
        "import time\n"
        "from socket import socket\n"
        "def f():\n    import trio.lowlevel\n"
        "from .engineio import Packet\n"
        "from .. import errors\n"
        "__import__('asyncio')\n"
        "importlib.import_module('anyio')\n"
    )
    names = imports_in(code, "essen.protocol")
    for name in (
        "time",
        "socket",
        "trio.lowlevel",
        "essen.protocol.engineio",
        "essen.errors",
        "asyncio",
        "anyio",
    ):
        assert name in names


def test_importing_the_package_loads_no_io_library() -> None:
    """The same rule at run time, in a fresh interpreter (stdlib ``time`` is loaded by
    the interpreter itself, so only the third-party libraries are checked here)."""
    modules = ", ".join(
        f"essen.protocol.{path.stem}" for path in MODULES if path.stem != "__init__"
    )
    code = f"import sys\nimport {modules}\nprint('\\n'.join(sorted(sys.modules)))\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(result.stdout.split())
    third_party = FORBIDDEN - {"time", "asyncio", "socket"}
    offending = sorted(
        name
        for name in loaded
        if name.split(".")[0] in third_party or name.startswith("essen.realtime")
    )
    assert offending == []
