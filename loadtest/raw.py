"""The ``raw`` section of ``hgr bench``: MediaPipe Tasks called directly (VIDEO mode, one stream per process,
the same frames), whatever engine the service runs (it pins ``STREAM_PIPELINE=mediapipe``). One process alone
gives the per-frame model time a single stream is compared with; WORKERS processes at once give the throughput
ceiling the service at saturation is compared with."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from typing import Any

from hgr.common.config import Settings
from hgr.common.percentiles import percentiles
from hgr.loadtest.context import BenchContext


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


async def raw_run(ctx: BenchContext, processes: int, video: bool = True,
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


async def run(ctx: BenchContext) -> dict[str, Any]:
    """Two references: one process alone gives the per-frame model time a single stream is compared
    with (no other inference competing for the cores); WORKERS processes at once give the throughput
    ceiling the service at saturation is compared with."""
    workers = ctx.args.workers or ctx.settings.resolved_workers()
    ctx.log(f"raw: 1 process × {ctx.args.duration:.0f} s")
    _, single = await raw_run(ctx, 1)
    ctx.log(f"raw: {workers} processes × {ctx.args.duration:.0f} s")
    frames, parallel = await raw_run(ctx, workers)
    out = {"workers": workers, "frames": frames, "fps": round(frames / ctx.args.duration, 1),
           "per_frame_ms": percentiles(single), "per_frame_ms_all_workers": percentiles(parallel)}
    if "rest" in ctx.args.sections:  # REST images are stills: compare them with IMAGE mode
        ctx.log(f"raw: {workers} processes in IMAGE mode × {ctx.args.duration:.0f} s")
        frames, times = await raw_run(ctx, workers, video=False)
        out["image_mode"] = {"fps": round(frames / ctx.args.duration, 1), "per_frame_ms": percentiles(times)}
        # The service's own still engine (LiteRT) called directly: what of REST's ratio is the engine's.
        ctx.log(f"raw: {workers} processes, the LiteRT still engine × {ctx.args.duration:.0f} s")
        frames, times = await raw_run(ctx, workers, video=False, pipeline="litert")
        out["image_litert"] = {"fps": round(frames / ctx.args.duration, 1), "per_frame_ms": percentiles(times)}
    return out
