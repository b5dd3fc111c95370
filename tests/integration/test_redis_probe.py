"""The admin's Redis probe against the machine's real Redis (127.0.0.1:6379)."""

import os
import socket

import pytest
import trio
import trio.testing

from essen.admin.redis_probe import ping_redis

pytestmark = pytest.mark.integration


def redis_up() -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", 6379)) == 0


@pytest.fixture
def real_redis() -> str:
    if not redis_up():
        if os.environ.get("CI") == "true":
            pytest.fail("Redis is not running on 127.0.0.1:6379 (.ci/run should start it)")
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    return "redis://127.0.0.1:6379/0"


async def test_a_live_redis_answers(real_redis: str) -> None:
    with trio.fail_after(5):
        assert await ping_redis(real_redis) is None


async def test_an_unreachable_redis_is_reported_with_the_reason() -> None:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]  # nothing listens here once it is closed
    with trio.fail_after(5):
        problem = await ping_redis(f"redis://127.0.0.1:{port}/0")
    assert problem is not None
    assert problem.startswith("Redis unreachable")


async def test_wrong_credentials_are_reported(real_redis: str) -> None:
    with trio.fail_after(5):
        problem = await ping_redis("redis://nobody:wrong@127.0.0.1:6379/0")
    assert problem == "Redis refused the credentials"


async def test_the_admin_reports_redis_when_configured(real_redis: str, tmp_path) -> None:
    from essen.admin.ingest import ask
    from essen.admin.service import run_admin
    from essen.clock import SystemWallClock
    from essen.config import load_admin_settings
    from essen.testing import MemoryStore

    settings = load_admin_settings(essen_data_dir=tmp_path, redis_url=real_redis)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            handles = await nursery.start(lambda task_status: run_admin(
                settings, serve=False, store=MemoryStore(SystemWallClock()),
                task_status=task_status,
            ))
            while True:
                health = await ask(handles.hub.ingest, "health")
                status = {c["component"]: c["status"] for c in health["components"]}
                if "redis" in status:
                    break
                await trio.testing.wait_all_tasks_blocked()
            assert status["redis"] == "healthy"
            nursery.cancel_scope.cancel()
