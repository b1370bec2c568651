"""Inference worker processes and the dispatcher that batches frames into them.

``submit()`` is the only way in: an image (compressed bytes) and its options go to a worker process
(``common.inference.worker``), which decodes and runs the model; the result comes back with its timing. One pool
serves the edge (frames of streams) and the hub (REST images) alike.

Scheduling, per worker:
- A stream (``stream="cam-1"``) stays on one worker for its whole life (affinity), so VIDEO-mode
  tracking works and its timestamps stay monotonic; a new stream goes to the worker with the fewest
  streams. ``stream=None`` is IMAGE mode and goes to the least-loaded worker, so concurrent submitters
  (a hub batch request) spread over all workers.
- Frames for a worker gather into a batch that is sent as one message when it reaches ``BATCH_SIZE``
  frames or ``MAX_BATCH_DELAY_MS`` after its first frame, or at once when the worker is idle (holding a
  frame back from an idle worker would only add latency). Under load batches fill up and the per-frame
  IPC cost is amortised; at low load a frame goes straight through.
- A worker holds at most its current frame plus one batch: the next batch is sent while it works on
  its last frame (so it never waits for the event loop), never earlier. Everything else waits in the
  dispatcher, where it is still cheap to reorder or replace.
- Results come back one by one as the worker finishes each frame, not at the end of the batch.
- ``submit_latest`` (the edge's streams) queues a *turn*, not a frame: the frame is pulled from the
  stream's latest-frame slot when the batch is sent, so under load the frame that runs is the newest.

A worker that dies is restarted (with back-off if it keeps dying); the frames it had been sent fail
with ``worker_restarted`` and frames still waiting for it go to its replacement. Other workers, and the
streams on them, are untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack

from hgr.common import metrics
from hgr.common.config import Settings
from hgr.common.contracts import DetectionResult, Pull
from hgr.common.errors import HgrError, ImageError, ModelUnavailable
from hgr.common.inference.worker import HEADER_LEN, frame_message
from hgr.common.options import BadOptions, DetectOptions, check_model

log = logging.getLogger("hgr.pool")

START_TIMEOUT = 180.0  # seconds for a worker to import mediapipe and load the model on a loaded machine
DRAIN_TIMEOUT = 10.0


class WorkerRestarted(HgrError):
    code = "worker_restarted"


class PoolUnavailable(HgrError):
    code = "unavailable"


# Worker errors arrive as (code, message); rebuilt as their own class so callers can still
# tell an image problem (isinstance ImageError) from the rest.
_ERROR_CLASSES: dict[str, type[HgrError]] = {c.code: c for c in (*ImageError.__subclasses__(), BadOptions)
                                             if issubclass(c, HgrError)}


@dataclass(eq=False)
class _Job:
    id: int
    data: bytes
    opts: DetectOptions
    stream: str | None
    received_at: float
    future: asyncio.Future[DetectionResult | None]  # None: a submit_latest job whose stream had no frame
    pull: Pull | None = None  # submit_latest: where to fetch the frame at dispatch time
    batch: _Batch | None = None


@dataclass(eq=False)
class _Batch:
    sent_at: float
    left: int


@dataclass(eq=False)
class _Worker:
    index: int
    proc: asyncio.subprocess.Process | None = None
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    alive: bool = False  # model loaded, accepting batches
    pending: list[_Job] = field(default_factory=list)
    in_flight: dict[int, _Job] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None
    pending_since: float = 0.0  # when the oldest job in ``pending`` was queued (or the last batch left)
    streams: int = 0
    done: int = 0  # frames answered (results and errors) by this slot's processes
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    fatal: str | None = None

    @property
    def load(self) -> int:
        return len(self.pending) + len(self.in_flight)


class InferencePool:
    def __init__(self, settings: Settings, model_paths: dict[str, str], *, service: str,
                 workers: int | None = None) -> None:
        self.settings = settings
        self.model_paths = dict(model_paths)
        self.service = service
        self.size = workers or settings.resolved_workers()
        self._batch_size = settings.batch_size
        self._delay = settings.max_batch_delay_ms / 1000
        self._workers = [_Worker(i) for i in range(self.size)]
        self._affinity: dict[str, _Worker] = {}
        self._ids = itertools.count(1)
        self._supervisors: list[asyncio.Task[None]] = []
        self._started = False
        self._closing = False
        self._restarts = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = asyncio.Event()
        self._m_active = metrics.ACTIVE_REQUESTS.labels(service)
        self._m_alive = metrics.WORKERS_ALIVE.labels(service)
        self._m_restarts = metrics.WORKER_RESTARTS.labels(service)
        self._m_batch = metrics.BATCH_SIZE.labels(service)
        self._m_batch_s = metrics.BATCH_DURATION.labels(service)
        # Per model variant: (ok count, error count, inference time); a job's model is checked on entry.
        self._m_infer = {v: (metrics.INFERENCE_TOTAL.labels(service, v, "ok"),
                             metrics.INFERENCE_TOTAL.labels(service, v, "error"),
                             metrics.INFERENCE_DURATION.labels(service, v)) for v in self.model_paths}

    # --- lifecycle ---

    async def start(self) -> None:
        if self._started:
            return
        self._supervisors = [asyncio.create_task(self._supervise(w), name=f"hgr-worker-{w.index}")
                             for w in self._workers]
        waits = [asyncio.create_task(w.ready.wait()) for w in self._workers]
        try:
            done, _ = await asyncio.wait(waits, timeout=START_TIMEOUT)
        finally:
            for t in waits:
                t.cancel()
        failed = [w.fatal for w in self._workers if w.fatal] or (
            [] if len(done) == len(waits) else [f"workers not ready after {START_TIMEOUT:.0f} s"])
        if failed:
            await self._stop_workers()
            raise ModelUnavailable(failed[0])
        self._started = True
        for variant in self.model_paths:
            metrics.MODEL_LOADED.labels(self.service, variant).set(1)
        log.info("inference pool ready", extra={"workers": self.size, "service": self.service})

    async def close(self) -> None:
        """Refuse new work, let in-flight frames finish (bounded), stop and reap every worker."""
        if self._closing:
            return
        self._closing = True
        try:
            await asyncio.wait_for(self._idle.wait(), DRAIN_TIMEOUT)
        except TimeoutError:
            log.warning("inference pool closing with work still in flight")
        await self._stop_workers()
        for variant in self.model_paths:
            metrics.MODEL_LOADED.labels(self.service, variant).set(0)

    async def _stop_workers(self) -> None:
        self._closing = True
        self._stopping.set()
        for w in self._workers:
            if w.writer is not None and not w.writer.is_closing():
                try:
                    w.writer.write_eof()  # the worker answers what it has, then exits on end of stream
                except (OSError, RuntimeError):
                    pass
        if self._supervisors:
            await asyncio.wait(self._supervisors, timeout=DRAIN_TIMEOUT)
        for w in self._workers:
            await self._reap(w, grace=0)
        for task in self._supervisors:
            task.cancel()
        for w in self._workers:
            self._fail(w.pending, PoolUnavailable("the inference pool is shutting down"))
            w.pending.clear()

    @property
    def ready(self) -> bool:
        return self._started and not self._closing and any(w.alive for w in self._workers)

    def stats(self) -> dict[str, Any]:
        per_worker = [{"pid": w.proc.pid if w.proc and w.alive else None, "alive": w.alive,
                       "streams": w.streams, "done": w.done} for w in self._workers]
        return {
            "workers": self.size,
            "alive": sum(w.alive for w in self._workers),
            "restarts": self._restarts,
            "queued": sum(len(w.pending) for w in self._workers),
            "in_flight": sum(len(w.in_flight) for w in self._workers),
            "streams": len(self._affinity),
            "pids": [p["pid"] for p in per_worker],
            "models": sorted(self.model_paths),
            "per_worker": per_worker,
        }

    # --- submitting ---

    async def submit(self, data: bytes, opts: DetectOptions, *, stream: str | None = None,
                     received_at: float | None = None) -> DetectionResult:
        """Run one image through a worker. ``received_at`` is ``time.monotonic()`` at arrival (the
        queueing time in the result counts from it). Raises HgrError only."""
        check_model(opts.model, self.model_paths)
        job = _Job(next(self._ids), bytes(data), opts, stream,
                   time.monotonic() if received_at is None else received_at, self._new_future())
        result = await self._run(job)
        assert result is not None, "only a submit_latest job (it has a pull) settles with None"
        return result

    async def submit_latest(self, pull: Pull, *, stream: str) -> DetectionResult | None:
        """Take a turn for ``stream`` and fetch the frame only when the turn comes: ``pull()`` is called
        at dispatch time and returns ``(data, opts, received_at)``, or None if there is nothing to run
        any more (then this returns None). So the frame that runs is the newest one the stream has at
        that moment, not the one it had when it queued — under load a stream's frames are never stale
        by more than the pool's queueing. Raises HgrError only."""
        job = _Job(next(self._ids), b"", DetectOptions(), stream, time.monotonic(), self._new_future(), pull=pull)
        return await self._run(job)

    def _new_future(self) -> asyncio.Future[DetectionResult | None]:
        if not self._started or self._closing:
            raise PoolUnavailable("the inference pool is not running")
        return asyncio.get_running_loop().create_future()

    async def _run(self, job: _Job) -> DetectionResult | None:
        worker = self._pick(job.stream)
        self._idle.clear()
        self._m_active.inc()
        try:
            self._enqueue(worker, job)
            return await job.future
        finally:
            self._m_active.dec()

    def _pull(self, job: _Job) -> bool:
        """Fill a ``submit_latest`` job from its source; False (and the job settled) if it has nothing."""
        try:
            item = job.pull()  # type: ignore[misc]
            if item is not None:
                check_model(item[1].model, self.model_paths)
        except HgrError as exc:
            job.future.set_exception(exc)
            return False
        if item is None:
            job.future.set_result(None)
            return False
        job.data, job.opts, job.received_at = item
        job.pull = None
        return True

    def close_stream(self, stream: str) -> None:
        """Free the stream's landmarker in its worker (call when the stream ends)."""
        worker = self._affinity.pop(stream, None)
        if worker is None:
            return
        worker.streams -= 1
        if worker.alive and worker.writer is not None:
            worker.writer.write(frame_message(["close_stream", stream]))

    def _pick(self, stream: str | None) -> _Worker:
        if stream is None:
            return min(self._workers, key=lambda w: (not w.alive, w.load))
        worker = self._affinity.get(stream)
        if worker is None:
            worker = min(self._workers, key=lambda w: (w.streams, w.load))
            worker.streams += 1
            self._affinity[stream] = worker
        return worker

    def _enqueue(self, w: _Worker, job: _Job) -> None:
        if not w.pending:
            w.pending_since = time.monotonic()
        w.pending.append(job)
        self._dispatch(w)

    def _dispatch(self, w: _Worker) -> None:
        """Send ``w`` its next batch when it is due. A worker never has more than its current frame and
        one batch queued behind it: frames (and latest-frame turns) wait here, where a stream's newer
        frame can still replace them, not in the worker's pipe. A batch is due when the worker is idle,
        or — with the worker on its last frame — at BATCH_SIZE jobs or MAX_BATCH_DELAY_MS."""
        while w.alive and w.writer is not None and w.pending and len(w.in_flight) <= 1:
            waited = time.monotonic() - w.pending_since
            if w.in_flight and len(w.pending) < self._batch_size and waited < self._delay:
                if w.timer is None:
                    w.timer = asyncio.get_running_loop().call_later(self._delay - waited, self._on_timer, w)
                return
            self._send_batch(w)
        self._check_idle()

    def _on_timer(self, w: _Worker) -> None:
        w.timer = None
        self._dispatch(w)

    def _send_batch(self, w: _Worker) -> None:
        assert w.writer is not None
        if w.timer is not None:
            w.timer.cancel()
            w.timer = None
        taken, w.pending = w.pending[:self._batch_size], w.pending[self._batch_size:]
        w.pending_since = time.monotonic()
        # A submitter that gave up (its connection closed) no longer needs its frame run; a turn whose
        # stream has nothing left to send is settled without running.
        jobs = [j for j in taken if not j.future.done() and (j.pull is None or self._pull(j))]
        if not jobs:
            return
        batch = _Batch(time.monotonic(), len(jobs))
        for job in jobs:
            job.batch = batch
            w.in_flight[job.id] = job
        w.writer.write(frame_message(["batch", [
            [j.id, j.data, j.opts.num_hands, j.opts.mirrored, j.opts.model, j.stream] for j in jobs]]))
        self._m_batch.observe(len(jobs))

    # --- results ---

    def _on_result(self, w: _Worker, msg: list[Any]) -> None:
        kind, job_id, started = msg[0], msg[1], msg[2]
        job = w.in_flight.pop(job_id, None)
        if job is None:
            return
        w.done += 1
        now = time.monotonic()
        m_ok, m_error, m_seconds = self._m_infer[job.opts.model]
        if kind == "result":
            result = msg[3]
            t = result["timing"]
            # The worker's own timing (and what ran: detector, gated, hands_tracked), with the queueing before it
            # and the total counted from arrival.
            result["timing"] = {"queue_ms": round(max(0.0, started - job.received_at) * 1000, 3), **t,
                                "total_ms": round((now - job.received_at) * 1000, 3)}
            m_ok.inc()
            m_seconds.observe(t["infer_ms"] / 1000)
            if not job.future.done():
                job.future.set_result(result)
        else:
            m_error.inc()
            if not job.future.done():
                cls = _ERROR_CLASSES.get(msg[3], HgrError)
                job.future.set_exception(cls(msg[4], code=msg[3]))
        batch = job.batch
        if batch is not None:
            batch.left -= 1
            if batch.left == 0:
                self._m_batch_s.observe(now - batch.sent_at)
        self._dispatch(w)

    def _check_idle(self) -> None:
        if all(not w.pending and not w.in_flight for w in self._workers):
            self._idle.set()

    @staticmethod
    def _fail(jobs: Any, exc: HgrError) -> None:
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(exc)
                job.future.exception()  # a submitter that already left must not trigger "never retrieved"

    # --- worker supervision ---

    async def _supervise(self, w: _Worker) -> None:
        backoff = 0.5
        while not self._closing:
            began = time.monotonic()
            try:
                await self._spawn(w)
                await self._serve(w)
            except asyncio.CancelledError:
                raise
            except Exception:  # a supervisor must survive anything, to restart the worker
                log.exception("worker %d failed", w.index)
            finally:
                was_alive, w.alive = w.alive, False
                self._m_alive.set(sum(x.alive for x in self._workers))
                await self._reap(w, grace=DRAIN_TIMEOUT if self._closing else 1.0)
                lost = list(w.in_flight.values())
                w.in_flight.clear()
                self._fail(lost, WorkerRestarted("the worker processing this frame died and is being restarted"))
                self._check_idle()
            if self._closing or (w.fatal and not self._started):
                return
            self._restarts += 1
            self._m_restarts.inc()
            log.warning("worker %d exited; restarting", w.index,
                        extra={"lost_frames": len(lost), "was_alive": was_alive})
            if time.monotonic() - began < 5:
                # back off a worker that keeps dying, but wake at once if the pool is closing
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, 10.0)
            else:
                backoff = 0.5

    async def _spawn(self, w: _Worker) -> None:
        parent, child = socket.socketpair()
        try:
            env = {**os.environ, "GLOG_minloglevel": os.environ.get("GLOG_minloglevel", "2"),
                   "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
            w.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hgr.common.inference.worker", str(child.fileno()),
                pass_fds=(child.fileno(),), stdin=asyncio.subprocess.DEVNULL, env=env)
        finally:
            child.close()
        w.reader, w.writer = await asyncio.open_connection(sock=parent, limit=1 << 20)
        w.writer.write(frame_message(["init", dataclasses.asdict(self.settings), self.model_paths]))

    async def _serve(self, w: _Worker) -> None:
        assert w.reader is not None
        reader = w.reader
        while True:
            try:
                header = await reader.readexactly(HEADER_LEN)
                msg = msgpack.unpackb(await reader.readexactly(int.from_bytes(header, "big")), raw=False)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            kind = msg[0]
            if kind in ("result", "error"):
                self._on_result(w, msg)
            elif kind == "ready":
                w.alive = True
                w.fatal = None
                self._m_alive.set(sum(x.alive for x in self._workers))
                w.ready.set()
                self._dispatch(w)
            elif kind == "fatal":
                w.fatal = msg[1]
                log.error("worker %d: %s", w.index, msg[1])
                w.ready.set()  # start() stops waiting and reports it

    async def _reap(self, w: _Worker, grace: float) -> None:
        if w.writer is not None:
            w.writer.close()
            w.writer = None
        proc, w.proc = w.proc, None
        if proc is None or proc.returncode is not None:
            return
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            proc.kill()
            await proc.wait()
