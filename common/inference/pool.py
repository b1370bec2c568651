"""The inference pool: images in, results out, through worker processes; the glue between three parts.

``submit()`` runs an image (compressed bytes) and its options in a worker process
(``common.inference.worker``), which decodes and runs the model; the result comes back with its timing.
``submit_latest()`` takes a turn for a stream and pulls the stream's newest frame only when the turn
comes, returning that frame with its result (``contracts.Ran``); a pulled frame may be packed RGB pixels
(``rgb_shape``: a camera frame the edge decoded), which the worker runs without decoding. ``submit()`` takes
compressed images only. One pool serves the edge (frames of
streams) and the hub (REST images) alike.

- *Which worker, and when* — stream affinity, batching, turns, load — is ``common.inference.dispatch``
  (pure; read its docstring for the scheduling rules).
- *The processes* — spawn, ready handshake, restart on death, reap — are ``common.inference.supervisor``.
- *The messages* between them are ``common.inference.messages``.

This module holds the asyncio side: a future per job, the batch deadline as a loop timer, the
result's timing and the metrics. A worker that dies is restarted; the frames it had been sent fail
with ``worker_restarted`` and frames still waiting for it go to its replacement. Other workers, and
the streams on them, are untouched.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
from typing import Any, cast

from hgr.common import metrics
from hgr.common.config import Settings
from hgr.common.contracts import DetectionResult, F, Pull, Ran
from hgr.common.errors import HgrError, ImageError
from hgr.common.inference import messages as m
from hgr.common.inference.dispatch import Dispatcher, Job, Slot
from hgr.common.inference.supervisor import DRAIN_TIMEOUT, Supervisor
from hgr.common.options import BadOptions, DetectOptions, check_model

log = logging.getLogger("hgr.pool")

_Future = asyncio.Future[DetectionResult | None]  # None: a turn whose stream had no frame


class WorkerRestarted(HgrError):
    code = "worker_restarted"


class PoolUnavailable(HgrError):
    code = "unavailable"


# Worker errors arrive as (code, message); rebuilt as their own class so callers can still
# tell an image problem (isinstance ImageError) from the rest.
_ERROR_CLASSES: dict[str, type[HgrError]] = {c.code: c for c in (*ImageError.__subclasses__(), BadOptions)
                                             if issubclass(c, HgrError)}


class InferencePool:
    def __init__(self, settings: Settings, model_paths: dict[str, str], *, service: str,
                 workers: int | None = None) -> None:
        self.settings = settings
        self.model_paths = dict(model_paths)
        self.service = service
        self.size = workers or settings.resolved_workers()
        self._d: Dispatcher[_Future] = Dispatcher(
            self.size, batch_size=settings.batch_size, max_delay=settings.max_batch_delay_ms / 1000,
            model_paths=self.model_paths, wanted=lambda future: not future.done())
        self._procs = Supervisor(self.size, m.Init(dataclasses.asdict(settings), self.model_paths),
                                 service=service, on_ready=self._worker_ready,
                                 on_variant=lambda index, msg: self._variant_ready(index, msg.inference),
                                 on_answer=self._on_answer, on_exit=self._worker_exit)
        self._timers: list[tuple[float, asyncio.TimerHandle] | None] = [None] * self.size
        # What runs each live worker's hand models, a model variant each: the default's (its Ready), then each other
        # variant's as the worker makes it (a VariantReady, on the variant's first frame).
        self._inference: list[list[m.Inference]] = [[] for _ in range(self.size)]
        self._inference_series: set[tuple[str, str]] = set()  # (runtime, precision) of this pool's series
        self._ids = itertools.count(1)
        self._started = False
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._m_active = metrics.ACTIVE_REQUESTS.labels(service)
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
        try:
            await self._procs.start()
        except HgrError:
            self._closing = True
            self._shut_out()
            raise
        self._started = True
        for variant in self.model_paths:
            metrics.MODEL_LOADED.labels(self.service, variant).set(1)
        log.info("inference pool ready", extra={"workers": self.size, "service": self.service})

    async def close(self) -> None:
        """Refuse new work, let in-flight frames finish (bounded), stop and reap every worker."""
        if self._closing:
            return
        self._closing = True
        self._procs.wind_down()
        try:
            await asyncio.wait_for(self._idle.wait(), DRAIN_TIMEOUT)
        except TimeoutError:
            log.warning("inference pool closing with work still in flight")
        await self._procs.stop()
        self._shut_out()
        for variant in self.model_paths:
            metrics.MODEL_LOADED.labels(self.service, variant).set(0)

    def _shut_out(self) -> None:
        """Fail what never reached a worker, and stop the timers."""
        for i, armed in enumerate(self._timers):
            if armed is not None:
                armed[1].cancel()
                self._timers[i] = None
        self._fail(self._d.drain(), PoolUnavailable("the inference pool is shutting down"))

    @property
    def ready(self) -> bool:
        return self._started and not self._closing and self._procs.alive_count > 0

    def stats(self) -> dict[str, Any]:
        per_worker = [{"pid": self._procs.pid(s.index), "alive": s.alive, "streams": s.streams, "done": s.done}
                      for s in self._d.slots]
        return {
            "workers": self.size,
            "alive": self._procs.alive_count,
            "restarts": self._procs.restarts,
            "queued": self._d.queued,
            "in_flight": self._d.in_flight,
            "streams": len(self._d.affinity),
            "pids": [p["pid"] for p in per_worker],
            "models": sorted(self.model_paths),
            "per_worker": per_worker,
            "inference": self.inference(),
        }

    def inference(self) -> dict[str, Any]:
        """What runs the hand models, over the live workers and the model variants each has made: what was asked,
        what runs (workers by "runtime/precision") and each check's fallback reason, named by its variant
        (docs/accuracy.md "Lower precision")."""
        said = [i for made in self._inference for i in made]
        return {"asked": said[0].asked if said else None,
                "running": {f"{runtime}/{precision}": n for (runtime, precision), n in self._running().items()},
                "fallbacks": [f"{i.variant}: {i.fallback}" for i in said if i.fallback]}

    def _running(self) -> dict[tuple[str, str], int]:
        """Live workers by the (runtime, precision) they run, a worker once per kind whatever its variants."""
        running: dict[tuple[str, str], int] = {}
        for made in self._inference:
            for kind in dict.fromkeys((i.runtime, i.precision) for i in made):
                running[kind] = running.get(kind, 0) + 1
        return running

    def _count_inference(self) -> None:
        running = self._running()
        for gone in self._inference_series - running.keys():  # a kind no live worker runs now
            metrics.INFERENCE_WORKERS.remove(self.service, *gone)
        for (runtime, precision), workers in running.items():
            metrics.INFERENCE_WORKERS.labels(self.service, runtime, precision).set(workers)
        self._inference_series = set(running)
        metrics.INFERENCE_FALLBACK.labels(self.service).set(sum(any(i.fallback for i in made)
                                                                for made in self._inference))

    # --- submitting ---

    async def submit(self, data: bytes, opts: DetectOptions, *, stream: str | None = None,
                     received_at: float | None = None) -> DetectionResult:
        """Run one image through a worker. ``received_at`` is ``time.monotonic()`` at arrival (the
        queueing time in the result counts from it). Raises HgrError only."""
        check_model(opts.model, self.model_paths)
        job = Job(next(self._ids), self._new_future(), stream,
                  time.monotonic() if received_at is None else received_at, bytes(data), opts)
        result = await self._run(job)
        assert result is not None, "only a turn (it has a pull) settles with None"
        return result

    async def submit_latest(self, pull: Pull[F], *, stream: str) -> Ran[F] | None:
        """Take a turn for ``stream`` and fetch the frame only when the turn comes: ``pull()`` is called
        at dispatch time and returns the stream's newest frame, or None if there is nothing to run any
        more (then this returns None). So the frame that runs is the newest one the stream has at that
        moment, not the one it had when it queued — under load a stream's frames are never stale by
        more than the pool's queueing. The frame comes back with its result, or with the error it
        failed with; HgrError is raised only when no frame was taken."""
        job: Job[_Future] = Job(next(self._ids), self._new_future(), stream, time.monotonic(), pull=pull)
        try:
            result = await self._run(job)
        except HgrError as exc:
            if job.frame is None:
                raise
            return Ran(cast(F, job.frame), exc)
        if result is None:
            return None
        return Ran(cast(F, job.frame), result)

    def _new_future(self) -> _Future:
        if not self._started or self._closing:
            raise PoolUnavailable("the inference pool is not running")
        return asyncio.get_running_loop().create_future()

    async def _run(self, job: Job[_Future]) -> DetectionResult | None:
        slot = self._d.enqueue(job, time.monotonic())
        self._idle.clear()
        self._m_active.inc()
        try:
            self._dispatch(slot)
            return await job.ticket
        finally:
            self._m_active.dec()

    def close_stream(self, stream: str) -> None:
        """Free the stream's landmarker in its worker (call when the stream ends)."""
        slot = self._d.close_stream(stream)
        if slot is not None:
            self._procs.send(slot.index, m.frame(m.CloseStream(stream)))

    # --- the dispatcher's decisions, carried out ---

    def _dispatch(self, slot: Slot[_Future]) -> None:
        """Send ``slot`` every batch that is due now, and keep its timer on the dispatcher's deadline."""
        now = time.monotonic()
        while (due := self._d.next_batch(slot, now)) is not None:
            for job, error in due.settled:
                if error is None:
                    job.ticket.set_result(None)
                else:
                    job.ticket.set_exception(error)
            if due.jobs:
                self._procs.send(slot.index, m.frame(m.Batch([
                    m.Task(j.id, memoryview(j.data), j.opts.num_hands, j.opts.mirrored, j.opts.model, j.stream,
                           j.rgb_shape) for j in due.jobs])))
                self._m_batch.observe(len(due.jobs))
        armed = self._timers[slot.index]
        if armed is not None and armed[0] != slot.deadline:
            armed[1].cancel()
            armed = self._timers[slot.index] = None
        if armed is None and slot.deadline is not None:
            self._timers[slot.index] = (slot.deadline, asyncio.get_running_loop().call_later(
                max(0.0, slot.deadline - now), self._on_timer, slot))
        if self._d.idle:
            self._idle.set()

    def _on_timer(self, slot: Slot[_Future]) -> None:
        self._timers[slot.index] = None
        self._dispatch(slot)

    # --- what the workers say ---

    def _worker_ready(self, index: int, msg: m.Ready) -> None:
        self._inference[index] = []
        self._variant_ready(index, msg.inference)
        slot = self._d.slots[index]
        self._d.worker_up(slot)
        self._dispatch(slot)

    def _variant_ready(self, index: int, inference: m.Inference | None) -> None:
        """Worker ``index`` made a model variant's pipeline: ``inference`` says what runs it (None: MediaPipe)."""
        if inference is not None:
            self._inference[index].append(inference)
            if inference.fallback:
                log.error("worker %d runs %s/%s for %s, not %s: %s", index, inference.runtime, inference.precision,
                          inference.variant, inference.asked, inference.fallback)
        self._count_inference()

    def _worker_exit(self, index: int, was_alive: bool) -> None:
        self._inference[index] = []
        self._count_inference()
        lost = self._d.worker_down(self._d.slots[index])
        self._fail(lost, WorkerRestarted("the worker processing this frame died and is being restarted"))
        if lost:
            log.warning("worker %d lost %d frames", index, len(lost), extra={"was_alive": was_alive})
        if self._d.idle:
            self._idle.set()

    def _on_answer(self, index: int, msg: m.Result | m.Error) -> None:
        slot = self._d.slots[index]
        job = self._d.finished(slot, msg.id)
        if job is None:
            return
        now = time.monotonic()
        m_ok, m_error, m_seconds = self._m_infer[job.opts.model]
        future = job.ticket
        if isinstance(msg, m.Result):
            result, t = msg.result, msg.result["timing"]
            # The worker's own timing (and what ran: detector, gated, hands_tracked), with the queueing before it
            # and the total counted from arrival.
            result["timing"] = {"queue_ms": round(max(0.0, msg.started - job.received_at) * 1000, 3), **t,
                                "total_ms": round((now - job.received_at) * 1000, 3)}
            m_ok.inc()
            m_seconds.observe(t["infer_ms"] / 1000)
            if not future.done():
                future.set_result(cast(DetectionResult, result))
        else:
            m_error.inc()
            if not future.done():
                future.set_exception(_ERROR_CLASSES.get(msg.code, HgrError)(msg.message, code=msg.code))
        if job.batch is not None and job.batch.left == 0:
            self._m_batch_s.observe(now - job.batch.sent_at)
        self._dispatch(slot)

    @staticmethod
    def _fail(jobs: list[Job[_Future]], exc: HgrError) -> None:
        for job in jobs:
            if not job.ticket.done():
                job.ticket.set_exception(exc)
                job.ticket.exception()  # a submitter that already left must not trigger "never retrieved"
