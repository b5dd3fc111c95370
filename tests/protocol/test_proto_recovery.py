"""Connection state recovery store (``essen.realtime._recovery``): the log is
bounded and pruned, restore returns what a socket missed, sessions are bounded."""

from __future__ import annotations

from typing import TYPE_CHECKING

from essen.protocol.engine_server import Outgoing
from essen.realtime._recovery import LoggedPacket, RecoveryConfig, RecoveryStore, SavedSession

if TYPE_CHECKING:
    from collections.abc import Iterable

WINDOW = 60.0


def store(*, max_packets: int = 100, max_sessions: int = 100) -> RecoveryStore:
    return RecoveryStore(RecoveryConfig(WINDOW, max_packets, max_sessions))


def log(
    s: RecoveryStore,
    name: str,
    at: float,
    *,
    namespace: str = "/",
    to: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
) -> str:
    offset = s.next_offset()
    item = Outgoing.message((f'2["{name}","{offset}"]',))
    s.log(
        LoggedPacket(
            offset,
            namespace,
            frozenset(to) if to is not None else None,
            frozenset(exclude),
            item,
            at,
        )
    )
    return offset


def names(items: list[Outgoing]) -> list[str]:
    return [str(item.frames[0]).split('"')[1] for item in items]


def saved(
    pid: str = "pid1",
    sid: str = "sid1",
    *,
    namespace: str = "/",
    rooms: Iterable[str] = (),
    expires_at: float = WINDOW,
    since_seq: int = 0,
) -> SavedSession:
    return SavedSession(
        pid, sid, namespace, frozenset(rooms), {"user": 1}, expires_at, since_seq=since_seq
    )


def test_offsets_are_unique_and_increasing() -> None:
    s = store()
    offsets = [s.next_offset() for _ in range(300)]
    assert len(set(offsets)) == 300
    assert [int(o, 16) for o in offsets] == sorted(int(o, 16) for o in offsets)


def test_restore_returns_packets_after_offset() -> None:
    s = store()
    first = log(s, "a", 1)
    log(s, "b", 2)
    log(s, "c", 3)
    s.save(saved(expires_at=60), 4)
    result = s.restore("pid1", first, "/", 5)
    assert result is not None
    session, missed = result
    assert session.sid == "sid1"
    assert session.data == {"user": 1}
    assert names(missed) == ["b", "c"]


def test_restore_without_offset_resumes_from_connect_time() -> None:
    """A client that got no broadcast before dropping sends no offset: it missed
    everything logged since it connected."""
    s = store()
    log(s, "before-connect", 1)
    since = s.next_seq
    log(s, "b", 2)
    log(s, "c", 3)
    s.save(saved(since_seq=since), 4)
    result = s.restore("pid1", None, "/", 5)
    assert result is not None
    assert names(result[1]) == ["b", "c"]


def test_restore_without_offset_and_nothing_missed() -> None:
    s = store()
    log(s, "before-connect", 1)
    s.save(saved(since_seq=s.next_seq), 2)
    result = s.restore("pid1", None, "/", 3)
    assert result is not None
    assert result[1] == []


def test_restore_without_offset_fails_when_missed_packets_were_pruned() -> None:
    s = store(max_packets=2)
    since = s.next_seq
    for name in "abc":
        log(s, name, 1)
    s.save(saved(since_seq=since), 2)
    assert s.restore("pid1", None, "/", 3) is None


def test_restore_at_latest_offset_misses_nothing() -> None:
    s = store()
    log(s, "a", 1)
    last = log(s, "b", 2)
    s.save(saved(), 3)
    result = s.restore("pid1", last, "/", 3)
    assert result is not None
    assert result[1] == []


def test_restore_filters_by_rooms_exclude_and_namespace() -> None:
    s = store()
    start = log(s, "start", 0)
    log(s, "all", 1)
    log(s, "to-mine", 1, to={"mine"})
    log(s, "to-other", 1, to={"other"})
    log(s, "to-me", 1, to={"sid1"})
    log(s, "to-other-or-mine", 1, to={"other", "mine"})
    log(s, "all-except-mine", 1, exclude={"mine"})
    log(s, "all-except-me", 1, exclude={"sid1"})
    log(s, "all-except-other", 1, exclude={"other"})
    log(s, "mine-except-other", 1, to={"mine"}, exclude={"other"})
    log(s, "other-namespace", 1, namespace="/admin")
    s.save(saved(rooms={"mine"}), 2)
    result = s.restore("pid1", start, "/", 3)
    assert result is not None
    assert names(result[1]) == [
        "all",
        "to-mine",
        "to-me",
        "to-other-or-mine",
        "all-except-other",
        "mine-except-other",
    ]


def test_restore_consumes_the_session() -> None:
    s = store()
    offset = log(s, "a", 1)
    s.save(saved(), 1)
    assert s.restore("pid1", offset, "/", 2) is not None
    assert s.restore("pid1", offset, "/", 2) is None
    assert s.statistics()["saved_sessions"] == 0


def test_restore_fails_for_unknown_pid_offset_or_namespace() -> None:
    s = store()
    offset = log(s, "a", 1)
    s.save(saved(namespace="/admin"), 1)
    assert s.restore("nobody", offset, "/admin", 2) is None
    assert s.restore("pid1", "ffff", "/admin", 2) is None
    assert s.restore("pid1", "", "/admin", 2) is None
    assert s.restore("pid1", offset, "/", 2) is None
    # None of those consumed it.
    assert s.restore("pid1", offset, "/admin", 2) is not None


def test_log_is_bounded_by_max_packets() -> None:
    s = store(max_packets=3)
    offsets = [log(s, f"p{i}", 1) for i in range(5)]
    assert s.statistics()["logged_packets"] == 3
    s.save(saved(), 1)
    # The two oldest fell out: their offsets cannot be recovered from.
    assert s.restore("pid1", offsets[1], "/", 2) is None
    result = s.restore("pid1", offsets[2], "/", 2)
    assert result is not None
    assert names(result[1]) == ["p3", "p4"]


def test_log_is_pruned_by_window() -> None:
    s = store()
    old = log(s, "old", 0)
    log(s, "newer", 30)
    assert s.statistics()["logged_packets"] == 2
    # At 61 the packet logged at 0 is older than the window.
    s.save(saved(expires_at=200), 61)
    assert s.statistics()["logged_packets"] == 1
    assert s.restore("pid1", old, "/", 61) is None


def test_restore_prunes_before_looking() -> None:
    s = store()
    offset = log(s, "a", 0)
    s.save(saved(expires_at=1000), 0)
    assert s.restore("pid1", offset, "/", WINDOW + 1) is None


def test_sessions_expire() -> None:
    s = store()
    offset = log(s, "a", 10)
    s.save(saved(expires_at=20), 10)
    assert s.restore("pid1", offset, "/", 20) is None
    assert s.statistics()["saved_sessions"] == 0


def test_sessions_are_bounded() -> None:
    s = store(max_sessions=3)
    offset = log(s, "a", 1)
    for i in range(5):
        s.save(saved(f"pid{i}", f"sid{i}"), 1)
    assert s.statistics()["saved_sessions"] == 3
    assert s.restore("pid0", offset, "/", 2) is None
    assert s.restore("pid1", offset, "/", 2) is None
    for i in (2, 3, 4):
        result = s.restore(f"pid{i}", offset, "/", 2)
        assert result is not None
        assert result[0].sid == f"sid{i}"


def test_saving_again_refreshes_the_session() -> None:
    s = store(max_sessions=2)
    offset = log(s, "a", 1)
    s.save(saved("p1", "s1"), 1)
    s.save(saved("p2", "s2"), 1)
    s.save(saved("p1", "s1b"), 1)  # p1 is now the newest
    s.save(saved("p3", "s3"), 1)  # evicts p2
    assert s.restore("p2", offset, "/", 2) is None
    result = s.restore("p1", offset, "/", 2)
    assert result is not None
    assert result[0].sid == "s1b"


def test_default_config() -> None:
    config = RecoveryConfig()
    assert config.window == 120.0
    assert config.max_packets == 10_000
    assert config.max_sessions == 10_000
