"""The two runs: ``soak`` (traffic, hostile actions and faults together) and ``acceptance`` (throughput
under crafted traffic, and a 63 MB hostile body)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from hgr.common.percentiles import percentiles
from hgr.loadtest.procs import rss_mb
from hgr.loadtest.ws_stream import load_frames
from research.chaos.faults import inject
from research.chaos.hostile import Hostile, bomb, hostile_client, one_string, status
from research.chaos.record import Run
from research.chaos.report import soak_report
from research.chaos.sampling import sampler
from research.chaos.stack import Stack, running_stack
from research.chaos.traffic import rest_client, ws_client


async def soak(duration: float, photos_dir: Path) -> dict[str, Any]:
    frames = load_frames(photos_dir, limit=12)
    with running_stack() as stack:
        run, stop = Run(), asyncio.Event()
        hostile = Hostile(stack, frames[0])
        nonces = itertools.count(int(time.time() * 1000) % 10**9 * 1000)
        tasks = [asyncio.create_task(rest_client(stack, frames, run, stop, nonces)) for _ in range(2)]
        tasks += [asyncio.create_task(ws_client(stack, frames, run, stop)),
                  asyncio.create_task(hostile_client(hostile, run, stop)),
                  asyncio.create_task(sampler(stack, run, stop)),
                  asyncio.create_task(inject(stack, run, duration, stop))]
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)
        finally:
            stop.set()
            await asyncio.wait(tasks, timeout=60)
            for task in tasks:
                task.cancel()
            hostile.close()
        return soak_report(run, duration)


# --- acceptance: throughput under crafted traffic, and a 63 MB hostile body ---

async def _throughput(stack: Stack, frames: list[bytes], seconds: float, hostile: Hostile | None,
                      nonces: Iterator[int]) -> dict[str, Any]:
    run, stop = Run(), asyncio.Event()
    tasks = [asyncio.create_task(rest_client(stack, frames, run, stop, nonces)) for _ in range(2)]
    tasks.append(asyncio.create_task(ws_client(stack, frames, run, stop, fps=None, chunk_s=seconds)))
    if hostile is not None:
        tasks.append(asyncio.create_task(hostile_client(hostile, run, stop)))
    tasks.append(asyncio.create_task(sampler(stack, run, stop, every_s=0.5)))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    stop.set()
    await asyncio.wait(tasks, timeout=60)
    images = sum(r.ok for rs in run.good.values() for r in rs)
    return {"seconds": seconds, "images_ok": images, "images_per_s": round(images / seconds, 2),
            "rest_ok": sum(r.ok for r in run.good["rest"]), "ws_ok": sum(r.ok for r in run.good["ws"]),
            "failed": sum(r.failed for rs in run.good.values() for r in rs),
            "ready_not_200": sum(1 for s in run.samples if s.get("hub_ready") != 200 or s.get("edge_ready") != 200),
            "ready_samples": len(run.samples),
            "hostile": dict(Counter(f"{k}: {o}" for _, k, o in run.hostile))}


async def _health_probe(url: str, stop: asyncio.Event, pid: int) -> dict[str, Any]:
    """/health latency every 20 ms and the process's RSS every 20 ms, until ``stop``."""
    latencies, rss = [], []
    async with httpx.AsyncClient(timeout=30) as client:
        while not stop.is_set():
            start = time.perf_counter()
            await client.get(url + "/health")
            latencies.append((time.perf_counter() - start) * 1000)
            rss.append(rss_mb(pid))
            await asyncio.sleep(0.02)
    return {"health_ms": {**percentiles(latencies), "max": round(max(latencies), 2)}, "rss_max_mb": max(rss),
            "rss_first_mb": rss[0], "probes": len(latencies)}


async def _big_body(stack: Stack, body: Callable[[], AsyncIterator[bytes]], size: int) -> dict[str, Any]:
    assert stack.hub is not None
    stop = asyncio.Event()
    probe = asyncio.create_task(_health_probe(stack.hub_url, stop, stack.hub.pid))
    await asyncio.sleep(2.0)  # the probe's own baseline before the body starts
    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=120) as client:
        try:
            r = await client.post(stack.hub_url + "/detect-fingers-batch", content=body(),
                                  headers={"content-type": "application/json", "content-length": str(size)})
            answer = status(r)
        except httpx.HTTPError as exc:  # the hub answered and closed before taking the rest
            answer = f"closed early ({type(exc).__name__})"
    elapsed = time.perf_counter() - start
    await asyncio.sleep(1.0)
    stop.set()
    return {"answer": answer, "seconds": round(elapsed, 3), **await probe}


async def acceptance(phase_s: float, photos_dir: Path) -> dict[str, Any]:
    frames = load_frames(photos_dir, limit=12)
    size = 63 * 1024 * 1024
    with running_stack() as stack:
        nonces = itertools.count(int(time.time() * 1000) % 10**9 * 1000)
        hostile = Hostile(stack, frames[0])
        try:
            calm1 = await _throughput(stack, frames, phase_s, None, nonces)
            crafted = await _throughput(stack, frames, phase_s, hostile, nonces)
            calm2 = await _throughput(stack, frames, phase_s, None, nonces)
        finally:
            hostile.close()
        undisturbed = (calm1["images_per_s"] + calm2["images_per_s"]) / 2
        idle = await _big_body(stack, lambda: bomb(4), 4)  # a 4-byte body: the probe's undisturbed numbers
        lists = await _big_body(stack, lambda: bomb(size), size)
        string = await _big_body(stack, lambda: one_string(size), size)
    return {
        "mode": "acceptance", "cpus": os.cpu_count(), "phase_s": phase_s,
        "throughput": {"undisturbed_1": calm1, "crafted_1_per_s": crafted, "undisturbed_2": calm2,
                       "ratio": round(crafted["images_per_s"] / undisturbed, 3) if undisturbed else None},
        "body_63mb": {"idle": idle, "empty_lists": lists, "one_big_string": string,
                      "note": "health_ms during the body vs idle; rss_max_mb - rss_first_mb is the growth"},
    }
