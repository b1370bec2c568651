"""The ``rest`` section of ``hgr bench``, and the REST load generator under it (``run_rest``; from a checkout,
``python -m research.rest_load`` runs it against a hub of yours).

``run_rest`` reports throughput (requests/s and images/s), client-side latency percentiles (ms), status
counts and error codes. Every image is made unique (a JPEG comment with a nonce) unless ``unique=False``,
so the numbers measure the model path, not the result cache.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from hgr.common.percentiles import percentiles
from hgr.loadtest.context import BenchContext
from hgr.loadtest.procs import free_port, stop_process, wait_ready
from hgr.loadtest.raw import raw_run

KINDS = ("single", "batch", "upload")


def load_photos(folder: Path) -> list[bytes]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not files:
        raise SystemExit(f"no JPEG photos in {folder}")
    return [p.read_bytes() for p in files]


def uniquify(jpeg: bytes, nonce: int) -> bytes:
    """The same picture with a COM segment carrying ``nonce``: new bytes, so a new cache key."""
    if not jpeg.startswith(b"\xff\xd8"):
        return jpeg
    text = f"hgr-load-{nonce}".encode()
    return jpeg[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


def request_args(kind: str, images: list[bytes]) -> dict[str, Any]:
    """httpx.post keyword arguments for one request of ``kind``."""
    if kind == "single":
        return {"url": "/detect-fingers", "json": {"image_base64": base64.b64encode(images[0]).decode()}}
    if kind == "batch":
        return {"url": "/detect-fingers-batch", "json": {"images": [
            {"image_id": str(i), "image_base64": base64.b64encode(img).decode()} for i, img in enumerate(images)]}}
    return {"url": "/detect-fingers-upload",
            "files": [("file", (f"{i}.jpg", img, "image/jpeg")) for i, img in enumerate(images)]}


def prepare(args: dict[str, Any]) -> dict[str, Any]:
    """``request_args`` with a JSON body encoded once, as bytes (an upload's multipart stays for httpx)."""
    if "json" not in args:
        return args
    return {"url": args["url"], "content": json.dumps(args["json"]).encode(),
            "headers": {"content-type": "application/json"}}


async def run_rest(url: str, requests: int, concurrency: int, kind: str, photos: list[bytes] | Path,
                   api_key: str | None = None, *, batch_size: int = 8, unique: bool = True,
                   timeout_s: float = 120.0) -> dict[str, Any]:
    """Send ``requests`` requests of ``kind`` with at most ``concurrency`` in flight; return the report. Every
    request body is built (and a JSON body encoded) before the clock starts: on a machine whose cores the
    service shares with this generator, base64 and JSON encoding are load the service never sees from its
    clients' own machines."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    pictures = load_photos(photos) if isinstance(photos, Path) else list(photos)
    per_request = 1 if kind == "single" else batch_size
    source = itertools.cycle(pictures)
    nonces = itertools.count(int(time.time() * 1000) % 10**9 * 1000)
    headers = {"X-API-Key": api_key} if api_key else {}
    statuses: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    latencies: list[float] = []
    images_ok = 0
    prepared = [prepare(request_args(kind, [uniquify(next(source), next(nonces)) if unique else next(source)
                                            for _ in range(per_request)])) for _ in range(requests)]
    todo = iter(prepared)

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal images_ok
        for args in todo:  # one shared iterator: each request is taken exactly once
            start = time.perf_counter()
            try:
                r = await client.post(**args)
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
                continue
            latencies.append((time.perf_counter() - start) * 1000)
            statuses[str(r.status_code)] += 1
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            if r.status_code != 200:
                codes[body.get("error", {}).get("code", "?")] += 1
            elif kind == "single":
                images_ok += 1
            else:
                for item in body.get("results", []):
                    if "error" in item:
                        codes[item["error"]["code"]] += 1
                    else:
                        images_ok += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout_s, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(max(1, concurrency))))
        elapsed = time.perf_counter() - started
    return {
        "url": url, "type": kind, "requests": requests, "concurrency": concurrency,
        "images_per_request": per_request, "duration_s": round(elapsed, 3),
        "requests_per_s": round(requests / elapsed, 2) if elapsed else None,
        "images_per_s": round(images_ok / elapsed, 2) if elapsed else None,
        "latency_ms": {**percentiles(latencies), "max": round(max(latencies), 3) if latencies else None},
        "status": dict(statuses), "error_codes": dict(codes),
    }


async def run(ctx: BenchContext) -> dict[str, Any]:
    """``hgr bench --sections rest``: a hub in a subprocess (cache and rate limit off, so every image
    reaches the model), then single and batch requests for about ``--duration`` seconds each. With the raw
    section before it, raw IMAGE mode runs again once the hub has stopped, and the ratios are to the mean of
    the two runs (this section's minutes apart from the first: a shared machine's drift falls on both sides)."""
    port = free_port()
    env = {**os.environ, "CACHE_ENABLED": "false", "RATE_LIMIT_ENABLED": "false", "AUTH_ENABLED": "false",
           "REDIS_URL": "", "REDIS_ENABLED": "false", "MQTT_URL": "", "LOG_LEVEL": "warning"}
    if ctx.args.workers:
        env["WORKERS"] = str(ctx.args.workers)
    workers = ctx.settings.resolved_workers() if not ctx.args.workers else ctx.args.workers
    raw = ctx.results.get("raw", {})
    # Requests for about --duration seconds each: at the service's own still engine's rate where the raw
    # section measured it, else at ~30 images/s per worker.
    rate = raw.get("image_litert", {}).get("fps") or 30 * workers
    images = max(20, int(ctx.args.duration * rate))
    proc = subprocess.Popen([sys.executable, "-m", "hgr", "hub", "--host", "127.0.0.1", "--port", str(port)],  # noqa: ASYNC220 - returns at once
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(wait_ready, url, proc)
        out: dict[str, Any] = {"url": url}
        ctx.log(f"rest: {images} single requests, concurrency {4 * workers}")
        out["single"] = await run_rest(url, images, 4 * workers, "single", ctx.frames)
        # Two batches per worker in flight: one is split over the workers while the other's last images finish.
        ctx.log(f"rest: {max(3, images // 8)} batch requests of 8, concurrency {2 * workers}")
        out["batch"] = await run_rest(url, max(3, images // 8), 2 * workers, "batch", ctx.frames)
    finally:
        stop_process(proc)
    if "image_mode" in raw:
        ctx.log(f"rest: raw IMAGE mode again, {workers} processes × {ctx.args.duration:.0f} s")
        frames, _ = await raw_run(ctx, workers, video=False)
        after = round(frames / ctx.args.duration, 1)
        baseline = (raw["image_mode"]["fps"] + after) / 2
        out["raw_image_fps"] = {"before": raw["image_mode"]["fps"], "after": after}
        for kind in ("single", "batch"):
            out[kind]["ratio_to_raw"] = round(out[kind]["images_per_s"] / baseline, 3)
    return out
