"""Fixtures of the browser tests: real service processes and Debian's chromium.

Everything with a process or a browser is module-scoped, so nothing of it
outlives this folder's tests (Playwright's sync API keeps an asyncio loop,
which must be gone before the Trio and asyncio tests of other folders run).

* ``template_dir``: a data folder with the admin account and the
  development secrets, made once with ``essen create-admin``; every system
  starts from a copy of it (argon2 hashing is not repeated per test).
* ``fake_graph``: the fake Graph API process, shared by every bot.
* ``shared_system`` (module): ``essen admin`` (serving ``dashboard/dist``) and
  one ``essen bot`` for the tests that do not stop anything.
* ``system_factory``: fresh systems for the tests that stop or restart a service.
* ``browser`` and ``page`` (per test): chromium from ``/usr/bin``,
  headless; Playwright never downloads a browser.  A page records when feed rows
  and card values first appear (``window.__e2e``), and fails the test at
  teardown if the page threw an uncaught exception.

Screenshots go to ``test-artifacts/e2e/`` (gitignored), together with the
services' logs and ``delays.json`` (the observed latencies).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_services import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    CHROMIUM,
    CHROMIUM_ARGS,
    DASHBOARD_DIST,
    FAKE_GRAPH,
    ROOT,
    FakeGraph,
    System,
    clone_data_dir,
    prepare_data_dir,
    start_fake_graph,
)

# Never let Playwright fetch a browser build, whatever the environment says.
os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"

ARTIFACTS = ROOT / "test-artifacts" / "e2e"

#: Records, in the page's own clock (ms since the epoch, like ``time.time()``),
#: when every feed row, every value of the watched cards, every health status
#: and every connection state first appeared (a MutationObserver: exact to the
#: DOM change, unlike polling from the test).
OBSERVER = """
(() => {
  const record = { rows: {}, cards: [], health: [], connection: [] };
  window.__e2e = record;
  const watched = ["messages-per-minute", "answered"];
  const last = {};
  const health = {};
  let connection = null;
  const scan = () => {
    const now = Date.now();
    for (const row of document.querySelectorAll('[data-testid="feed-row"]')) {
      const preview = row.querySelector(".message-preview")?.textContent ?? "";
      const key = `${row.dataset.direction}|${preview}`;
      if (!(key in record.rows)) record.rows[key] = now;
    }
    for (const id of watched) {
      const el = document.querySelector(`[data-testid="card-${id}-value"]`);
      if (!el) continue;
      const text = el.textContent;
      if (last[id] !== text) {
        last[id] = text;
        record.cards.push({ id, text, at: now });
      }
    }
    for (const row of document.querySelectorAll('[data-testid="health-row"]')) {
      const { component, status } = row.dataset;
      if (health[component] !== status) {
        health[component] = status;
        record.health.push({ component, status, at: now });
      }
    }
    const state = document.getElementById("connection-status")?.dataset.state ?? null;
    if (state !== connection) {
      connection = state;
      record.connection.push({ state, at: now });
    }
  };
  new MutationObserver(scan).observe(document, {
    subtree: true, childList: true, characterData: true, attributes: true,
    attributeFilter: ["data-status", "data-state"],
  });
})();
"""


def _browser_tests_required() -> bool:
    return os.environ.get("ESSEN_BROWSER_TESTS") == "1"


def _missing(reason: str) -> None:
    if _browser_tests_required():
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def dashboard_dist() -> Path:
    if not (DASHBOARD_DIST / "index.html").is_file():
        _missing(f"{DASHBOARD_DIST} is not built: cd dashboard && npm ci && npm run build")
    return DASHBOARD_DIST


@pytest.fixture(scope="module")
def work_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="essen-e2e-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="module")
def template_dir(work_dir: Path, artifacts: Path) -> Path:
    template = work_dir / "template"
    prepare_data_dir(template, artifacts / "logs")
    return template


@pytest.fixture(scope="module")
def fake_graph(artifacts: Path) -> Iterator[FakeGraph]:
    if not FAKE_GRAPH.is_file():
        _missing(f"{FAKE_GRAPH} is missing")
    graph = start_fake_graph(artifacts / "logs")
    yield graph
    graph.service.stop()


@pytest.fixture
def system_factory(
    work_dir: Path, template_dir: Path, fake_graph: FakeGraph, artifacts: Path, dashboard_dist: Path
) -> Iterator[Callable[[str], System]]:
    """``make(name)``: a fresh system (no processes yet); all of them stopped at teardown."""
    made: list[System] = []

    def make(name: str) -> System:
        data = work_dir / f"{name}-{len(made)}"
        clone_data_dir(template_dir, data)
        system = System(data, artifacts / "logs" / name, fake_graph.url, dashboard_dist)
        made.append(system)
        return system

    yield make
    for system in made:
        system.stop()


@pytest.fixture(scope="module")
def shared_system(
    work_dir: Path, template_dir: Path, fake_graph: FakeGraph, artifacts: Path, dashboard_dist: Path
) -> Iterator[System]:
    """An admin API with one bot (``e2e-bot``), for tests that stop nothing."""
    data = work_dir / "shared"
    clone_data_dir(template_dir, data)
    system = System(data, artifacts / "logs" / "shared", fake_graph.url, dashboard_dist)
    try:
        system.start_admin(port=0)
        system.start_bot("e2e-bot")
        yield system
    finally:
        system.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"{CHROMIUM} is missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def new_page(
    browser: Any, artifacts: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Any]]:
    """``new_page(width=1280, height=800)``: a page in its own context (own sessionStorage)."""
    contexts: list[Any] = []
    errors: list[str] = []

    def make(width: int = 1280, height: int = 800) -> Any:
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        context.add_init_script(OBSERVER)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(f"{error}"))
        return page

    yield make
    name = request.node.name
    for i, context in enumerate(contexts):
        for j, page in enumerate(context.pages):
            report = getattr(request.node, "rep_call", None)
            if report is not None and report.failed:
                page.screenshot(path=str(artifacts / f"{name}-FAILED-{i}{j}.png"), full_page=True)
        context.close()
    assert not errors, f"uncaught exceptions in the page: {errors}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


@pytest.fixture(scope="module")
def delays(artifacts: Path) -> Iterator[dict[str, Any]]:
    """Observed latencies, written to ``test-artifacts/e2e/delays.json`` at the end."""
    record: dict[str, Any] = {}
    yield record
    (artifacts / "delays.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


@pytest.fixture(scope="session")
def credentials() -> tuple[str, str]:
    return ADMIN_USER, ADMIN_PASSWORD
