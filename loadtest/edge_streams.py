"""The ``edge`` section of ``hgr bench``: an edge started in a subprocess (or ``--url`` of a running one), fed by
simulated 30 fps cameras (``--streams``, default 1, 4 and 16) and then one unthrottled stream: frames/s, the
ratio to ``raw``, latency percentiles measured by the client (send → result), drop counts and CPU per frame.

Targets reported under ``targets``: throughput at saturation ≥ 0.9 × raw; at one stream, p50 latency
within 3 ms of the raw per-frame time; under overload a bounded p99 with the excess visible as drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import tempfile
from typing import Any

from hgr.common.percentiles import percentiles
from hgr.loadtest import ws_stream
from hgr.loadtest.context import BenchContext
from hgr.loadtest.procs import cpu_seconds


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


async def run(ctx: BenchContext) -> dict[str, Any]:
    args, raw = ctx.args, ctx.results.get("raw")
    raw_fps = raw["fps"] if raw else None
    proc: subprocess.Popen[bytes] | None = None
    url = args.url
    with contextlib.ExitStack() as stack:  # the edge stopped, then its log closed
        if url is None:
            log_file = stack.enter_context(tempfile.NamedTemporaryFile(
                "w", prefix="hgr-bench-edge-", suffix=".log", delete=False))
            ctx.log(f"edge: starting (log {log_file.name})")
            env = ws_stream.bench_edge_env(max(args.streams), args.workers)
            port, proc = await asyncio.to_thread(stack.enter_context, ws_stream.running_edge(env, log_file=log_file))
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
