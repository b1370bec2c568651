"""The good clients of a chaos run: REST single images and one WebSocket camera."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import httpx

from hgr.loadtest.rest import request_args, uniquify
from hgr.loadtest.ws_stream import camera
from research.chaos.record import Record, Run
from research.chaos.stack import Stack


async def rest_client(stack: Stack, photos: list[bytes], run: Run, stop: asyncio.Event, nonces: Iterator[int]) -> None:
    """Single images, each made unique (so each reaches the model), one after another."""
    async with httpx.AsyncClient(timeout=30) as client:
        for photo in itertools.cycle(photos):
            if stop.is_set():
                return
            t0 = run.now()
            args = request_args("single", [uniquify(photo, next(nonces))])
            try:
                r = await client.post(stack.hub_url + args.pop("url"), **args)
                ok = r.status_code == 200
                outcome = str(r.status_code) if ok else f"{r.status_code} {r.json()['error']['code']}"
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                ok, outcome = False, type(exc).__name__
            t1 = run.now()
            run.good["rest"].append(Record(t0, t1, int(ok), int(not ok), [(t1 - t0) * 1000] if ok else [], outcome))
            if not ok:
                await asyncio.sleep(0.2)  # a polite client backs off on 503 or a refused connection


async def ws_client(stack: Stack, frames: list[bytes], run: Run, stop: asyncio.Event, fps: float | None = 5.0,
                    chunk_s: float = 5.0) -> None:
    """A camera (``ws_stream.camera``) in chunks of ``chunk_s`` seconds, each chunk one record."""
    url = stack.edge_url.replace("http", "ws") + "/ws"
    while not stop.is_set():
        t0 = run.now()
        try:
            report = await camera(url, frames, fps=fps, duration=chunk_s)
            failed = report.sent - report.results - report.dropped
            outcome = ",".join(f"{k}:{v}" for k, v in report.errors.items()) or "ok"
            run.good["ws"].append(Record(t0, run.now(), report.results, failed, report.latencies_ms, outcome))
        except Exception as exc:  # noqa: BLE001 - the edge went away mid-chunk: the chunk failed, go on
            run.good["ws"].append(Record(t0, run.now(), 0, max(1, int(chunk_s * (fps or 5))), [], type(exc).__name__))
            await asyncio.sleep(0.5)
