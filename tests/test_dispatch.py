"""The pool's scheduling (common/inference/dispatch.py) as plain data: no process, no socket, no loop.

A small driver plays the pool: after every event it asks ``next_batch`` until nothing is due, exactly
as ``InferencePool._dispatch`` does, and a property test runs random event sequences through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from hgr.common.errors import HgrError
from hgr.common.inference.dispatch import Dispatcher, Job, Slot
from hgr.common.options import DetectOptions

DELAY = 0.002


@dataclass
class Ticket:
    gone: bool = False  # the submitter gave up
    outcome: str | None = None  # "none" (nothing pulled), an error code, or "sent"


@dataclass
class Frame:
    image: bytes
    opts: DetectOptions = field(default_factory=DetectOptions)
    received_at: float = 0.0
    rgb_shape: tuple[int, int] | None = None  # a compressed image


class Driver:
    """The pool's side, without the pool: jobs in, batches out, answers back."""

    def __init__(self, workers: int = 2, batch_size: int = 2) -> None:
        self.d: Dispatcher[Ticket] = Dispatcher(workers, batch_size=batch_size, max_delay=DELAY,
                                                model_paths={"full": "f.task"}, wanted=lambda t: not t.gone)
        self.now = 0.0
        self.ids = iter(range(1, 1 << 30))
        self.batches: list[tuple[int, list[int]]] = []  # (slot, job ids) in the order sent

    def up(self, *indexes: int) -> None:
        for i in indexes:
            self.d.worker_up(self.d.slots[i])
            self.drive(self.d.slots[i])

    def job(self, stream: str | None = None, *, pull: list[Frame | None] | None = None,
            ticket: Ticket | None = None) -> Job[Ticket]:
        """Queue a frame (or, with ``pull``, a turn whose source hands out that list's items one per pull)."""
        source = None if pull is None else (lambda: pull.pop(0) if pull else None)
        job = Job(next(self.ids), ticket or Ticket(), stream, self.now, b"img", pull=source)
        self.drive(self.d.enqueue(job, self.now))
        return job

    def drive(self, slot: Slot[Ticket]) -> None:
        while (due := self.d.next_batch(slot, self.now)) is not None:
            for job, error in due.settled:
                job.ticket.outcome = "none" if error is None else error.code
            for job in due.jobs:
                job.ticket.outcome = "sent"
            if due.jobs:
                self.batches.append((slot.index, [j.id for j in due.jobs]))

    def answer(self, slot: Slot[Ticket], job_id: int | None = None) -> Job[Ticket] | None:
        job = self.d.finished(slot, next(iter(slot.in_flight)) if job_id is None else job_id)
        self.drive(slot)
        return job

    def tick(self, to: float) -> None:
        """Time passes; the pool's timer fires for every slot whose deadline has come."""
        self.now = to
        for slot in self.d.slots:
            if slot.deadline is not None and slot.deadline <= to:
                self.drive(slot)


def test_a_stream_sticks_to_its_worker_and_new_streams_spread() -> None:
    r = Driver(workers=3)
    r.up(0, 1, 2)
    a = r.d.pick("a")
    assert all(r.d.pick("a") is a for _ in range(5))
    assert len({r.d.pick(s).index for s in ("a", "b", "c")}) == 3, "a new stream goes to the worker with fewest"
    assert [s.streams for s in r.d.slots] == [1, 1, 1]
    assert r.d.close_stream("b") is r.d.slots[1] and r.d.close_stream("b") is None
    assert r.d.pick("d").index == 1, "the freed place is taken first"


def test_images_go_to_the_least_loaded_live_worker() -> None:
    r = Driver(workers=3)
    r.up(0, 2)  # worker 1 is not up yet
    for _ in range(6):
        r.job()
    assert r.d.slots[1].load == 0 and r.d.slots[0].load == r.d.slots[2].load == 3


def test_an_idle_worker_gets_a_frame_at_once_and_a_busy_one_gathers_a_batch() -> None:
    r = Driver(workers=1, batch_size=3)
    r.up(0)
    first = r.job("s")
    assert r.batches == [(0, [first.id])], "an idle worker is not kept waiting"
    second = r.job("s")
    assert len(r.batches) == 1 and r.d.slots[0].deadline == DELAY, "with a frame in hand, the next ones gather"
    third, fourth = r.job("s"), r.job("s")
    assert r.batches[-1] == (0, [second.id, third.id, fourth.id]), "a full batch goes at once"
    fifth = r.job("s")
    assert r.d.slots[0].deadline is None and len(r.batches) == 2, "current frame + one batch: nothing more"
    r.tick(1.0)
    assert len(r.batches) == 2, "not even after the deadline"
    r.answer(r.d.slots[0], first.id)
    r.answer(r.d.slots[0], second.id)
    assert len(r.batches) == 2, "two frames still in hand"
    r.answer(r.d.slots[0], third.id)
    assert r.batches[-1] == (0, [fifth.id]), "on its last frame: the waiting one goes (past its deadline)"


def test_a_partial_batch_goes_at_its_deadline() -> None:
    r = Driver(workers=1, batch_size=4)
    r.up(0)
    r.job()
    r.tick(0.001)
    late = r.job()
    slot = r.d.slots[0]
    assert slot.deadline == 0.001 + DELAY
    r.tick(0.001 + DELAY / 2)
    assert len(r.batches) == 1
    r.tick(slot.deadline)
    assert r.batches[-1] == (0, [late.id])


def test_a_turn_pulls_its_frame_only_when_sent() -> None:
    r = Driver(workers=1, batch_size=1)
    r.up(0)
    r.job("cam")
    r.job("cam")  # the worker has its current frame and one behind it
    source: list[Frame | None] = [Frame(b"old")]
    turn = r.job("cam", pull=source)
    source.append(Frame(b"new"))
    assert turn.frame is None and len(source) == 2, "not pulled while the worker is full"
    r.answer(r.d.slots[0])
    assert turn.frame is not None and turn.frame.image == b"old" and turn.data == b"old"
    assert turn.ticket.outcome == "sent"
    empty = r.job("cam", pull=[])
    r.answer(r.d.slots[0])
    assert empty.ticket.outcome == "none" and empty.id not in r.d.slots[0].in_flight


def test_a_turn_whose_frame_asks_for_a_missing_model_is_settled_with_the_frame() -> None:
    r = Driver(workers=1)
    r.up(0)
    frame = Frame(b"x", DetectOptions(model="lite"))
    turn = r.job("cam", pull=[frame])
    assert turn.ticket.outcome == "model_unavailable" and turn.frame is frame


def test_a_pull_that_raises_settles_its_turn() -> None:
    r = Driver(workers=1)
    r.up(0)

    def broken() -> Frame | None:
        raise HgrError("gone", code="unavailable")

    job = Job(1, Ticket(), "cam", 0.0, pull=broken)
    r.drive(r.d.enqueue(job, 0.0))
    assert job.ticket.outcome == "unavailable" and job.frame is None and r.d.idle


def test_a_submitter_that_gave_up_is_not_sent() -> None:
    r = Driver(workers=1, batch_size=2)
    r.up(0)
    r.job()
    gone = r.job(ticket=Ticket(gone=True))
    kept = r.job()
    assert r.batches[-1] == (0, [kept.id]) and gone.ticket.outcome is None


def test_a_dead_worker_loses_what_it_was_sent_and_keeps_what_waits() -> None:
    r = Driver(workers=1, batch_size=1)
    r.up(0)
    sent = [r.job("s"), r.job("s")]
    waiting = r.job("s")
    slot = r.d.slots[0]
    assert sorted(j.id for j in r.d.worker_down(slot)) == sorted(j.id for j in sent)
    r.drive(slot)
    assert slot.pending == [waiting] and not slot.in_flight, "nothing is sent to a dead worker"
    r.up(0)
    assert r.batches[-1] == (0, [waiting.id]), "its replacement takes the waiting frame"
    assert r.d.drain() == [] and not r.d.idle


def test_drain_takes_every_unsent_job() -> None:
    r = Driver(workers=2)
    jobs = [r.job(s) for s in ("a", "b", None)]  # no worker is up: all wait
    assert sorted(j.id for j in r.d.drain()) == [j.id for j in jobs] and r.d.queued == 0


# --- random event sequences ---

EVENTS = st.lists(st.one_of(
    st.tuples(st.just("frame"), st.sampled_from(["a", "b", "c", None])),
    st.tuples(st.just("turn"), st.sampled_from(["a", "b", "c"])),
    st.tuples(st.just("answer"), st.integers(0, 2)),
    st.tuples(st.just("tick"), st.floats(0, 3 * DELAY)),
    st.tuples(st.just("down"), st.integers(0, 2)),
    st.tuples(st.just("up"), st.integers(0, 2)),
    st.tuples(st.just("close"), st.sampled_from(["a", "b", "c"])),
), max_size=80)


@settings(max_examples=300, deadline=None)
@given(EVENTS, st.integers(1, 3), st.integers(1, 4))
def test_random_traffic_keeps_the_rules(events: list[tuple[str, object]], workers: int, batch_size: int) -> None:
    r = Driver(workers, batch_size)
    jobs: list[Job[Ticket]] = []
    lost: set[int] = set()
    answered: set[int] = set()
    seen_on: dict[str, int] = {}
    for kind, arg in events:
        if kind in ("frame", "turn"):
            stream = arg if isinstance(arg, str) else None
            job = r.job(stream, pull=[Frame(b"f")] if kind == "turn" else None)
            jobs.append(job)
            if stream is not None:
                on = r.d.affinity[stream].index
                assert seen_on.setdefault(stream, on) == on, "a stream moved while open"
        elif kind == "answer" and isinstance(arg, int) and arg < workers and r.d.slots[arg].in_flight:
            done = r.answer(r.d.slots[arg])
            assert done is not None
            answered.add(done.id)
        elif kind == "tick" and isinstance(arg, float):
            r.tick(r.now + arg)
        elif kind == "down" and isinstance(arg, int) and arg < workers:
            lost |= {j.id for j in r.d.worker_down(r.d.slots[arg])}
        elif kind == "up" and isinstance(arg, int) and arg < workers:
            r.up(arg)
        elif kind == "close" and isinstance(arg, str):
            r.d.close_stream(arg)
            seen_on.pop(arg, None)
        for slot in r.d.slots:
            assert len(slot.in_flight) <= 1 + batch_size, "a worker holds its current frame and one batch at most"
            if slot.alive and slot.pending and not slot.in_flight:
                raise AssertionError("a live idle worker was left with frames waiting")
            if slot.alive and slot.pending and len(slot.in_flight) == 1:
                assert slot.deadline is not None and slot.deadline <= r.now + DELAY, "a partial batch has a deadline"
            if not slot.alive:
                assert not slot.in_flight, "nothing is in flight on a dead worker"
        assert sum(s.streams for s in r.d.slots) == len(r.d.affinity)
    # Every job is in exactly one place: waiting, in flight, answered, lost with its worker, or settled unsent.
    pending = {j.id for s in r.d.slots for j in s.pending}
    flying = {i for s in r.d.slots for i in s.in_flight}
    settled = {j.id for j in jobs if j.ticket.outcome not in (None, "sent")}
    places = [pending, flying, answered, lost, settled]
    assert sum(len(p) for p in places) == len(jobs) == len(set().union(*places))
    # Each worker got its jobs in the order they were queued (batches never reorder).
    for index in range(workers):
        sent = [i for slot, ids in r.batches if slot == index for i in ids]
        assert sent == sorted(sent)
    assert r.d.idle == (not pending and not flying)
