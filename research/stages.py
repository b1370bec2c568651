"""Where a stream frame's CPU time goes, stage by stage, on the camera bench's clips (issue 24).

    HGR_MODEL_PATH=../shared/models/hand_landmarker.task nice -n 19 \\
        python -m research.stages --photos ../shared/data/hands --frames 960 [--out stages.json]

The clips are ``hgr bench --sections camera``'s (``loadtest/camera.make_clips``: the same ``--camera-mix``,
``--seed``, ``--scenes``, ``--clip-hold`` and sensor options, with the same defaults; the section's other
options are accepted and ignored). ``--frames`` frames in all, spread evenly over the clips: each clip's
first frames, in order (looping if it is shorter).

**In process** (one process, one thread): the worker's own stream path, ``StreamPipelines.detect_bytes``
(``common.inference.stream_pipeline``), one stream per clip, the clips served in turn frame by frame as a
worker serves its streams, each frame stamped at its clip's frame rate (``now_ms``) so the motion gate,
tracking and the detector's schedule behave as served at 30 fps. For the run only, the real functions are
wrapped where the stream path looks them up (module and class attributes; removed afterwards), and each
wrapper adds its call's CPU time (``time.process_time``: this process, all threads) to its stage, less
any wrapped call inside it:

- ``decode``: ``decode_image`` (header checks, libjpeg-turbo);
- ``gate``: the motion gate and schedule of ``common.inference.stream_state`` (``thumbnail``, ``plan``,
  ``moved_outside``, ``should_detect``, ``advance``);
- ``crop``: the palm and landmark inputs' warps (``hands.crop.Cropper.__call__``);
- ``palm``: ``HandPipeline.palms`` less its crop: the palm model's invoke, the anchors' decoding,
  weighted NMS and the ROIs;
- ``landmarks``: ``HandPipeline.landmarks`` less its crop: the landmark model's invoke, the outputs'
  projection and the next frame's ROI;
- ``geometry``: ``hand_to_dict`` (finger states, count, gesture, rounding) and ``sort_hands``;
- ``other``: the frame's total less all of the above (the pipeline's own glue, duplicate hands,
  ``make_result``, and the wrappers' own few microseconds).

The two models' ``invoke`` (LiteRT's ``Interpreter`` or, with ``INFERENCE_RUNTIME``/``INFERENCE_PRECISION``
choosing OpenVINO, ``OpenVinoModel``) are also timed on their own (inside ``palm`` and ``landmarks``):
what a faster model format could shorten. Frames are split by kind, as their ``timing`` says: the palm
detector ran (``detector``), only tracked hands' landmarks ran (``tracked``), nothing ran (``gated``).

**IPC**: a real ``InferencePool`` with one worker process, the same frames sent one at a time as the
clips' streams (``submit`` with the stream's id, each awaited: no queueing behind other frames), the round
trip measured by the caller less the worker's own ``decode_ms + infer_ms`` from the result's ``timing``:
what the pool, the messages, the socket and both event loops add per frame. Also the caller's and the
worker's CPU per frame.

A table on stderr, JSON on stdout (``--out`` also writes it). Shares are what this measures; milliseconds
drift with the machine (run it under ``nice -n 19`` on a shared one).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ai_edge_litert.interpreter import Interpreter

from hgr.common.config import Settings, load_settings
from hgr.common.inference import stream_pipeline
from hgr.common.inference.hands import crop
from hgr.common.inference.hands.openvino_models import OpenVinoModel
from hgr.common.inference.hands.pipeline import HandPipeline
from hgr.common.inference.images import ImageLimits, decode_image
from hgr.common.inference.model import model_paths
from hgr.common.inference.pool import InferencePool
from hgr.common.inference.stream_pipeline import StreamPipelines
from hgr.common.options import DetectOptions, default_options
from hgr.common.percentiles import percentiles
from hgr.loadtest import camera, procs
from hgr.loadtest import clips as camclips
from research.paths import DEFAULT_PHOTOS

STAGES = ("decode", "gate", "crop", "palm", "landmarks", "geometry", "other")
KINDS = ("detector", "tracked", "gated")
MODELS = ("palm", "landmarks")  # the stages whose model invoke is timed on its own
PER_CALL = ("crop", "palm", "landmarks")  # one call per model input: their time per call means something

# (owner, attribute, stage): where the stream path looks each function up when it calls it.
PROBES: tuple[tuple[Any, str, str], ...] = (
    (stream_pipeline, "decode_image", "decode"),
    (stream_pipeline, "thumbnail", "gate"),
    (stream_pipeline, "plan", "gate"),
    (stream_pipeline, "moved_outside", "gate"),
    (stream_pipeline, "should_detect", "gate"),
    (stream_pipeline, "advance", "gate"),
    (crop.Cropper, "__call__", "crop"),
    (HandPipeline, "palms", "palm"),
    (HandPipeline, "landmarks", "landmarks"),
    (stream_pipeline, "hand_to_dict", "geometry"),
    (stream_pipeline, "sort_hands", "geometry"),
)
INVOKES = ((Interpreter, "invoke"), (OpenVinoModel, "invoke"))  # whichever runtime serves


@dataclass
class Profiler:
    """Per-stage CPU time of the current frame. A wrapped call's time goes to its stage less the wrapped calls
    inside it (a crop inside ``palms`` is crop, not palm); ``invoke`` is noted apart, under its caller's stage."""

    clock: Callable[[], float] = time.process_time
    stages: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # stage -> ms, this frame
    invoke: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # caller's stage -> ms
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # stage -> wrapped calls, this frame
    _open: list[list[Any]] = field(default_factory=list)  # [stage, ms of wrapped calls inside] per open call

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._open.append([stage, 0.0])
            self.calls[stage] += 1
            start = self.clock()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = (self.clock() - start) * 1000
                _, inner = self._open.pop()
                self.stages[stage] += elapsed - inner
                if self._open:
                    self._open[-1][1] += elapsed
        return timed

    def wrap_invoke(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = self.clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self.invoke[self._open[-1][0] if self._open else "other"] += (self.clock() - start) * 1000
        return timed

    def take(self) -> tuple[dict[str, float], dict[str, float], dict[str, int]]:
        """The frame's stage and invoke times and call counts, and a fresh start for the next frame."""
        stages, invoke, calls = dict(self.stages), dict(self.invoke), dict(self.calls)
        self.stages.clear()
        self.invoke.clear()
        self.calls.clear()
        return stages, invoke, calls


@contextmanager
def installed(profiler: Profiler) -> Iterator[None]:
    """The probes in place for the ``with`` block; the original attributes back afterwards, whatever happens."""
    targets = [*((owner, name) for owner, name, _ in PROBES), *INVOKES]
    saved = [(owner, name, vars(owner)[name]) for owner, name in targets]
    try:
        for owner, name, stage in PROBES:
            setattr(owner, name, profiler.wrap(stage, vars(owner)[name]))
        for owner, name in INVOKES:
            setattr(owner, name, profiler.wrap_invoke(vars(owner)[name]))
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


@dataclass(frozen=True)
class FrameProfile:
    clip: int
    index: int  # in the clip
    kind: str  # detector | tracked | gated
    hands: int
    total_ms: float  # CPU, the whole detect_bytes
    wall_ms: float
    stages: dict[str, float]  # CPU ms per stage that ran on this frame ("other" always)
    invoke: dict[str, float]  # CPU ms in the models' invoke, by the stage that called it
    calls: dict[str, int]  # wrapped calls per stage (landmarks: one per hand looked at)


def frame_kind(timing: dict[str, Any]) -> str:
    return "gated" if timing["gated"] else "detector" if timing["detector"] else "tracked"


def schedule(clips: Sequence[camclips.Clip], frames: int) -> list[tuple[int, int]]:
    """(clip, frame index) in serving order: ``frames`` in all, the clips in turn, each from its first frame."""
    per_clip = math.ceil(frames / len(clips))
    order = [(c, k) for k in range(per_clip) for c in range(len(clips))]
    return order[:frames]


def profile(settings: Settings, model_path: str, clips: Sequence[camclips.Clip], frames: int, fps: float,
            opts: DetectOptions) -> tuple[list[FrameProfile], dict[str, str]]:
    """The in-process run: every scheduled frame through ``detect_bytes``, one stream per clip, with the probes in;
    and what ran the models (the choice asked for, the one serving after the start-up check, why it fell back)."""
    limits = ImageLimits.from_settings(settings)
    streams = StreamPipelines(settings, {opts.model: model_path}, limits)
    profiler = Profiler()
    out: list[FrameProfile] = []
    try:
        streams.warm_up(opts.model)
        pipe = streams.pipeline(opts.model)
        checked = streams.checked[opts.model]
        inference = {"asked": checked.asked.name, "fallback": checked.fallback}
        for clip in clips:  # both models run once on a real frame, untimed (the first invoke sets kernels up)
            pipe.detect(decode_image(clip.frames[0], limits).rgb, opts.num_hands)
        with installed(profiler):
            for c, k in schedule(clips, frames):
                clip = clips[c]
                wall, cpu = time.perf_counter(), profiler.clock()
                result = streams.detect_bytes(clip.frames[k % len(clip)], opts, ("stages", c), k * 1000 / fps)
                total, wall = (profiler.clock() - cpu) * 1000, (time.perf_counter() - wall) * 1000
                stages, invoke, calls = profiler.take()
                stages["other"] = total - sum(stages.values())
                out.append(FrameProfile(c, k, frame_kind(dict(result["timing"])), len(result["hands"]), total,
                                        wall, stages, invoke, calls))
    finally:
        streams.close()
    return out, inference


def _stats(values: list[float]) -> dict[str, Any]:
    p = percentiles(values, (50, 95))
    return {"mean": round(sum(values) / len(values), 3) if values else None, **p}


def summarise(frames: Sequence[FrameProfile]) -> dict[str, Any]:
    """Per stage: ms over the frames it ran on (mean, p50, p95), how many, its mean over every frame and its share
    of the total CPU; the models' invoke alone; the same per frame kind."""
    total = sum(f.total_ms for f in frames)

    def stages_of(group: Sequence[FrameProfile]) -> dict[str, Any]:
        cpu = sum(f.total_ms for f in group)
        rows: dict[str, Any] = {}
        for stage in STAGES:
            ran = [f.stages[stage] for f in group if stage in f.stages]
            calls = sum(f.calls.get(stage, 0) for f in group)
            rows[stage] = {"frames": len(ran), **_stats(ran), "calls": calls,
                           "ms_per_call": round(sum(ran) / calls, 3) if calls else None,
                           "per_frame_ms": round(sum(ran) / len(group), 3) if group else None,
                           "share": round(sum(ran) / cpu, 4) if cpu else None}
        for stage in MODELS:
            ran = [f.invoke[stage] for f in group if stage in f.invoke]
            rows[f"{stage}_invoke"] = {"frames": len(ran), **_stats(ran),
                                       "per_frame_ms": round(sum(ran) / len(group), 3) if group else None,
                                       "share": round(sum(ran) / cpu, 4) if cpu else None}
        return rows

    kinds = {}
    for kind in KINDS:
        group = [f for f in frames if f.kind == kind]
        if group:
            kinds[kind] = {"frames": len(group), "fraction": round(len(group) / len(frames), 4),
                           "share_of_cpu": round(sum(f.total_ms for f in group) / total, 4) if total else None,
                           "total_ms": _stats([f.total_ms for f in group]), "stages": stages_of(group)}
    walls, cpus = sum(f.wall_ms for f in frames), total
    return {"frames": len(frames), "total_ms": _stats([f.total_ms for f in frames]),
            "wall_ms": _stats([f.wall_ms for f in frames]),
            "cpu_over_wall": round(cpus / walls, 3) if walls else None,  # < 1: the process waited for a core
            "stages": stages_of(frames), "kinds": kinds}


async def ipc(settings: Settings, model_path: str, clips: Sequence[camclips.Clip], frames: int,
              opts: DetectOptions) -> dict[str, Any]:
    """The round trip through a one-worker pool less the worker's own decode + inference, frame by frame."""
    pool = InferencePool(settings, {opts.model: model_path}, service="edge", workers=1)
    await pool.start()
    overhead, to_worker, back, worker_ms, trips = [], [], [], [], []
    try:
        await pool.submit(clips[0].frames[0], opts, stream="stages-warm-up")  # first message of each kind
        pool.close_stream("stages-warm-up")
        pid = pool.stats()["pids"][0]
        cpu, worker_cpu = time.process_time(), procs.cpu_seconds(pid)
        for c, k in schedule(clips, frames):
            clip = clips[c]
            start = time.perf_counter()
            result = await pool.submit(clip.frames[k % len(clip)], opts, stream=f"stages-{c}")
            trip = (time.perf_counter() - start) * 1000
            t = result["timing"]
            work = t["decode_ms"] + t["infer_ms"]
            trips.append(trip)
            worker_ms.append(work)
            overhead.append(trip - work)
            to_worker.append(t["queue_ms"])  # submit → the worker starts the frame
            back.append(trip - t["queue_ms"] - work)  # the worker's result → the caller has it
        cpu, worker_cpu = time.process_time() - cpu, procs.cpu_seconds(pid) - worker_cpu
        for c in range(len(clips)):
            pool.close_stream(f"stages-{c}")
    finally:
        await pool.close()
    n = len(trips)
    return {"frames": n, "round_trip_ms": _stats(trips), "worker_decode_infer_ms": _stats(worker_ms),
            "overhead_ms": _stats(overhead), "to_worker_ms": _stats(to_worker), "back_ms": _stats(back),
            "caller_cpu_ms_per_frame": round(cpu * 1000 / n, 3),
            "worker_cpu_ms_per_frame": round(worker_cpu * 1000 / n, 3)}


def _f(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def table(report: dict[str, Any]) -> str:
    """The Markdown tables docs/benchmarks.md shows."""
    prof = report["in_process"]
    lines = [("| stage | frames it ran on | ms per frame where it ran: mean / p50 / p95 | calls (ms per call) | "
              "ms per frame, all frames | share of CPU |"), "| --- | --- | --- | --- | --- | --- |"]
    for stage in (*STAGES, *(f"{m}_invoke" for m in MODELS)):
        r = prof["stages"][stage]
        name = f"of which {stage.removesuffix('_invoke')} model invoke" if stage.endswith("_invoke") else stage
        calls = f"{r['calls']} ({_f(r['ms_per_call'])})" if stage in PER_CALL else "—"
        lines.append(f"| {name} | {r['frames']} / {prof['frames']} | {_f(r['mean'])} / {_f(r['p50'])} / "
                     f"{_f(r['p95'])} | {calls} | {_f(r['per_frame_ms'])} | {100 * r['share']:.1f} % |")
    t = prof["total_ms"]
    lines.append(f"| **total** | {prof['frames']} | {_f(t['mean'])} / {_f(t['p50'])} / {_f(t['p95'])} | — | "
                 f"{_f(t['mean'])} | 100 % |")
    lines += ["", "| frame kind | frames | share of CPU | ms per frame: mean / p50 / p95 | "
              + " | ".join(STAGES) + " | palm / landmark invoke |",
              "| --- | --- | --- | --- | " + " | ".join("---" for _ in STAGES) + " | --- |"]
    for kind, k in prof["kinds"].items():
        s = k["stages"]
        lines.append(f"| {kind} | {k['frames']} ({100 * k['fraction']:.1f} %) | {100 * k['share_of_cpu']:.1f} % | "
                     f"{_f(k['total_ms']['mean'])} / {_f(k['total_ms']['p50'])} / {_f(k['total_ms']['p95'])} | "
                     + " | ".join(f"{_f(s[st]['per_frame_ms'])} ({100 * s[st]['share']:.0f} %)" for st in STAGES)
                     + f" | {_f(s['palm_invoke']['per_frame_ms'])} / {_f(s['landmarks_invoke']['per_frame_ms'])} |")
    if "ipc" in report:
        i = report["ipc"]
        lines += ["", "| IPC, 1 worker, frames one at a time | mean | p50 | p95 |", "| --- | --- | --- | --- |"]
        for key, name in (("round_trip_ms", "round trip (caller)"), ("worker_decode_infer_ms",
                                                                      "worker's decode + inference"),
                          ("overhead_ms", "**overhead** (round trip less the worker's)"),
                          ("to_worker_ms", "of which submit → worker starts"),
                          ("back_ms", "of which worker's result → caller")):
            r = i[key]
            lines.append(f"| {name} | {_f(r['mean'])} | {_f(r['p50'])} | {_f(r['p95'])} |")
        lines.append(f"\nCPU per frame: caller {_f(i['caller_cpu_ms_per_frame'])} ms, worker "
                     f"{_f(i['worker_cpu_ms_per_frame'])} ms ({i['frames']} frames).")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.stages", description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="labelled photos (labels.csv)")
    parser.add_argument("--frames", type=int, default=960,
                        help="frames in all, spread over the clips (default 960: the default mix's clips once)")
    parser.add_argument("--no-ipc", action="store_true", help="skip the pool round trips")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    camera.add_arguments(parser)  # the clips exactly as `hgr bench --sections camera` makes them
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error("--frames must be at least 1")
    settings = load_settings()
    model_path = model_paths(settings)[settings.model_variant]
    opts = default_options(settings)

    def log(message: str) -> None:
        print(f"[stages] {message}", file=sys.stderr, flush=True)

    clips = camera.make_clips(settings, model_path, args, log)
    fps = camera.sensor_of(args).fps
    log(f"in process: {args.frames} frames over {len(clips)} clips at {fps:g} fps")
    report: dict[str, Any] = {
        "frames": args.frames, "fps": fps, "mix": args.camera_mix, "seed": args.seed, "num_hands": opts.num_hands,
        "model": model_path, "clock": "time.process_time (CPU of this process)",
    }
    frames, report["inference"] = profile(settings, model_path, clips, args.frames, fps, opts)
    report["in_process"] = summarise(frames)
    if not args.no_ipc:
        log("IPC: one worker, frames one at a time")
        report["ipc"] = asyncio.run(ipc(settings, model_path, clips, args.frames, opts))
    print(table(report), file=sys.stderr, end="")
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
