"""The store against a real PostgreSQL on 127.0.0.1:5432 (trust auth, user ``postgres``).

Every test gets a fresh database named ``essen_test_<run>_<n>`` and drops it
afterwards (with ``WITH (FORCE)``, so a connection left by a failing test cannot
keep it alive); a last sweep at the end of the session drops whatever this run
left.  The shared :class:`StoreContract` runs here in full, and the tests below
it show the advisory lock at work, between threads and between processes.

PostgreSQL unreachable: with ``CI=true`` the tests fail (CI starts PostgreSQL,
so its absence is a broken run, not a reason to skip); elsewhere they skip and
say how to start it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
from itertools import count
from typing import TYPE_CHECKING

import psycopg
import pytest
import trio
from psycopg import sql

from essen.errors import StoreUnavailable
from essen.store import Store, head_revision
from essen.store._migrate import PG_LOCK_KEY
from tests.unit.store.store_contract import DEADLINE, StoreContract, schema_differences

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration

#: libpq key/values of the server; ESSEN_TEST_POSTGRES overrides (e.g. another port).
SERVER = os.environ.get(
    "ESSEN_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres connect_timeout=3"
)
RUN = f"essen_test_{secrets.token_hex(4)}"
_numbers = count()


def _admin_connection() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(f"{SERVER} dbname=postgres", autocommit=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[None]:
    """PostgreSQL is reachable (or the test fails in CI / skips elsewhere)."""
    try:
        with _admin_connection() as connection:
            connection.execute("SELECT 1")
    except psycopg.OperationalError as error:
        message = f"PostgreSQL is not reachable ({SERVER}): {error}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: the store's PostgreSQL tests must run)")
        pytest.skip(f"{message}; start it (e.g. `pg_ctlcluster 15 main start`) to run these")
    yield
    # Sweep: anything this run created and a crashed test did not drop.
    with _admin_connection() as connection:
        rows = connection.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{RUN}%",)
        ).fetchall()
        for (name,) in rows:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def store_url(postgres: None) -> Iterator[str]:
    """A fresh, empty database for one test."""
    name = f"{RUN}_{next(_numbers)}"
    with _admin_connection() as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        info = psycopg.conninfo.conninfo_to_dict(SERVER)
        yield f"postgresql://{info['user']}@{info['host']}:{info['port']}/{name}"
    finally:
        with _admin_connection() as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


class TestPostgresStore(StoreContract):
    pass


async def test_migration_waits_for_the_advisory_lock(store_url: str) -> None:
    """While another session holds the migration lock, a migrator waits (here,
    past its short lock timeout, so it fails cleanly); once released it runs."""
    database = store_url.rsplit("/", 1)[1]
    with psycopg.connect(f"{SERVER} dbname={database}") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (PG_LOCK_KEY,))
        with trio.fail_after(DEADLINE), pytest.raises(StoreUnavailable, match="lock"):
            await Store.open(store_url, migration_lock_timeout=0.3)
        holder.execute("SELECT pg_advisory_unlock(%s)", (PG_LOCK_KEY,))
    with trio.fail_after(DEADLINE):
        async with await Store.open(store_url, migration_lock_timeout=0.3) as store:
            assert store.revision == head_revision()
            await store.ping()


def test_processes_starting_together_do_not_race(store_url: str) -> None:
    """Four admin processes open one empty database at the same moment."""
    script = textwrap.dedent(
        """
        import sys, trio
        from essen.store import Store

        async def main() -> None:
            print("ready", flush=True)
            sys.stdin.readline()  # the starting gun
            async with await Store.open(sys.argv[1]) as store:
                print(store.revision)

        trio.run(main)
        """
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, store_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        # Wait until everyone has imported and waits on stdin, then release
        # them together.
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline() == "ready\n"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = [process.communicate(timeout=DEADLINE * 2) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
        assert out.strip() == head_revision()  # "ready" was read already
    assert schema_differences(store_url) == []
