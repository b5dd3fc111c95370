"""python-socketio's AsyncClient (asyncio, in a subprocess) against our server.

The scenarios run in ``pysio_client_scenarios.py`` with the venv's Python;
they check what the client observes, the test checks what the server observed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from ._app import TOKEN, InteropApp, serving
from ._peer import check_results, run_peer

pytestmark = pytest.mark.interop

HERE = Path(__file__).parent
SCENARIOS = ("server_disconnect", "auth_ok", "auth_refused", "events", "acks", "binary", "rooms")

# (serving, mode, path): "default" is python-engineio's polling-then-upgrade.
MODES = [
    pytest.param("fastpath", "default", "/socket.io/", id="fastpath-default"),
    pytest.param("fastpath", "websocket", "/api/socket.io/", id="fastpath-websocket-api-path"),
    pytest.param("fastpath", "polling", "/socket.io/", id="fastpath-polling"),
    pytest.param("asgi", "default", "/socket.io/", id="asgi-default"),
    pytest.param("asgi", "websocket", "/socket.io/", id="asgi-websocket"),
]


def server_events(app: InteropApp, user: str, event: str) -> list[list[Any]]:
    return [args for who, name, args in app.seen.events if who == user and name == event]


@pytest.mark.parametrize(("how", "mode", "path"), MODES)
async def test_python_socketio_client(how, mode, path, subtests):
    app = InteropApp()
    # The venv's interpreter (the one running pytest) has python-socketio and aiohttp.
    command = [sys.executable, str(HERE / "pysio_client_scenarios.py"), "", path, mode]
    env = {**os.environ, "INTEROP_TOKEN": TOKEN}
    with trio.fail_after(45):
        async with serving(app, how) as server:
            command[2] = server.url
            async with run_peer(
                command, cwd=HERE, name=f"python-socketio[{mode}]", env=env
            ) as peer:
                await peer.finish()
    seen = app.seen

    with subtests.test("exit status"):
        check_results(peer, SCENARIOS)

    with subtests.test("auth_ok"):
        result = peer.result_of("auth_ok")
        assert {"token": TOKEN, "user": "py-auth_ok"} in seen.auths
        assert (result["sid"], "py-auth_ok", False) in seen.connects
        if mode == "default":
            assert result["transport"] == "websocket"

    with subtests.test("auth_refused"):
        assert "wrong" in seen.refused
        assert not any(user == "py-intruder" for _, user, _ in seen.connects)

    with subtests.test("events"):
        assert server_events(app, "py-events", "ping-event") == peer.result_of("events")["payloads"]

    with subtests.test("acks"):
        assert server_events(app, "py-acks", "sum") == [[1, 2, 3.5]]
        assert [call[1:] for call in seen.calls if call[0] == "py-acks"] == [
            ("ask", [21, "why"], [{"doubled": 42, "y": "why"}]),
            ("ask-multi", [], ["one", 2, [3]]),
            ("ask-none", [], []),
        ]

    with subtests.test("binary"):
        big = bytes(i % 251 for i in range(200_000))
        assert server_events(app, "py-binary", "echo") == [
            [
                bytes([0, 1, 2, 253, 254, 255]),
                {"nested": "héllo".encode(), "list": [b"", 1, "x"]},
                big,
            ]
        ]
        assert [call[1:] for call in seen.calls if call[0] == "py-binary"] == [
            ("ask-bin", [b"\x01\x02\x03\x04"], [b"\x04\x03\x02\x01", {"len": 4}])
        ]

    with subtests.test("server_disconnect"):
        sid = peer.result_of("server_disconnect")["sid"]
        assert (sid, "server namespace disconnect") in seen.disconnects
        assert [c for c in seen.connects if c[1] == "py-kicked"] == [(sid, "py-kicked", False)]
