"""UniqueSketch (HyperLogLog): accuracy, merging, serialisation, what it keeps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from essen.metrics.unique import DEFAULT_PRECISION, FrozenSketch, UniqueSketch, user_position


def population(name: str, count: int) -> list[str]:
    """Pseudonymous-looking ids (hex strings, as the keyed hash produces)."""
    return [f"{name}{i:012x}" for i in range(count)]


def sketch_of(users: list[str]) -> UniqueSketch:
    sketch = UniqueSketch()
    for user in users:
        sketch.add(user)
    return sketch


def test_is_four_kib() -> None:
    sketch = UniqueSketch()
    assert DEFAULT_PRECISION == 12
    assert sketch.size_bytes == 4096


def test_empty_and_small_counts_are_exact_enough() -> None:
    assert UniqueSketch().estimate() == 0
    assert UniqueSketch().is_empty
    for n in (1, 2, 10, 50):
        assert sketch_of(population("small", n)).estimate() == n


def test_repeats_do_not_count() -> None:
    users = population("r", 50)
    sketch = sketch_of(users * 20)
    assert sketch.estimate() == 50


@pytest.mark.parametrize("name", ["a", "b", "c", "d", "e"])
def test_within_three_percent_at_10k(name: str) -> None:
    # Standard error at precision 12 is ~1.6 %; five independent populations
    # all have to land within 3 %.
    estimate = sketch_of(population(name, 10_000)).estimate()
    assert abs(estimate - 10_000) <= 300, estimate


def test_large_counts_stay_within_five_percent() -> None:
    estimate = sketch_of(population("big", 200_000)).estimate()
    assert abs(estimate - 200_000) <= 10_000, estimate


def test_merge_counts_the_union_once() -> None:
    # Two minutes sharing half their users, and a third instance's sketch.
    first = population("u", 6_000)
    second = population("u", 9_000)[3_000:]
    third = population("other", 1_000)
    a, b, c = sketch_of(first), sketch_of(second), sketch_of(third)
    union = UniqueSketch.union([a, b, c])
    assert abs(union.estimate() - 10_000) <= 300
    # Merging is exactly what one sketch over everything would hold.
    assert union.to_bytes() == sketch_of(first + second + third).to_bytes()
    # The inputs are untouched; merging in place agrees with union().
    assert a.to_bytes() == sketch_of(first).to_bytes()
    a.update(b, c)
    assert a.to_bytes() == union.to_bytes()


@given(
    st.lists(st.text(min_size=1, max_size=20), max_size=60),
    st.lists(st.text(min_size=1, max_size=20), max_size=60),
)
def test_merge_is_register_max(left: list[str], right: list[str]) -> None:
    a, b = sketch_of(left), sketch_of(right)
    merged = UniqueSketch.union([a, b])
    expected = bytes(map(max, a.to_bytes()[1:], b.to_bytes()[1:]))
    assert merged.to_bytes()[1:] == expected
    assert merged.is_empty == (not left and not right)
    # Commutative and idempotent.
    assert UniqueSketch.union([b, a, a]).to_bytes() == merged.to_bytes()


def test_precision_must_match() -> None:
    other = UniqueSketch(10)
    other.add("x")
    with pytest.raises(ValueError, match="precision"):
        UniqueSketch(12).update(other)


def test_serialisation_round_trip_and_validation() -> None:
    sketch = sketch_of(population("s", 500))
    data = sketch.to_bytes()
    assert len(data) == 1 + 4096
    again = UniqueSketch.from_bytes(data)
    assert again.estimate() == sketch.estimate()
    assert not again.is_empty
    assert UniqueSketch.from_bytes(UniqueSketch().to_bytes()).is_empty
    with pytest.raises(ValueError, match="length"):
        UniqueSketch.from_bytes(data[:-1])
    with pytest.raises(ValueError, match="impossible rank"):
        UniqueSketch.from_bytes(data[:1] + bytes([64]) + data[2:])
    with pytest.raises(ValueError, match="precision"):
        UniqueSketch.from_bytes(bytes([40]) + data[1:])


def test_clear_and_copy() -> None:
    sketch = sketch_of(population("c", 100))
    clone = sketch.copy()
    sketch.clear()
    assert sketch.is_empty
    assert sketch.estimate() == 0
    assert abs(clone.estimate() - 100) <= 2


def test_keeps_no_user_id() -> None:
    users = population("secret-user-", 300)
    sketch = sketch_of(users)
    blob = sketch.to_bytes()
    assert all(user.encode() not in blob for user in users)
    assert max(blob[1:]) <= 64 - 12 + 1  # only ranks
    # The position is deterministic (instances must agree to merge).
    assert user_position("abc") == user_position("abc")


# -- frozen sketches and sparse merges ---------------------------------------------


def registers(sketch: UniqueSketch) -> bytes:
    return sketch.to_bytes()[1:]


@given(
    st.lists(st.integers(min_value=0, max_value=400), max_size=300),
    st.lists(st.integers(min_value=0, max_value=400), max_size=300),
)
def test_frozen_and_sparse_merges_are_register_max(left: list[int], right: list[int]) -> None:
    """Sketches with few set registers merge register by register, others with the
    4 KiB maximum (the switch is at 128 registers); either way the result is the
    register-wise maximum, and the sketch keeps merging correctly afterwards."""
    a = sketch_of([f"u{i}" for i in left])
    b = sketch_of([f"u{i}" for i in right])
    frozen = FrozenSketch.of(user_position(f"u{i}") for i in right)
    assert frozen == b.freeze()
    assert frozen.lanes() == b.lanes()
    expected = bytes(map(max, registers(a), registers(b)))
    for other in (b, frozen):
        merged = a.copy()
        merged.update(other)
        assert registers(merged) == expected
        merged.update(sketch_of(["late-user"]))
        assert registers(merged) == bytes(map(max, expected, registers(sketch_of(["late-user"]))))
        merged.clear()
        assert registers(merged) == bytes(4096)
        assert merged.is_empty
        merged.update(other)
        assert registers(merged) == registers(b)


def test_frozen_sketch() -> None:
    users = population("f", 2_000)
    sketch = sketch_of(users)
    frozen = sketch.freeze()
    sketch.add("one more")  # the frozen copy does not change
    assert frozen.estimate() == sketch_of(users).estimate()
    assert frozen == FrozenSketch.of(user_position(u) for u in users)
    assert hash(frozen) == hash(FrozenSketch.of(user_position(u) for u in users))
    assert FrozenSketch.of([]).is_empty
    assert FrozenSketch.of([]).estimate() == 0
    with pytest.raises(ValueError, match="register update"):
        FrozenSketch.of([1 << 30])  # register 2**24 does not exist at precision 12
    with pytest.raises(ValueError, match="register update"):
        FrozenSketch.of([0])  # rank 0 is no update
    with pytest.raises(ValueError, match="impossible rank"):
        FrozenSketch(12, 200)
    with pytest.raises(ValueError, match="fit"):
        FrozenSketch(4, 1 << 200)
    with pytest.raises(ValueError, match="precision"):
        UniqueSketch(10).update(frozen)
