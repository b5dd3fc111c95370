"""Room membership (``essen.realtime._rooms.Rooms``), checked by example and
against a naive model with a hypothesis state machine."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from essen.realtime._rooms import Rooms


def test_socket_joins_its_own_room() -> None:
    rooms = Rooms()
    rooms.add("a")
    assert rooms.rooms_of("a") == {"a"}
    assert rooms.members("a") == {"a"}
    assert len(rooms) == 1
    # Own-id rooms are not reported as rooms.
    assert rooms.room_sizes() == {}


def test_join_leave_and_empty_rooms_disappear() -> None:
    rooms = Rooms()
    rooms.add("a")
    rooms.add("b")
    rooms.join("a", "r")
    rooms.join("b", "r")
    rooms.join("a", "r")  # twice is once
    assert rooms.members("r") == {"a", "b"}
    assert rooms.room_sizes() == {"r": 2}
    rooms.leave("a", "r")
    assert rooms.members("r") == {"b"}
    assert rooms.rooms_of("a") == {"a"}
    rooms.leave("b", "r")
    assert rooms.members("r") == frozenset()
    assert rooms.room_sizes() == {}


def test_leave_is_a_no_op_when_not_a_member() -> None:
    rooms = Rooms()
    rooms.add("a")
    rooms.leave("a", "nowhere")
    rooms.leave("ghost", "a")
    assert rooms.rooms_of("a") == {"a"}


def test_join_requires_a_registered_socket() -> None:
    with pytest.raises(KeyError):
        Rooms().join("ghost", "r")


def test_remove_returns_rooms_without_own() -> None:
    rooms = Rooms()
    rooms.add("a")
    rooms.add("b")
    rooms.join("a", "r1")
    rooms.join("a", "r2")
    rooms.join("b", "r2")
    assert rooms.remove("a") == {"r1", "r2"}
    assert len(rooms) == 1
    assert rooms.members("r1") == frozenset()
    assert rooms.members("r2") == {"b"}
    assert rooms.members("a") == frozenset()
    assert rooms.rooms_of("a") == frozenset()
    assert rooms.remove("a") == frozenset()


def test_targets() -> None:
    rooms = Rooms()
    for sid in "abcd":
        rooms.add(sid)
    rooms.join("a", "x")
    rooms.join("b", "x")
    rooms.join("b", "y")
    rooms.join("c", "y")
    assert rooms.targets(None) == {"a", "b", "c", "d"}
    assert rooms.targets(["x"]) == {"a", "b"}
    assert rooms.targets(["x", "y"]) == {"a", "b", "c"}
    assert rooms.targets(["x", "y"], exclude=["y"]) == {"a"}
    assert rooms.targets(None, exclude=["x"]) == {"c", "d"}
    assert rooms.targets(["nowhere"]) == set()
    assert rooms.targets([]) == set()
    # Socket ids are rooms: "to a socket" and "except a socket".
    assert rooms.targets(["d", "x"]) == {"a", "b", "d"}
    assert rooms.targets(None, exclude=["a", "nowhere"]) == {"b", "c", "d"}


def test_room_named_like_another_socket_counts() -> None:
    rooms = Rooms()
    rooms.add("a")
    rooms.add("b")
    rooms.join("b", "a")  # "a" is a's own room, but b joined it too
    assert rooms.room_sizes() == {"a": 2}


SIDS = st.sampled_from(["s1", "s2", "s3", "s4"])
ROOMS = st.sampled_from(["r1", "r2", "r3", "s1"])


class RoomsModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.rooms = Rooms()
        self.model: dict[str, set[str]] = {}

    @rule(sid=SIDS)
    def add(self, sid: str) -> None:
        if sid in self.model:
            return
        self.rooms.add(sid)
        self.model[sid] = {sid}

    @rule(sid=SIDS)
    def remove(self, sid: str) -> None:
        expected = self.model.pop(sid, set()) - {sid}
        assert self.rooms.remove(sid) == expected

    @rule(sid=SIDS, room=ROOMS)
    def join(self, sid: str, room: str) -> None:
        if sid not in self.model:
            with pytest.raises(KeyError):
                self.rooms.join(sid, room)
            return
        self.rooms.join(sid, room)
        self.model[sid].add(room)

    @rule(sid=SIDS, room=ROOMS)
    def leave(self, sid: str, room: str) -> None:
        self.rooms.leave(sid, room)
        if sid in self.model:
            self.model[sid].discard(room)

    @rule(
        to=st.one_of(st.none(), st.lists(ROOMS | SIDS, max_size=3)),
        exclude=st.lists(ROOMS, max_size=2),
    )
    def targets(self, to: list[str] | None, exclude: list[str]) -> None:
        def in_any(sid: str, names: list[str]) -> bool:
            return bool(self.model[sid] & set(names))

        expected = {
            sid
            for sid in self.model
            if (to is None or in_any(sid, to)) and not in_any(sid, exclude)
        }
        assert self.rooms.targets(to, exclude) == expected

    @invariant()
    def agrees_with_model(self) -> None:
        assert len(self.rooms) == len(self.model)
        for sid, joined in self.model.items():
            assert self.rooms.rooms_of(sid) == joined
        all_rooms = set().union(*self.model.values()) | {"r1", "r2", "r3"}
        for room in all_rooms:
            assert self.rooms.members(room) == {s for s, r in self.model.items() if room in r}


TestRoomsModel = RoomsModel.TestCase
TestRoomsModel.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
