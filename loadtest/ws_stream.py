"""Simulated cameras for an edge: real photos streamed over WebSocket, latency measured at the client.

Also starts an edge in a subprocess for benchmarks and tests (``start_edge``), so the load generator
and the server never share an event loop or a core's worth of Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from hgr.common.contracts import OptionsDoc
from hgr.edge import protocol
from hgr.loadtest.procs import free_port, stop_process, wait_ready


def load_frames(folder: str | Path, limit: int | None = None, max_side: int = 640) -> list[bytes]:
    """Photos as camera frames: JPEG, at most ``max_side`` pixels wide or high (a 640×480 camera)."""
    frames = []
    for path in sorted(Path(folder).glob("*.jpg"))[:limit]:
        image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            continue
        scale = max_side / max(image.shape[:2])
        if scale < 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if ok:
            frames.append(jpeg.tobytes())
    if not frames:
        raise FileNotFoundError(f"no JPEG photos in {folder}")
    return frames


# --- an edge in a subprocess ---

def start_edge(port: int, env: dict[str, str] | None = None, *,
               log_file: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """``hgr edge`` on 127.0.0.1:``port`` with extra environment; wait with ``procs.wait_ready``, stop with
    ``procs.stop_process``."""
    full_env = {**os.environ, "LOG_FORMAT": "text", "LOG_LEVEL": "warning", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "hgr", "edge", "--host", "127.0.0.1", "--port", str(port)],
                            env=full_env, stdout=log_file, stderr=log_file)


def bench_edge_env(streams: int, workers: int | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of an edge ``hgr bench`` drives: no frame-rate limit or auth in the way, room for
    ``streams`` connections (and a few more), ``workers`` inference workers (None: the edge's own default),
    then ``extra`` over all that."""
    env = {"MAX_FPS": "100000", "MAX_CONNECTIONS": str(streams + 8), "AUTH_ENABLED": "false", "LOG_LEVEL": "warning"}
    if workers:
        env["WORKERS"] = str(workers)
    return {**env, **(extra or {})}


@contextlib.contextmanager
def running_edge(env: dict[str, str] | None = None, *, log_file: Any = subprocess.DEVNULL,
                 timeout: float = 180.0) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """``start_edge`` on a free port, ready (``/ready`` answers 200); yields (port, process) and stops
    it on the way out."""
    port = free_port()
    proc = start_edge(port, env, log_file=log_file)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, timeout)
        yield port, proc
    finally:
        stop_process(proc)


# --- one client ---

async def open_stream(url: str, *, subprotocols: list[str] | None = None,
                      headers: dict[str, str] | None = None) -> tuple[ClientConnection, dict[str, Any]]:
    """Connect and read the edge's ``hello``."""
    ws = await connect(url, subprotocols=subprotocols or [protocol.MSGPACK],  # type: ignore[arg-type]
                       additional_headers=headers, compression=None, max_size=None, open_timeout=30)
    hello = protocol.decode_server_message(await ws.recv())
    return ws, hello


@dataclass
class StreamReport:
    sent: int = 0
    results: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    dropped: int = 0  # sum of the results' "dropped"
    latencies_ms: list[float] = field(default_factory=list)  # send → result, client clock
    overhead_ms: list[float] = field(default_factory=list)  # latency minus the worker's decode + inference
    seqs: list[int] = field(default_factory=list)  # result seqs in arrival order
    duration_s: float = 0.0

    @property
    def unanswered(self) -> int:
        return self.sent - self.results - sum(self.errors.values()) - self.dropped


async def camera(url: str, frames: list[bytes], *, fps: float | None, duration: float,
                 opts: OptionsDoc | None = None, window: int = 2, drain_timeout: float = 10.0) -> StreamReport:
    """Stream ``frames`` in a loop at ``fps`` for ``duration`` seconds, then wait for the answer to the
    last frame. A paced camera never waits for results (a real one doesn't), so an edge that falls
    behind shows it as drops or latency. ``fps=None`` is an unthrottled stream: it keeps ``window``
    frames outstanding, so the edge always has the next frame waiting and never starves."""
    ws, _ = await open_stream(url)
    report, sent_at = StreamReport(), dict[int, float]()
    last_seq = -1
    done = asyncio.Event()
    answered = asyncio.Event()

    async def receive() -> None:
        async for raw in ws:
            msg = protocol.decode_server_message(raw)
            now = time.perf_counter()
            if msg["type"] == "result":
                report.results += 1
                report.dropped += msg["dropped"]
                report.seqs.append(msg["seq"])
                latency = (now - sent_at.pop(msg["seq"])) * 1000
                report.latencies_ms.append(latency)
                report.overhead_ms.append(latency - msg["timing"]["decode_ms"] - msg["timing"]["infer_ms"])
                for s in [s for s in sent_at if s < msg["seq"]]:
                    del sent_at[s]  # replaced on the edge: will never be answered
            elif msg["type"] == "error":
                report.errors[msg["code"]] = report.errors.get(msg["code"], 0) + 1
                if "seq" in msg:
                    sent_at.pop(msg["seq"], None)
            answered.set()
            if last_seq >= 0 and msg.get("seq") == last_seq:
                done.set()
                return

    receiver = asyncio.create_task(receive())
    start = time.perf_counter()
    try:
        seq = 0
        while (now := time.perf_counter()) - start < duration:
            if fps is not None:
                await asyncio.sleep(max(0.0, start + seq / fps - now))
            else:
                while len(sent_at) >= window:
                    answered.clear()
                    await asyncio.wait_for(answered.wait(), drain_timeout)
            sent_at[seq] = time.perf_counter()
            await ws.send(protocol.encode_frame(seq, frames[seq % len(frames)], ts=seq,
                                                opts=opts if seq == 0 else None))
            seq += 1
        report.sent = seq
        last_seq = seq - 1
        if last_seq in sent_at:  # else: already answered
            try:
                await asyncio.wait_for(done.wait(), drain_timeout)
            except TimeoutError:
                pass
        report.duration_s = time.perf_counter() - start
    finally:
        receiver.cancel()
        await ws.close()
    return report
