"""The store on SQLite (the default backend), in a temporary folder.

The shared contract runs here in full; the tests below it cover what is
SQLite's own: the default URL, WAL mode, the migration lock, and URL parsing.
"""

from __future__ import annotations

import sqlite3

import pytest
import trio

from essen.errors import StoreError, StoreUnavailable
from essen.store import Store, default_url
from essen.store._engine import normalize_url
from tests.unit.store.store_contract import DEADLINE, StoreContract


@pytest.fixture
def store_url(tmp_path) -> str:
    return default_url(tmp_path / "data")


class TestSqliteStore(StoreContract):
    pass


def test_default_url_lives_in_the_data_dir(tmp_path) -> None:
    assert default_url(tmp_path) == f"sqlite:///{tmp_path.resolve()}/essen.db"


async def test_open_creates_the_data_dir_and_uses_wal(tmp_path) -> None:
    url = default_url(tmp_path / "fresh" / "dir")
    with trio.fail_after(DEADLINE):
        async with await Store.open(url) as store:
            assert store.backend == "sqlite"
    path = tmp_path / "fresh" / "dir" / "essen.db"
    assert path.is_file()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_migration_waits_for_the_exclusive_lock(tmp_path) -> None:
    """A migrator that cannot get the lock in time fails cleanly, then succeeds."""
    url = default_url(tmp_path)
    with trio.fail_after(DEADLINE):
        async with await Store.open(url):
            pass
    holder = sqlite3.connect(tmp_path / "essen.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with trio.fail_after(DEADLINE), pytest.raises(StoreUnavailable, match="locked"):
            await Store.open(url, migration_lock_timeout=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with trio.fail_after(DEADLINE):
        async with await Store.open(url, migration_lock_timeout=0.2) as store:
            await store.ping()


async def test_unusable_path_is_unavailable(tmp_path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with trio.fail_after(DEADLINE), pytest.raises(StoreError):
        await Store.open(f"sqlite:///{tmp_path}/file/essen.db")


async def test_unreachable_postgres_is_unavailable() -> None:
    # Port 1 on loopback: refused at once, no server needed.
    with trio.fail_after(DEADLINE), pytest.raises(StoreUnavailable):
        await Store.open("postgresql://postgres@127.0.0.1:1/essen")


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite+pysqlite"),
    ],
)
def test_urls_pin_the_shipped_drivers(url: str, driver: str) -> None:
    assert normalize_url(url).drivername == driver


@pytest.mark.parametrize(
    "url", ["mysql://u@h/db", "postgresql+psycopg2://u@h/db", "not a url", "sqlite+aiosqlite:///x"]
)
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(StoreError):
        normalize_url(url)
