"""Which worker runs a frame, and when: the pool's scheduling as plain data, with no I/O and no clock.

The pool (``common.inference.pool``) owns the futures, the sockets and the timer; it tells a
``Dispatcher`` what happened (a job queued, a worker answered, came up or died, the time now) and
does what it is told back (send these jobs as one batch, settle those, ask again at this deadline).

Scheduling, per worker:
- A stream (``stream="cam-1"``) stays on one worker for its whole life (affinity), so VIDEO-mode
  tracking works and its timestamps stay monotonic; a new stream goes to the worker with the fewest
  streams. ``stream=None`` is IMAGE mode and goes to the least-loaded live worker, so concurrent
  submitters (a hub batch request) spread over all workers.
- Jobs for a worker gather into a batch that is sent as one message when it reaches ``batch_size``
  jobs or ``max_delay`` seconds after its first job, or at once when the worker is idle (holding a
  frame back from an idle worker would only add latency). Under load batches fill up and the per-frame
  IPC cost is amortised; at low load a frame goes straight through.
- A worker holds at most its current frame plus one batch: the next batch is sent while it works on
  its last frame (so it never waits for the event loop), never earlier. Everything else waits here,
  where it is still cheap to reorder or replace.
- A *turn* (``Job.pull`` set: the edge's latest-frame-wins streams) carries no frame until its batch is
  sent: then ``pull()`` is called and returns the stream's newest frame, or None (the turn is settled
  without running). So under load the frame that runs is the newest, not the one there was at queueing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from hgr.common.contracts import PulledFrame
from hgr.common.errors import HgrError
from hgr.common.options import DetectOptions, check_model

T = TypeVar("T")  # the caller's handle on a job (the pool's: its future)


@dataclass(eq=False, slots=True)
class Batch:
    """Jobs sent together; ``left`` counts down as their answers arrive."""
    sent_at: float
    left: int


@dataclass(eq=False, slots=True)
class Job(Generic[T]):
    id: int
    ticket: T
    stream: str | None
    received_at: float  # time.monotonic() at arrival; a turn's is replaced by its frame's when pulled
    data: bytes | memoryview = b""  # a pulled camera frame's pixels: a view of its array
    opts: DetectOptions = field(default_factory=DetectOptions)
    rgb_shape: tuple[int, int] | None = None  # (height, width): ``data`` is packed RGB pixels (a pulled camera frame)
    pull: Callable[[], PulledFrame | None] | None = None  # a turn, until its frame is pulled
    frame: PulledFrame | None = None  # what a turn's pull returned
    batch: Batch | None = None


@dataclass(eq=False, slots=True)
class Slot(Generic[T]):
    """One worker as the dispatcher sees it (its process comes and goes; the slot stays)."""
    index: int
    alive: bool = False  # model loaded, accepting batches
    pending: list[Job[T]] = field(default_factory=list)
    in_flight: dict[int, Job[T]] = field(default_factory=dict)
    pending_since: float = 0.0  # when the oldest pending job was queued (or the last batch left)
    deadline: float | None = None  # when to ask ``next_batch`` again if nothing else happens first
    streams: int = 0
    done: int = 0  # jobs answered (results and errors) by this slot's processes

    @property
    def load(self) -> int:
        return len(self.pending) + len(self.in_flight)


@dataclass(slots=True)
class Due(Generic[T]):
    """What ``next_batch`` hands back: ``jobs`` to send now as one batch (already counted in flight;
    may be empty), and ``settled``: turns that ended without running — nothing to pull (None) or the
    error their frame was refused with."""
    jobs: list[Job[T]]
    settled: list[tuple[Job[T], HgrError | None]]


class Dispatcher(Generic[T]):
    def __init__(self, workers: int, *, batch_size: int, max_delay: float, model_paths: dict[str, str],
                 wanted: Callable[[T], bool] = lambda _ticket: True) -> None:
        """``wanted(ticket)`` is asked as a job is sent: False (its submitter gave up) drops it unsent."""
        self.slots: list[Slot[T]] = [Slot(i) for i in range(workers)]
        self.batch_size = batch_size
        self.max_delay = max_delay
        self.model_paths = model_paths
        self.wanted = wanted
        self.affinity: dict[str, Slot[T]] = {}

    # --- queueing ---

    def pick(self, stream: str | None) -> Slot[T]:
        if stream is None:
            return min(self.slots, key=lambda s: (not s.alive, s.load))
        slot = self.affinity.get(stream)
        if slot is None:
            slot = min(self.slots, key=lambda s: (s.streams, s.load))
            slot.streams += 1
            self.affinity[stream] = slot
        return slot

    def enqueue(self, job: Job[T], now: float) -> Slot[T]:
        """Queue ``job`` on its worker; the caller then asks ``next_batch`` for that worker."""
        slot = self.pick(job.stream)
        if not slot.pending:
            slot.pending_since = now
        slot.pending.append(job)
        return slot

    def close_stream(self, stream: str) -> Slot[T] | None:
        """Forget the stream's affinity; the worker it was on (to tell it), or None if unknown."""
        slot = self.affinity.pop(stream, None)
        if slot is not None:
            slot.streams -= 1
        return slot

    # --- sending ---

    def next_batch(self, slot: Slot[T], now: float) -> Due[T] | None:
        """The batch ``slot`` should be sent now, or None when none is due. A batch is due when the
        worker is live and idle, or — with the worker on its last frame — at ``batch_size`` jobs or
        ``max_delay`` after the first. When one will be due later, ``slot.deadline`` says when to ask again."""
        slot.deadline = None
        if not slot.alive or not slot.pending or len(slot.in_flight) > 1:
            return None
        waited = now - slot.pending_since
        if slot.in_flight and len(slot.pending) < self.batch_size and waited < self.max_delay:
            slot.deadline = slot.pending_since + self.max_delay
            return None
        taken, slot.pending = slot.pending[:self.batch_size], slot.pending[self.batch_size:]
        slot.pending_since = now
        due: Due[T] = Due([], [])
        for job in taken:
            if self.wanted(job.ticket) and (job.pull is None or self._pull(job, due.settled)):
                due.jobs.append(job)
        if due.jobs:
            batch = Batch(now, len(due.jobs))
            for job in due.jobs:
                job.batch = batch
                slot.in_flight[job.id] = job
        return due

    def _pull(self, job: Job[T], settled: list[tuple[Job[T], HgrError | None]]) -> bool:
        """Fill a turn with its stream's newest frame; False (and the turn settled) if there is none
        or it cannot run."""
        pull, job.pull = job.pull, None
        assert pull is not None
        try:
            frame = job.frame = pull()
            if frame is not None:
                check_model(frame.opts.model, self.model_paths)
        except HgrError as exc:
            settled.append((job, exc))
            return False
        if frame is None:
            settled.append((job, None))
            return False
        job.data, job.rgb_shape, job.opts, job.received_at = frame.image, frame.rgb_shape, frame.opts, frame.received_at
        return True

    # --- answers and workers ---

    def finished(self, slot: Slot[T], job_id: int) -> Job[T] | None:
        """A job's answer arrived: the job (None if unknown: it was failed when its worker died).
        ``job.batch.left`` reaching 0 means its whole batch is answered."""
        job = slot.in_flight.pop(job_id, None)
        if job is not None:
            slot.done += 1
            if job.batch is not None:
                job.batch.left -= 1
        return job

    def worker_up(self, slot: Slot[T]) -> None:
        slot.alive = True

    def worker_down(self, slot: Slot[T]) -> list[Job[T]]:
        """The worker died: the jobs it had been sent are lost (the caller fails them); the jobs still
        pending stay for its replacement."""
        slot.alive = False
        lost = list(slot.in_flight.values())
        slot.in_flight.clear()
        return lost

    def drain(self) -> list[Job[T]]:
        """Every job not yet sent, removed (the pool is shutting down)."""
        jobs = [job for slot in self.slots for job in slot.pending]
        for slot in self.slots:
            slot.pending.clear()
            slot.deadline = None
        return jobs

    # --- accounting ---

    @property
    def idle(self) -> bool:
        return all(not s.pending and not s.in_flight for s in self.slots)

    @property
    def queued(self) -> int:
        return sum(len(s.pending) for s in self.slots)

    @property
    def in_flight(self) -> int:
        return sum(len(s.in_flight) for s in self.slots)
