"""``hgr bench``: the service against the raw model, in one run, as JSON.

Sections (``--sections``, comma-separated, run in this order):

- ``raw``: MediaPipe Tasks called directly (VIDEO mode, one stream per process, the same frames): one
  process alone (the per-frame time a single stream is compared with), then WORKERS processes
  together (the throughput ceiling); with ``rest`` also IMAGE mode (the stills' ceiling) and the service's
  own LiteRT still engine called directly (``image_litert``).
- ``edge``: an edge started in a subprocess (or ``--url`` of a running one), fed by 1, 4 and 16 simulated
  30 fps cameras (``--streams``) and then one unthrottled stream; frames/s, the ratio to raw, latency
  percentiles measured by the client (send → result) and drop counts.
- ``camera``: realistic camera clips (sensor noise, drift, JPEG per frame; empty, one-hand and two-hand
  scenes) as closed-loop streams, the edge against raw MediaPipe VIDEO mode on the same clips, per scene
  kind (``loadtest/camera.py``; ``--camera-mix``, ``--edge-env``).
- anything else, e.g. ``rest``: the module ``loadtest.<name>`` must define
  ``async def run(ctx: BenchContext) -> dict`` (so other load generators plug in without touching this file).

Targets reported under ``targets``: throughput at saturation ≥ 0.9 × raw; at one stream, p50 latency
within 3 ms of the raw per-frame time; under overload a bounded p99 with the excess visible as drops.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hgr.common.config import Settings, load_settings
from hgr.common.percentiles import percentiles
from hgr.loadtest import camera, ws_stream
from hgr.loadtest.helpers import DEFAULT_PHOTOS, free_port, stop_process, wait_ready


@dataclass
class BenchContext:
    """What every section gets: the options, the settings, the frames, and earlier sections' results."""

    args: argparse.Namespace
    settings: Settings
    frames: list[bytes]
    results: dict[str, Any] = field(default_factory=dict)

    def log(self, message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- raw: the model alone ---

def _raw_worker(settings: Settings, paths: dict[str, str], frames: list[bytes], duration: float,
                barrier: Any, index: int, video: bool = True, pipeline: str = "mediapipe") -> tuple[int, list[float]]:
    from hgr.common.inference.engine import Detector

    # The raw model is MediaPipe Tasks (STREAM_PIPELINE=mediapipe), whatever the service runs; ``litert`` measures
    # the service's own engine called directly (its stills).
    detector = Detector(replace(settings, stream_pipeline=pipeline), paths)
    detector.warm_up()
    stream = f"raw-{index}" if video else None  # VIDEO mode like an edge stream, IMAGE mode like REST
    detector.detect_bytes(frames[0], stream=stream)  # create the landmarker before timing
    barrier.wait()
    times, n, start = [], 0, time.perf_counter()
    while time.perf_counter() - start < duration:
        t = time.perf_counter()
        detector.detect_bytes(frames[n % len(frames)], stream=stream)
        times.append((time.perf_counter() - t) * 1000)
        n += 1
    detector.close()
    return n, times


async def _raw_run(ctx: BenchContext, processes: int, video: bool = True,
                   pipeline: str = "mediapipe") -> tuple[int, list[float]]:
    from hgr.common.inference.model import model_paths

    paths = model_paths(ctx.settings)
    spawn = multiprocessing.get_context("spawn")
    with spawn.Manager() as manager, ProcessPoolExecutor(processes, mp_context=spawn) as executor:
        barrier = manager.Barrier(processes)
        loop = asyncio.get_running_loop()
        runs = await asyncio.gather(*(
            loop.run_in_executor(executor, _raw_worker, ctx.settings, paths, ctx.frames, ctx.args.duration,
                                 barrier, i, video, pipeline) for i in range(processes)))
    return sum(n for n, _ in runs), [t for _, ts in runs for t in ts]


async def section_raw(ctx: BenchContext) -> dict[str, Any]:
    """Two references: one process alone gives the per-frame model time a single stream is compared
    with (no other inference competing for the cores); WORKERS processes at once give the throughput
    ceiling the service at saturation is compared with."""
    workers = ctx.args.workers or ctx.settings.resolved_workers()
    ctx.log(f"raw: 1 process × {ctx.args.duration:.0f} s")
    _, single = await _raw_run(ctx, 1)
    ctx.log(f"raw: {workers} processes × {ctx.args.duration:.0f} s")
    frames, parallel = await _raw_run(ctx, workers)
    out = {"workers": workers, "frames": frames, "fps": round(frames / ctx.args.duration, 1),
           "per_frame_ms": percentiles(single), "per_frame_ms_all_workers": percentiles(parallel)}
    if "rest" in ctx.args.sections:  # REST images are stills: compare them with IMAGE mode
        ctx.log(f"raw: {workers} processes in IMAGE mode × {ctx.args.duration:.0f} s")
        frames, times = await _raw_run(ctx, workers, video=False)
        out["image_mode"] = {"fps": round(frames / ctx.args.duration, 1), "per_frame_ms": percentiles(times)}
        # The service's own still engine (LiteRT) called directly: what of REST's ratio is the engine's.
        ctx.log(f"raw: {workers} processes, the LiteRT still engine × {ctx.args.duration:.0f} s")
        frames, times = await _raw_run(ctx, workers, video=False, pipeline="litert")
        out["image_litert"] = {"fps": round(frames / ctx.args.duration, 1), "per_frame_ms": percentiles(times)}
    return out


# --- edge: the service over WebSocket ---

def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (not its children: the workers are measured as raw)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _summarise(reports: list[ws_stream.StreamReport], duration: float, raw_fps: float | None) -> dict[str, Any]:
    results = sum(r.results for r in reports)
    fps = results / duration
    errors: dict[str, int] = {}
    for r in reports:
        for code, n in r.errors.items():
            errors[code] = errors.get(code, 0) + n
    return {
        "sent": sum(r.sent for r in reports), "results": results, "fps": round(fps, 1),
        "ratio_to_raw": round(fps / raw_fps, 3) if raw_fps else None,
        "latency_ms": percentiles([t for r in reports for t in r.latencies_ms]),
        # what the service adds to the model's own time: sockets, event loop, IPC, queueing
        "overhead_ms": percentiles([t for r in reports for t in r.overhead_ms]),
        "dropped": sum(r.dropped for r in reports), "errors": errors,
        "unanswered": sum(max(0, r.unanswered) for r in reports),
    }


async def section_edge(ctx: BenchContext) -> dict[str, Any]:
    args, raw = ctx.args, ctx.results.get("raw")
    raw_fps = raw["fps"] if raw else None
    proc, url = None, args.url
    log_file = None
    if url is None:
        port = free_port()
        # kept open for the edge's whole run; closed in the finally below
        log_file = tempfile.NamedTemporaryFile("w", prefix="hgr-bench-edge-", suffix=".log", delete=False)  # noqa: SIM115
        env = {"MAX_FPS": "100000", "MAX_CONNECTIONS": str(max(args.streams) + 8), "AUTH_ENABLED": "false",
               "LOG_LEVEL": "warning"}
        if args.workers:
            env["WORKERS"] = str(args.workers)
        ctx.log(f"edge: starting on port {port} (log {log_file.name})")
        proc = ws_stream.start_edge(port, env, log_file=log_file)
        wait_ready(f"http://127.0.0.1:{port}", proc)
        url = f"ws://127.0.0.1:{port}/ws"
    out: dict[str, Any] = {"url": url, "fps_per_stream": args.fps, "rows": []}

    def with_cpu(row: dict[str, Any], cpu_before: float | None) -> dict[str, Any]:
        # The edge process's own CPU per answered frame (event loop + IPC; workers excluded), and the
        # load generator's share of the machine: it runs on the same cores as the workers, which the
        # raw section's processes have to themselves.
        if proc is not None and cpu_before is not None and row["results"]:
            row["edge_cpu_ms_per_frame"] = round((cpu_seconds(proc.pid) - cpu_before) * 1000 / row["results"], 3)
        row["client_cpu_cores"] = round((cpu_seconds(os.getpid()) - client_before) / args.duration, 3)
        return row

    try:
        for n in args.streams:
            ctx.log(f"edge: {n} stream(s) at {args.fps} fps × {args.duration:.0f} s")
            client_before = cpu_seconds(os.getpid())
            before = cpu_seconds(proc.pid) if proc else None
            reports = await asyncio.gather(*(ws_stream.camera(url, ctx.frames, fps=args.fps, duration=args.duration)
                                             for _ in range(n)))
            out["rows"].append(with_cpu({"streams": n, "offered_fps": n * args.fps,
                                         **_summarise(list(reports), args.duration, raw_fps)}, before))
        ctx.log(f"edge: 1 unthrottled stream × {args.duration:.0f} s")
        client_before = cpu_seconds(os.getpid())
        before = cpu_seconds(proc.pid) if proc else None
        report = await ws_stream.camera(url, ctx.frames, fps=None, duration=args.duration)
        out["rows"].append(with_cpu({"streams": 1, "offered_fps": round(report.sent / args.duration, 1),
                                     "unthrottled": True, **_summarise([report], args.duration, raw_fps)}, before))
    finally:
        if proc is not None:
            stop_process(proc)
            log_file.close()  # type: ignore[union-attr]
    out["targets"] = _targets(out["rows"], raw)
    return out


def _targets(rows: list[dict[str, Any]], raw: dict[str, Any] | None) -> dict[str, Any]:
    if not rows or raw is None:
        return {}
    paced = [r for r in rows if not r.get("unthrottled")]
    saturated = max(paced, key=lambda r: r["fps"])
    one = next((r for r in paced if r["streams"] == 1), None)
    targets: dict[str, Any] = {
        "saturation_ratio": saturated["ratio_to_raw"], "saturation_ratio_ok": saturated["ratio_to_raw"] >= 0.9,
    }
    if one and one["latency_ms"]["p50"] is not None and raw["per_frame_ms"]["p50"] is not None:
        # Two views of "within 3 ms of the raw per-frame time". Against the raw section's p50, measured
        # minutes apart: on a shared 2-core VM the model's own speed drifts by several ms between
        # runs, so this gap is noisy. Against the model time the worker measured for the very same
        # frames (latency − decode − inference): what the service adds, with the drift cancelled.
        gap = one["latency_ms"]["p50"] - raw["per_frame_ms"]["p50"]
        added = one["overhead_ms"]["p50"]
        targets.update(one_stream_p50_over_raw_ms=round(gap, 3), one_stream_added_p50_ms=added,
                       one_stream_p50_ok=added is not None and added <= 3.0)
    overload = [r for r in paced if r["offered_fps"] > r["fps"] * 1.1]
    if overload:
        worst = max(overload, key=lambda r: r["streams"])
        targets.update(overload_streams=worst["streams"], overload_p99_ms=worst["latency_ms"]["p99"],
                       overload_dropped=worst["dropped"], overload_drops_visible=worst["dropped"] > 0)
    return targets


SECTIONS = {"raw": section_raw, "edge": section_edge, "camera": camera.run}


async def run(ctx: BenchContext) -> dict[str, Any]:
    for name in ctx.args.sections:
        runner = SECTIONS.get(name) or importlib.import_module(f"hgr.loadtest.{name}").run
        started = time.perf_counter()
        ctx.results[name] = await runner(ctx)
        ctx.log(f"{name}: done in {time.perf_counter() - started:.1f} s")
    return ctx.results


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hgr bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    p.add_argument("--streams", type=_int_list, default=[1, 4, 16], help="camera counts, e.g. 1,4,16")
    p.add_argument("--fps", type=float, default=30.0, help="frames per second per camera (default 30)")
    p.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="folder of JPEG photos")
    p.add_argument("--hold", type=int, default=15,
                   help="frames each photo stays in view, as in a real camera's video (default 15)")
    p.add_argument("--workers", type=int, default=0, help="inference processes (default WORKERS or cores)")
    p.add_argument("--sections", type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
                   default=["raw", "edge"], help="comma-separated: raw, edge, camera, or a loadtest module (rest)")
    p.add_argument("--url", default=None, help="bench a running edge (ws://host:port/ws) instead of starting one")
    camera.add_arguments(p)
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings()
    if args.workers:
        os.environ["WORKERS"] = str(args.workers)
    photos = ws_stream.load_frames(args.photos)
    # A camera's consecutive frames show the same scene, which is what VIDEO-mode tracking relies on;
    # a new photo every frame would make every frame a tracking failure (the worst case, not a camera).
    frames = [frame for frame in photos for _ in range(max(1, args.hold))]
    ctx = BenchContext(args, settings, frames)
    ctx.log(f"{len(photos)} photos from {args.photos}, each held for {args.hold} frames")
    results = asyncio.run(run(ctx))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
