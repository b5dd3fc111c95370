"""The supervisor: start order, restart policies, exact backoff, restart intensity, shutdown.

Every child here is scripted (:class:`Child`): each run does what the next
step of its script says, and records when it started and how it ended, so a
test can wait for "the n-th run has started" on an event and then compare the
start times with the delays a :class:`Backoff` with the same policy and seed
computes.  Everything runs under MockClock.
"""

from __future__ import annotations

import itertools
import logging
import random
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

from essen.actors.supervisor import (
    ChildEvent,
    ChildSpec,
    Restart,
    Supervisor,
    SupervisorEscalation,
)
from essen.realtime.backoff import Backoff, BackoffPolicy

POLICY = BackoffPolicy(initial=0.1, factor=2.0, maximum=5.0, jitter=0.2)
SEED = 7


@dataclass(frozen=True)
class Step:
    """What one run of a scripted child does.

    ``action``: "forever" (ready, then run until cancelled), "crash" (ready,
    then raise after ``after`` seconds), "return" (ready, then return after
    ``after`` seconds) or "fail-early" (raise after ``after`` seconds, before
    it is ready).
    """

    action: str
    after: float = 0.0


@dataclass
class Child:
    """A child whose n-th run follows ``script[n]`` (the last step repeats)."""

    name: str
    script: list[Step]
    starts: list[float] = field(default_factory=list)
    ready: list[float] = field(default_factory=list)
    endings: list[str] = field(default_factory=list)
    journal: list[str] | None = None
    _changed: trio.Event = field(default_factory=trio.Event)

    def _note(self, what: str) -> None:
        if self.journal is not None:
            self.journal.append(f"{self.name} {what}")
        self._changed.set()
        self._changed = trio.Event()

    async def wait_runs(self, n: int) -> None:
        """Until the n-th run has started (and is ready, unless it fails early)."""
        while len(self.starts) < n:
            await self._changed.wait()
        await trio.lowlevel.checkpoint()

    async def wait_endings(self, n: int) -> None:
        while len(self.endings) < n:
            await self._changed.wait()
        await trio.lowlevel.checkpoint()

    async def __call__(self, *, task_status: trio.TaskStatus[None]) -> None:
        step = self.script[min(len(self.starts), len(self.script) - 1)]
        run = len(self.starts) + 1
        self.starts.append(trio.current_time())
        self._note("starting")
        try:
            if step.action == "fail-early":
                await trio.sleep(step.after)
                raise OSError(f"{self.name} could not start (run {run})")
            task_status.started()
            self.ready.append(trio.current_time())
            self._note("ready")
            if step.action == "forever":
                await trio.sleep_forever()
            await trio.sleep(step.after)
            if step.action == "crash":
                raise RuntimeError(f"{self.name} boom {run}")
            assert step.action == "return", step
        except trio.Cancelled:
            self.endings.append("cancelled")
            self._note("cancelled")
            raise
        except Exception:
            self.endings.append("crashed")
            self._note("crashed")
            raise
        self.endings.append("returned")
        self._note("returned")


def delays(n: int, seed: int = SEED, policy: BackoffPolicy = POLICY) -> list[float]:
    """The first n restart delays of one child whose supervisor has Random(seed)."""
    backoff = Backoff(policy, random.Random(seed))
    return [backoff.next() for _ in range(n)]


def supervisor(*specs: ChildSpec, **options: object) -> tuple[Supervisor, list[ChildEvent]]:
    events: list[ChildEvent] = []
    made = Supervisor(
        list(specs),
        backoff=POLICY,
        rng=random.Random(SEED),
        on_event=events.append,
        **options,  # type: ignore[arg-type]
    )
    return made, events


async def test_children_start_in_order_each_ready_before_the_next(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: list[str] = []
    a = Child("a", [Step("forever")], journal=journal)
    b = Child("b", [Step("forever")], journal=journal)
    c = Child("c", [Step("forever")], journal=journal)

    def slow(child: Child, ready_after: float):
        async def run(*, task_status: trio.TaskStatus[None]) -> None:
            journal.append(f"{child.name} called")
            await trio.sleep(ready_after)  # getting ready takes simulated time
            await child(task_status=task_status)

        return run

    sup, events = supervisor(
        ChildSpec("a", slow(a, 1.0)), ChildSpec("b", slow(b, 2.0)), ChildSpec("c", slow(c, 0.5))
    )
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            t0 = trio.current_time()
            await nursery.start(sup.run)
            journal.append("supervisor ready")
            ready_at = trio.current_time() - t0
            nursery.cancel_scope.cancel()
    assert journal[: 3 * 3 + 1] == [
        "a called",
        "a starting",
        "a ready",
        "b called",
        "b starting",
        "b ready",
        "c called",
        "c starting",
        "c ready",
        "supervisor ready",
    ]
    # b is not even called until a is ready, c not until b is: 1 + 2 + 0.5 s.
    assert [x.ready[0] - t0 for x in (a, b, c)] == pytest.approx([1.0, 3.0, 3.5])
    assert ready_at == pytest.approx(3.5)
    assert [(e.child, e.kind, e.restarts) for e in events] == [
        ("a", "started", 0),
        ("b", "started", 0),
        ("c", "started", 0),
    ]


async def test_child_args_are_passed_positionally(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[tuple[object, ...]] = []

    async def child(x: int, y: str, *, task_status: trio.TaskStatus[None]) -> None:
        seen.append((x, y))
        task_status.started()
        await trio.sleep_forever()

    sup, _ = supervisor(ChildSpec("args", child, args=(1, "two")))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            nursery.cancel_scope.cancel()
    assert seen == [(1, "two")]


async def test_permanent_child_restarted_after_the_exact_backoff_delay(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Each run lives 1.5 s and crashes; the fourth stays up.
    worker = Child("worker", [Step("crash", 1.5)] * 3 + [Step("forever")])
    sup, events = supervisor(ChildSpec("worker", worker), max_restarts=10, window=60.0)
    caplog.set_level(logging.ERROR, logger="essen.supervisor")
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await worker.wait_runs(4)
            nursery.cancel_scope.cancel()
    expected = delays(3)
    for n in range(3):
        crashed_at = worker.starts[n] + 1.5
        assert worker.starts[n + 1] - crashed_at == pytest.approx(expected[n], abs=1e-9)
    # The delays really differ (jittered and growing), so the comparison above means something.
    assert len(set(expected)) == 3
    assert expected[0] < expected[1] < expected[2]
    assert [(e.kind, e.error, e.restarts) for e in events] == [
        ("started", None, 0),
        ("crashed", "RuntimeError: worker boom 1", 1),
        ("started", None, 1),
        ("crashed", "RuntimeError: worker boom 2", 2),
        ("started", None, 2),
        ("crashed", "RuntimeError: worker boom 3", 3),
        ("started", None, 3),
    ]
    assert sup.restarts == {"worker": 3}
    assert worker.endings == ["crashed", "crashed", "crashed", "cancelled"]
    crash_logs = [r.getMessage() for r in caplog.records if r.name == "essen.supervisor"]
    assert crash_logs == [
        "actor worker crashed (restart 1): RuntimeError: worker boom 1",
        "actor worker crashed (restart 2): RuntimeError: worker boom 2",
        "actor worker crashed (restart 3): RuntimeError: worker boom 3",
    ]


@pytest.mark.parametrize(
    ("restart", "restarted"),
    [(Restart.PERMANENT, True), (Restart.TRANSIENT, True), (Restart.TEMPORARY, False)],
)
async def test_after_a_crash(
    restart: Restart, restarted: bool, autojump_clock: trio.testing.MockClock
) -> None:
    child = Child("c", [Step("crash", 1.0), Step("forever")])
    sibling = Child("sibling", [Step("forever")])
    sup, events = supervisor(ChildSpec("c", child, restart=restart), ChildSpec("sibling", sibling))
    with trio.fail_after(7200):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await child.wait_endings(1)
            if restarted:
                await child.wait_runs(2)
            else:
                # Nothing is to happen: an hour of simulated time proves it.
                await trio.sleep(3600)
            nursery.cancel_scope.cancel()
    kinds = [(e.child, e.kind, e.error, e.restarts) for e in events]
    if restarted:
        assert child.starts[1] - (child.starts[0] + 1.0) == pytest.approx(delays(1)[0])
        assert kinds == [
            ("c", "started", None, 0),
            ("sibling", "started", None, 0),
            ("c", "crashed", "RuntimeError: c boom 1", 1),
            ("c", "started", None, 1),
        ]
    else:
        assert len(child.starts) == 1
        assert kinds == [
            ("c", "started", None, 0),
            ("sibling", "started", None, 0),
            ("c", "crashed", "RuntimeError: c boom 1", 0),
        ]
    # Either way the sibling was never disturbed.
    assert len(sibling.starts) == 1
    assert sibling.endings == ["cancelled"]


@pytest.mark.parametrize(
    ("restart", "restarted"),
    [(Restart.PERMANENT, True), (Restart.TRANSIENT, False), (Restart.TEMPORARY, False)],
)
async def test_after_a_normal_return(
    restart: Restart, restarted: bool, autojump_clock: trio.testing.MockClock
) -> None:
    child = Child("c", [Step("return", 1.0), Step("forever")])
    sup, events = supervisor(ChildSpec("c", child, restart=restart))
    with trio.fail_after(7200):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await child.wait_endings(1)
            if restarted:
                await child.wait_runs(2)
            else:
                await trio.sleep(3600)
            nursery.cancel_scope.cancel()
    kinds = [(e.kind, e.error, e.restarts) for e in events]
    if restarted:
        # PERMANENT: even a normal return is restarted (after the backoff), and says so.
        assert child.starts[1] - (child.starts[0] + 1.0) == pytest.approx(delays(1)[0])
        assert kinds == [("started", None, 0), ("crashed", "returned", 1), ("started", None, 1)]
    else:
        assert len(child.starts) == 1
        assert kinds == [("started", None, 0), ("exited", None, 0)]
    assert sup.restarts == ({"c": 1} if restarted else {})


async def test_restart_storm_escalates(autojump_clock: trio.testing.MockClock) -> None:
    # Crashes as soon as it is ready: 4 restarts within the 10 s window, 3 allowed.
    storm = Child("storm", [Step("crash", 0.0)])
    bystander = Child("bystander", [Step("forever")])
    sup, events = supervisor(
        ChildSpec("bystander", bystander), ChildSpec("storm", storm), max_restarts=3, window=10.0
    )
    escalations: list[SupervisorEscalation] = []
    with trio.fail_after(60):
        t0 = trio.current_time()
        try:
            await sup.run()
        except* SupervisorEscalation as group:
            escalations.extend(group.exceptions)  # type: ignore[arg-type]
        escalated_at = trio.current_time() - t0
    assert [str(e) for e in escalations] == ["storm restarted 4 times in 10 s"]
    cause = escalations[0].__cause__
    while isinstance(cause, BaseExceptionGroup) and len(cause.exceptions) == 1:
        cause = cause.exceptions[0]
    assert repr(cause) == "RuntimeError('storm boom 4')"
    # Three restarts happened (after their backoff delays); the fourth crash gave up at once.
    assert len(storm.starts) == 4
    assert escalated_at == pytest.approx(sum(delays(3)))
    assert [(e.child, e.kind, e.restarts) for e in events if e.child == "storm"] == [
        ("storm", "started", 0),
        ("storm", "crashed", 1),
        ("storm", "started", 1),
        ("storm", "crashed", 2),
        ("storm", "started", 2),
        ("storm", "crashed", 3),
        ("storm", "started", 3),
        ("storm", "gave-up", 4),
    ]
    assert events[-1].error == "RuntimeError: storm boom 4"
    # Escalation takes the whole supervisor down: the healthy sibling was cancelled.
    assert bystander.endings == ["cancelled"]


async def test_escalation_leaves_run_as_supervisor_escalation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The module promises SupervisorEscalation "to the parent": a parent must be
    able to catch it with ``except SupervisorEscalation``, as it catches the
    client's ConnectionRefused (which SocketIOClient.run unwraps from its nursery)."""
    storm = Child("storm", [Step("crash", 0.0)])
    sup, _ = supervisor(ChildSpec("storm", storm), max_restarts=1, window=10.0)
    with trio.fail_after(60), pytest.raises(SupervisorEscalation, match="storm restarted 2 times"):
        await sup.run()


@pytest.mark.parametrize(
    ("lifetime", "escalates"),
    [
        # Three crashes 5.5 s (plus backoff) apart span more than the 10 s window:
        # never more than 2 in any window, so it goes on for ever.
        (5.5, False),
        # 4.5 s apart, three of them fit in 10 s: the third restart is one too many.
        (4.5, True),
    ],
)
async def test_restart_intensity_counts_only_the_window(
    lifetime: float, escalates: bool, autojump_clock: trio.testing.MockClock
) -> None:
    flaky = Child("flaky", [Step("crash", lifetime)])
    sup, events = supervisor(ChildSpec("flaky", flaky), max_restarts=2, window=10.0)
    escalated = False
    with trio.fail_after(3600):
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(sup.run)
                await flaky.wait_runs(11)  # ten restarts
                nursery.cancel_scope.cancel()
        except* SupervisorEscalation:
            escalated = True
    if escalates:
        assert escalated
        assert len(flaky.starts) == 3
        assert events[-1].kind == "gave-up"
    else:
        assert not escalated
        assert sup.restarts == {"flaky": 10}
        assert "gave-up" not in {e.kind for e in events}
        # Two crashes in a row did fit in the window (while the backoff was
        # short): only the third was far enough to push the first one out.
        crashes = [start + lifetime for start in flaky.starts[:4]]
        assert all(b - a < 10.0 for a, b in itertools.pairwise(crashes))
        assert all(c - a > 10.0 for a, c in zip(crashes, crashes[2:], strict=False))


async def test_cancelling_stops_every_child_and_is_not_a_crash(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    plain = Child("plain", [Step("forever")])
    # A child with its own nursery: cancellation reaches it as a group of Cancelled.
    inner_done: list[str] = []

    async def with_helpers(*, task_status: trio.TaskStatus[None]) -> None:
        async def helper(name: str) -> None:
            try:
                await trio.sleep_forever()
            finally:
                inner_done.append(name)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(helper, "h1")
            nursery.start_soon(helper, "h2")
            task_status.started()

    # A child that is between two runs (in its backoff sleep) when the cancel comes.
    restarting = Child("restarting", [Step("crash", 1.0)])
    policy = BackoffPolicy(initial=100.0, factor=1.0, maximum=100.0, jitter=0.0)
    events: list[ChildEvent] = []
    sup = Supervisor(
        [
            ChildSpec("plain", plain),
            ChildSpec("helpers", with_helpers),
            ChildSpec("restarting", restarting),
        ],
        backoff=policy,
        rng=random.Random(SEED),
        on_event=events.append,
    )
    caplog.set_level(logging.DEBUG, logger="essen.supervisor")
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await restarting.wait_endings(1)
            await trio.sleep(10)  # well inside the 100 s backoff
            cancelled_at = trio.current_time()
            nursery.cancel_scope.cancel()
        # run returned at once, without waiting out the backoff, and raised nothing.
        assert trio.current_time() == cancelled_at
    assert plain.endings == ["cancelled"]
    assert sorted(inner_done) == ["h1", "h2"]
    assert len(restarting.starts) == 1  # not restarted by the shutdown
    kinds = [(e.child, e.kind) for e in events]
    # The one real crash is reported; the shutdown adds nothing (no crash, no exit).
    assert kinds == [
        ("plain", "started"),
        ("helpers", "started"),
        ("restarting", "started"),
        ("restarting", "crashed"),
    ]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["actor restarting crashed (restart 1): RuntimeError: restarting boom 1"]


async def test_child_failing_before_ready_is_retried_and_the_next_waits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: list[str] = []
    # Two attempts fail while starting up (0.5 s in); the third gets ready.
    shaky = Child("shaky", [Step("fail-early", 0.5)] * 2 + [Step("forever")], journal=journal)
    after = Child("after", [Step("forever")], journal=journal)
    sup, events = supervisor(ChildSpec("shaky", shaky), ChildSpec("after", after))
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            t0 = trio.current_time()
            await nursery.start(sup.run)
            ready_at = trio.current_time() - t0
            nursery.cancel_scope.cancel()
    d = delays(2)
    assert shaky.starts[1] - (shaky.starts[0] + 0.5) == pytest.approx(d[0])
    assert shaky.starts[2] - (shaky.starts[1] + 0.5) == pytest.approx(d[1])
    assert ready_at == pytest.approx(0.5 + d[0] + 0.5 + d[1])
    # "after" waited for shaky's first successful start.
    assert journal[:7] == [
        "shaky starting",
        "shaky crashed",
        "shaky starting",
        "shaky crashed",
        "shaky starting",
        "shaky ready",
        "after starting",
    ]
    assert [(e.child, e.kind, e.error, e.restarts) for e in events] == [
        ("shaky", "crashed", "OSError: shaky could not start (run 1)", 1),
        ("shaky", "crashed", "OSError: shaky could not start (run 2)", 2),
        ("shaky", "started", None, 2),
        ("after", "started", None, 0),
    ]
