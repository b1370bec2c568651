"""``hgr bench --sections camera``: the edge on realistic camera streams against raw MediaPipe, in one run.

The streams are clips from ``loadtest/clips.py`` (labelled photos filmed by a simulated sensor: fresh
noise, drift, JPEG every frame), one clip per stream, in a mix of scene kinds (``--camera-mix``,
default 4 empty, 3 one-hand, 1 two-hand). Every stream is closed-loop: it sends its clip's next frame
when the answer to the previous one arrives, so the service is saturated and nothing is dropped.

- **baseline**: raw MediaPipe Tasks in VIDEO mode, ``num_hands=NUM_HANDS``, one landmarker per stream,
  the frames decoded as the service decodes them (``cv2.imdecode`` to RGB). It runs in as many processes
  as the edge has workers, each process serving its share of the streams in turn (stream *i* in process
  *i* mod W, the split the edge's pool makes when the streams arrive in order) — the same cores, the
  same parallelism, no service. Its "latency" is a stream's cycle: from its previous answer to this one.
  Then one process with one one-hand stream alone: the per-frame time the 1-stream overhead is
  measured against.
- **edge**: a real ``hgr edge`` in a subprocess (``WORKERS`` = the baseline's process count) per
  ``--edge-env`` configuration (each run its own edge; none given: one run with the environment as is),
  fed the same clips over WebSocket, then one one-hand stream alone.

Reported per scene kind: frames/s, ratio to the baseline, latency p50/p99 (client, send → result),
agreement (fraction of frames with ``total_fingers`` equal to the label, and with as many hands as the
scene has), and when the edge's ``timing`` says so, the fractions of frames that ran the palm detector
and that were gated. Frames are counted when their answer arrives inside the measured window, after a
warm-up in which every stream already runs.

Every turn starts each clip from its first frame, so the faster side gets further into its clips: where the
baseline is slow (a few frames per second per stream) it may never reach a clip's later scenes, and the two
agreements would be taken over different photos. So agreement is also reported over the frames *both*
answered (``agreement_shared``: per kind, the edge's and the baseline's over the same (stream, frame) pairs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from websockets.exceptions import WebSocketException

from hgr.common.config import Settings
from hgr.common.percentiles import percentiles
from hgr.edge import protocol
from hgr.loadtest import clips as camclips
from hgr.loadtest.context import BenchContext
from hgr.loadtest.ws_stream import bench_edge_env, open_stream, running_edge

DEFAULT_MIX = "empty=4,one_hand=3,two_hands=1"
WARMUP_S = 2.0  # every stream runs this long before frames are counted (landmarkers made, tracks found)
ANSWER_TIMEOUT_S = 30.0
# The acceptance for the new pipeline (issue 14), reported next to each edge run.
TARGETS = {"throughput_ratio": 1.8, "one_hand_ratio": 1.7, "empty_ratio": 4.0, "one_hand_agreement": 0.97,
           "one_stream_overhead_ms": 2.0}


@dataclass(frozen=True)
class Answer:
    """One answered frame of one stream."""

    stream: int
    frame: int  # index in the stream's clip
    done_s: float  # when the answer arrived, seconds since the measurement started (warm-up included)
    latency_ms: float  # edge: send → result; baseline: the stream's previous answer → this one
    model_ms: float  # decode + inference as measured where the model ran
    total_fingers: int
    hands: int
    detector: bool | None = None  # from the edge's timing, when it says
    gated: bool | None = None


@dataclass
class Run:
    answers: list[Answer] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)


# --- the reference model, raw ---

def _landmarker(settings: Settings, model_path: str, *, video: bool, num_hands: int) -> Any:
    from mediapipe.tasks.python import BaseOptions, vision

    return vision.HandLandmarker.create_from_options(vision.HandLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=model_path),
        running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
        num_hands=num_hands,
        min_hand_detection_confidence=settings.min_hand_detection_confidence,
        min_hand_presence_confidence=settings.min_hand_presence_confidence,
        min_tracking_confidence=settings.min_tracking_confidence,
    ))


def _hands(result: Any, width: int, height: int) -> tuple[tuple[camclips.Box, ...], tuple[int, ...]]:
    """Hand boxes (pixels) and finger counts, left to right, counted as the service counts them."""
    from hgr.common.inference.fingers import count_fingers, fingers_up

    found = []
    for i, landmarks in enumerate(result.hand_landmarks):
        world = result.hand_world_landmarks[i] if result.hand_world_landmarks else None
        points = [[p.x, p.y, p.z] for p in (world or landmarks)]
        xs, ys = [p.x * width for p in landmarks], [p.y * height for p in landmarks]
        found.append(((min(xs), min(ys), max(xs), max(ys)), count_fingers(fingers_up(points))))
    found.sort(key=lambda h: h[0][0])
    return tuple(b for b, _ in found), tuple(c for _, c in found)


def _decode(data: bytes) -> Any:
    """As ``common.inference.images.decode_image`` decodes a JPEG: OpenCV straight to RGB."""
    import cv2
    import numpy as np

    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)


class StillJudge:
    """MediaPipe Tasks in IMAGE mode (the reference for stills), ``num_hands=2``: decides which photos
    and crops the clips may use."""

    def __init__(self, settings: Settings, model_path: str) -> None:
        self._landmarker = _landmarker(settings, model_path, video=False, num_hands=2)

    def __call__(self, bgr: Any) -> tuple[tuple[camclips.Box, ...], tuple[int, ...]]:
        import cv2
        import mediapipe as mp

        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        result = self._landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
        return _hands(result, rgb.shape[1], rgb.shape[0])

    def close(self) -> None:
        self._landmarker.close()


def _baseline_process(settings: Settings, model_path: str, streams: list[tuple[int, camclips.Clip]],
                      warmup: float, duration: float, barrier: Any) -> Run:
    """One process, its streams in turn, closed loop: decode, VIDEO-mode landmarker, count."""
    import mediapipe as mp

    landmarkers = [_landmarker(settings, model_path, video=True, num_hands=settings.num_hands) for _ in streams]
    last_ts = [-1] * len(streams)
    position = [0] * len(streams)

    def step(k: int) -> tuple[int, int, float, int]:
        clip = streams[k][1]
        frame = position[k] % len(clip)
        start = time.perf_counter()
        rgb = _decode(clip.frames[frame])
        # VIDEO timestamps from the real clock (strictly increasing), as the service's detector does
        last_ts[k] = max(last_ts[k] + 1, int(time.monotonic() * 1000))
        result = landmarkers[k].detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb), last_ts[k])
        _, counts = _hands(result, rgb.shape[1], rgb.shape[0])
        position[k] += 1
        return frame, sum(counts), (time.perf_counter() - start) * 1000, len(counts)

    for k in range(len(streams)):
        step(k)  # create each landmarker's graph before the clock starts
    barrier.wait()
    run = Run()
    start = time.perf_counter()
    previous = [start] * len(streams)
    while time.perf_counter() - start < warmup + duration:
        for k in range(len(streams)):
            frame, total, model_ms, hands = step(k)
            now = time.perf_counter()
            run.answers.append(Answer(streams[k][0], frame, now - start, (now - previous[k]) * 1000, model_ms,
                                      total, hands))
            previous[k] = now
    for landmarker in landmarkers:
        landmarker.close()
    return run


@dataclass
class Baseline:
    """The processes the baseline runs in, kept for the whole section (spawned and imported once)."""

    settings: Settings
    model_path: str
    executor: ProcessPoolExecutor
    manager: Any  # multiprocessing.managers.SyncManager

    async def run(self, clips: Sequence[camclips.Clip], processes: int, warmup: float, duration: float) -> Run:
        """``clips`` as streams, stream *i* in process *i* mod ``processes``, all processes at once."""
        shares: list[list[tuple[int, camclips.Clip]]] = [[] for _ in range(processes)]
        for i, clip in enumerate(clips):
            shares[i % processes].append((i, clip))
        shares = [s for s in shares if s]
        barrier = self.manager.Barrier(len(shares))
        loop = asyncio.get_running_loop()
        runs = await asyncio.gather(*(loop.run_in_executor(self.executor, _baseline_process, self.settings,
                                                           self.model_path, share, warmup, duration, barrier)
                                      for share in shares))
        return Run([a for r in runs for a in r.answers])


# --- the edge ---

async def _closed_loop(url: str, index: int, clip: camclips.Clip, ready: asyncio.Event, go: asyncio.Event,
                       clock: list[float], run: Run, stop_s: float) -> None:
    """One camera: frame 0 once (so the pool places the stream and its model state exists), ``ready``;
    then after ``go`` the next frame each time the previous one is answered, until ``stop_s``."""
    ws, _ = await open_stream(url)
    try:
        seq = 0

        async def exchange() -> tuple[dict[str, Any], float]:
            nonlocal seq
            sent = time.perf_counter()
            await ws.send(protocol.encode_frame(seq, clip.frames[seq % len(clip)], ts=int(sent * 1000)))
            while True:
                msg = protocol.decode_server_message(await asyncio.wait_for(ws.recv(), ANSWER_TIMEOUT_S))
                if msg.get("type") in ("result", "error") and msg.get("seq") == seq:
                    seq += 1
                    return msg, (time.perf_counter() - sent) * 1000

        await exchange()
        ready.set()
        await go.wait()
        while time.perf_counter() - clock[0] < stop_s:
            frame = seq % len(clip)
            msg, latency = await exchange()
            if msg["type"] == "error":
                run.errors[msg["code"]] = run.errors.get(msg["code"], 0) + 1
                continue
            timing = msg.get("timing") or {}
            run.answers.append(Answer(
                index, frame, time.perf_counter() - clock[0], latency,
                float(timing.get("decode_ms", 0.0)) + float(timing.get("infer_ms", 0.0)),
                int(msg["total_fingers"]), len(msg["hands"]),
                _flag(timing.get("detector")), _flag(timing.get("gated"))))
    finally:
        await ws.close()


def _flag(value: Any) -> bool | None:
    return None if value is None else bool(value)


async def edge_streams(url: str, clips: Sequence[camclips.Clip], warmup: float, duration: float) -> Run:
    """All clips as closed-loop streams at once. They join one by one (each after its first answer), so
    the pool places stream *i* on worker *i* mod W, as the baseline splits them."""
    run, clock, go = Run(), [0.0], asyncio.Event()
    tasks = []
    for i, clip in enumerate(clips):
        ready = asyncio.Event()
        tasks.append(asyncio.create_task(_closed_loop(url, i, clip, ready, go, clock, run, warmup + duration)))
        waiting = asyncio.ensure_future(ready.wait())
        done, _ = await asyncio.wait([waiting, tasks[-1]], timeout=120, return_when=asyncio.FIRST_COMPLETED)
        if tasks[-1] in done:
            tasks[-1].result()  # raises the stream's error
        if waiting not in done:
            waiting.cancel()
            raise TimeoutError(f"stream {i} got no answer to its first frame")
    clock[0] = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    return run


# --- summaries ---

def measured(run: Run, warmup: float, duration: float) -> list[Answer]:
    return [a for a in run.answers if warmup <= a.done_s < warmup + duration]


def _fraction(values: Sequence[bool | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 4) if known else None


def summarise(answers: Sequence[Answer], clips: Sequence[camclips.Clip], duration: float) -> dict[str, Any]:
    """frames, frames/s, latency and model-time percentiles, agreement with the labels, detector/gated
    fractions, for one group of answers."""
    agree = [a.total_fingers == clips[a.stream].labels[a.frame] for a in answers]
    hands = [a.hands == clips[a.stream].hands[a.frame] for a in answers]
    return {
        "frames": len(answers), "fps": round(len(answers) / duration, 1),
        "latency_ms": percentiles([a.latency_ms for a in answers]),
        "model_ms": percentiles([a.model_ms for a in answers]),
        "agreement": round(sum(agree) / len(agree), 4) if agree else None,
        "hands_agreement": round(sum(hands) / len(hands), 4) if hands else None,
        "detector_fraction": _fraction([a.detector for a in answers]),
        "gated_fraction": _fraction([a.gated for a in answers]),
    }


def by_kind(answers: Sequence[Answer], clips: Sequence[camclips.Clip], duration: float) -> dict[str, Any]:
    groups: dict[str, list[Answer]] = defaultdict(list)
    for a in answers:
        groups[clips[a.stream].kind].append(a)
    out = {kind: summarise(groups[kind], clips, duration) for kind in camclips.KINDS if kind in groups}
    out["all"] = {**summarise(answers, clips, duration), "misread_scenes": misread_scenes(answers, clips)}
    return out


def misread_scenes(answers: Sequence[Answer], clips: Sequence[camclips.Clip]) -> list[dict[str, Any]]:
    """Scenes with frames not counted as labelled, worst first: which photos the agreement lost on."""
    seen: dict[tuple[int, str], list[bool]] = defaultdict(list)
    for a in answers:
        clip = clips[a.stream]
        seen[(a.stream, clip.scene_of(a.frame))].append(a.total_fingers == clip.labels[a.frame])
    rows = [{"stream": stream, "kind": clips[stream].kind, "scene": scene, "frames": len(ok),
             "agreement": round(sum(ok) / len(ok), 4)} for (stream, scene), ok in seen.items() if not all(ok)]
    return sorted(rows, key=lambda r: (r["agreement"], r["stream"]))


def shared_agreement(edge: Sequence[Answer], base: Sequence[Answer],
                     clips: Sequence[camclips.Clip]) -> dict[str, dict[str, Any]]:
    """Per kind (and "all"): the edge's and the baseline's agreement over the frames of the clips both answered
    (a frame answered several times counts each time)."""
    both = {(a.stream, a.frame) for a in edge} & {(a.stream, a.frame) for a in base}

    def share(answers: Sequence[Answer], kind: str) -> float | None:
        ok = [a.total_fingers == clips[a.stream].labels[a.frame] for a in answers
              if (a.stream, a.frame) in both and kind in ("all", clips[a.stream].kind)]
        return round(sum(ok) / len(ok), 4) if ok else None

    kinds = [k for k in camclips.KINDS if any(clips[s].kind == k for s, _ in both)]
    return {kind: {"frames": sum(1 for s, _ in both if kind in ("all", clips[s].kind)),
                   "edge": share(edge, kind), "baseline": share(base, kind)} for kind in (*kinds, "all")}


def with_ratios(edge: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    for kind, row in edge.items():
        ref = base.get(kind, {}).get("fps")
        row["ratio_to_baseline"] = round(row["fps"] / ref, 3) if ref else None
    return edge


def targets(edge: dict[str, Any], one_stream_overhead_ms: float | None, base: dict[str, Any]) -> dict[str, Any]:
    """The issue's acceptance figures, as measured in this run (None where the run lacks the kind): the
    mix's throughput ratio, each kind's ratio when run alone (else its share of the mix), the one-hand
    agreement in the mix. The baseline's own one-hand agreement comes along: MediaPipe's VIDEO-mode
    tracking miscounts some photos it counts right as stills, so the edge's is to be read next to it."""
    def kind_ratio(kind: str) -> float | None:
        row = edge.get(f"{kind}_alone", {}).get(kind) or edge["mix"].get(kind, {})
        ratio: float | None = row.get("ratio_to_baseline")
        return ratio

    values: dict[str, float | None] = {
        "throughput_ratio": edge["mix"]["all"]["ratio_to_baseline"],
        "one_hand_ratio": kind_ratio("one_hand"),
        "empty_ratio": kind_ratio("empty"),
        "one_hand_agreement": edge["mix"].get("one_hand", {}).get("agreement"),
        "one_stream_overhead_ms": one_stream_overhead_ms,
    }
    out: dict[str, Any] = {}
    for name, value in values.items():
        out[name] = value
        at_most = name.endswith("_ms")  # a time must stay under its bound, a ratio reach it
        out[f"{name}_ok"] = None if value is None else (value <= TARGETS[name] if at_most else value >= TARGETS[name])
    out["one_hand_agreement_baseline"] = base["mix"].get("one_hand", {}).get("agreement")
    shared = edge.get("agreement_shared", {}).get("mix", {}).get("one_hand", {})
    out["one_hand_agreement_shared"] = {"edge": shared.get("edge"), "baseline": shared.get("baseline")}
    return out


def parse_env(text: str) -> dict[str, str]:
    """``"KEY=VALUE,KEY2=VALUE2"`` → a dict (one ``--edge-env`` value: one edge configuration)."""
    env = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"bad --edge-env entry {part!r}: want KEY=VALUE")
        env[key.strip()] = value.strip()
    return env


# --- the section ---

def sensor_of(args: argparse.Namespace) -> camclips.Sensor:
    return camclips.Sensor(noise_sigma=args.noise, drift_px=args.drift, flicker=args.flicker)


def make_clips(settings: Settings, model_path: str, args: argparse.Namespace,
               log: Callable[[str], None]) -> list[camclips.Clip]:
    folder = camclips.photo_folder(Path(args.photos))
    sensor = sensor_of(args)
    judge = StillJudge(settings, model_path)
    try:
        source = camclips.SceneSource(folder, judge, args.seed, sensor)
        clips = camclips.build_clips(source, camclips.parse_mix(args.camera_mix), scenes=args.scenes,
                                     hold=args.clip_hold, sensor=sensor, seed=args.seed)
    finally:
        judge.close()
    log(f"camera: {len(clips)} clips of {args.scenes} scenes × {args.clip_hold} frames from {folder}")
    return clips


async def run(ctx: BenchContext) -> dict[str, Any]:
    from hgr.common.inference.model import model_paths

    args, settings = ctx.args, ctx.settings
    model_path = model_paths(settings)[settings.model_variant]
    workers = args.workers or settings.resolved_workers()
    duration, warmup = args.duration, args.camera_warmup
    clips = make_clips(settings, model_path, args, ctx.log)
    single = next((c for c in clips if c.kind == "one_hand"), clips[0])
    out: dict[str, Any] = {
        "clips": {"mix": args.camera_mix, "seed": args.seed, "scenes": args.scenes, "hold": args.clip_hold,
                  "sensor": asdict(sensor_of(args)),
                  "streams": [{"stream": i, "kind": c.kind, "frames": len(c), "sources": list(c.sources)}
                              for i, c in enumerate(clips)]},
        "duration_s": duration, "warmup_s": warmup, "workers": workers, "num_hands": settings.num_hands,
    }

    # The mix shows how the kinds share the service; but closed-loop streams are served in turn, so
    # within a mix every kind gets about the same ratio. A kind's own gain shows when its streams run
    # alone: as many streams as the mix has, its clips repeated.
    loads: dict[str, list[camclips.Clip]] = {"mix": clips}
    for kind in parse_kinds(args.camera_alone):
        own = [c for c in clips if c.kind == kind]
        if own:
            loads[f"{kind}_alone"] = [own[i % len(own)] for i in range(len(clips))]
    out["loads"] = {name: [clips.index(c) for c in load] for name, load in loads.items()}
    loads["one_stream"] = [single]
    # On a shared machine the speed drifts within minutes: every load is measured in `slices` turns,
    # baseline then each edge, so slow and fast moments fall on all sides alike.
    slices = max(1, args.camera_slices)
    slice_s = duration / slices
    out["slices"] = slices

    spawn = multiprocessing.get_context("spawn")
    with contextlib.ExitStack() as stack:
        manager = stack.enter_context(spawn.Manager())
        executor = stack.enter_context(ProcessPoolExecutor(workers, mp_context=spawn))
        base_side = Baseline(settings, model_path, executor, manager)
        edges = [await _start_edge(stack, ctx, parse_env(text), len(clips), workers) for text in args.edge_env or [""]]
        base_answers: dict[str, list[Answer]] = defaultdict(list)
        for name, load in loads.items():
            processes = 1 if name == "one_stream" else workers
            for turn in range(slices):
                ctx.log(f"camera: {name}, {len(load)} stream(s), turn {turn + 1}/{slices}: "
                        f"baseline ({processes} processes) × {slice_s:.1f} s")
                base_answers[name] += measured(await base_side.run(load, processes, warmup, slice_s), warmup, slice_s)
                for edge in edges:
                    if edge.failed is None:
                        ctx.log(f"camera: {name}, turn {turn + 1}/{slices}: edge {edge.env or ''} × {slice_s:.1f} s")
                        await edge.measure(name, load, warmup, slice_s)

    base: dict[str, Any] = {"processes": workers}
    for name, load in loads.items():
        base[name] = by_kind(base_answers[name], load, duration)
    base_one = base.pop("one_stream")["all"]
    base_one.pop("misread_scenes", None)
    base["one_stream"] = base_one
    out["baseline"] = base
    out["edge"] = [edge.report(loads, base, base_answers, duration) for edge in edges]
    return out


@dataclass
class EdgeSide:
    """One edge configuration: its server, and the answers it gave per load."""

    env: dict[str, str]
    url: str | None
    log: str
    failed: str | None = None
    inference: dict[str, Any] | None = None  # what runs its hand models (its /status: INFERENCE_PRECISION)
    answers: dict[str, list[Answer]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=dict)
    client_cpu: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # [cpu s, wall s]

    async def measure(self, name: str, load: Sequence[camclips.Clip], warmup: float, duration: float) -> None:
        assert self.url is not None
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            run = await edge_streams(self.url, load, warmup, duration)
        except (OSError, RuntimeError, TimeoutError, KeyError, WebSocketException) as exc:
            # a configuration that breaks a stream must not cost the others their runs
            self.failed = f"{name}: {exc!r}"
            return
        self.answers[name] += measured(run, warmup, duration)
        # The load generator runs on the same cores as the edge's workers (the baseline has no client):
        # its share of the machine is part of what the edge's ratio pays for.
        spent = self.client_cpu[name] or [0.0, 0.0]
        self.client_cpu[name] = [spent[0] + time.process_time() - cpu, spent[1] + time.perf_counter() - wall]
        for code, n in run.errors.items():
            self.errors[code] = self.errors.get(code, 0) + n

    def report(self, loads: dict[str, list[camclips.Clip]], base: dict[str, Any],
               base_answers: dict[str, list[Answer]], duration: float) -> dict[str, Any]:
        if self.failed is not None:
            return {"env": self.env, "failed": self.failed, "log": self.log}
        shared: dict[str, Any] = {}
        result: dict[str, Any] = {"env": self.env, "inference": self.inference, "errors": self.errors,
                                  "agreement_shared": shared}
        for name, load in loads.items():
            if name != "one_stream":
                result[name] = with_ratios(by_kind(self.answers[name], load, duration), base[name])
                shared[name] = shared_agreement(self.answers[name], base_answers[name], load)
        result["client_cpu_cores"] = {name: round(cpu / wall, 3) for name, (cpu, wall) in self.client_cpu.items()
                                      if wall}
        one = summarise(self.answers["one_stream"], loads["one_stream"], duration)
        base_one = base["one_stream"]
        one["ratio_to_baseline"] = round(one["fps"] / base_one["fps"], 3) if base_one["fps"] else None
        overhead = None
        if one["latency_ms"]["p50"] is not None and base_one["model_ms"]["p50"] is not None:
            overhead = round(one["latency_ms"]["p50"] - base_one["model_ms"]["p50"], 3)
        one["overhead_over_raw_p50_ms"] = overhead
        # what the edge adds to its own decode + inference for the very same frames (drift cancelled)
        if one["latency_ms"]["p50"] is not None and one["model_ms"]["p50"] is not None:
            one["added_p50_ms"] = round(one["latency_ms"]["p50"] - one["model_ms"]["p50"], 3)
        result.update(one_stream=one, targets=targets(result, overhead, base))
        return result


async def _start_edge(stack: contextlib.ExitStack, ctx: BenchContext, extra: dict[str, str], streams: int,
                      workers: int) -> EdgeSide:
    """An edge with ``extra`` over the bench's environment, stopped when ``stack`` closes; a configuration
    that does not start is recorded as failed."""
    env = bench_edge_env(streams, workers, extra)
    log_file = stack.enter_context(tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by the stack, after the edge
        "w", prefix="hgr-bench-camera-", suffix=".log", delete=False))
    ctx.log(f"camera: edge {extra or '(environment as is)'} starting (log {log_file.name})")
    try:
        port, _ = await asyncio.to_thread(stack.enter_context, running_edge(env, log_file=log_file))
    except (OSError, RuntimeError, TimeoutError) as exc:
        ctx.log(f"camera: edge {extra} did not start: {exc!r}")
        return EdgeSide(extra, None, log_file.name, failed=f"start: {exc!r}")
    status = await asyncio.to_thread(_get_json, f"http://127.0.0.1:{port}/status")
    return EdgeSide(extra, f"ws://127.0.0.1:{port}/ws", log_file.name, inference=status["workers"]["inference"])


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def parse_kinds(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    for kind in kinds:
        if kind not in camclips.KINDS:
            raise ValueError(f"unknown scene kind {kind!r}; one of {', '.join(camclips.KINDS)}")
    return kinds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This section's options on ``hgr bench``'s parser."""
    parser.add_argument("--camera-mix", default=DEFAULT_MIX,
                        help=f"camera: streams per scene kind (default {DEFAULT_MIX})")
    parser.add_argument("--edge-env", action="append", default=None, metavar="KEY=VALUE[,KEY=VALUE]",
                        help="camera: one edge run with these environment overrides; repeat to compare configurations")
    parser.add_argument("--camera-alone", default="empty,one_hand",
                        help="camera: scene kinds also run alone, as many streams as the mix (default empty,one_hand)")
    parser.add_argument("--camera-slices", type=int, default=2,
                        help="camera: turns each load is measured in, baseline and edges alternating (default 2)")
    parser.add_argument("--camera-warmup", type=float, default=WARMUP_S,
                        help=f"camera: seconds every stream runs before frames count (default {WARMUP_S:g})")
    # shared with the file_cameras section (loadtest/file_cameras.py), which films its clips the same way
    parser.add_argument("--seed", type=int, default=14, help="camera, file_cameras: clip seed (same seed, same frames)")
    parser.add_argument("--scenes", type=int, default=4, help="camera, file_cameras: photos per clip (default 4)")
    parser.add_argument("--clip-hold", type=int, default=30, help="camera, file_cameras: frames per scene (default 30)")
    parser.add_argument("--noise", type=float, default=3.0, help="camera, file_cameras: noise sigma, DN (default 3)")
    parser.add_argument("--drift", type=float, default=1.5, help="camera, file_cameras: drift bound, px (default 1.5)")
    parser.add_argument("--flicker", type=float, default=0.0,
                        help="camera, file_cameras: exposure flicker, ± fraction (default 0)")
