"""Chaos and soak: real processes, good and hostile traffic together, injected faults; one JSON report.

    python -m hgr.loadtest.chaos --duration 300 [--out report.json]    # the soak of docs/deployment.md
    python -m hgr.loadtest.chaos --mode acceptance [--out report.json] # issue 13's two measurements

Everything runs on loopback and is bounded: a private ``redis-server`` and ``mosquitto`` on free ports, one
``hgr hub`` and one ``hgr edge`` (one inference worker each), all stopped at the end; the run stops by
itself after ``--duration`` seconds.

``soak`` (default): good clients (REST single images at concurrency 2, one WebSocket camera at 5 fps) and
one hostile action per second (the issue-13 repros in turn: a 32767-px PNG, an 8 MB ``[[],[],…]`` body, lone
surrogates, a JPEG cut in the middle, nested JSON and NaN on a WebSocket, slow headers, a wrong Content-Type,
GET on a POST route) while the faults hit in turn: kill the edge's worker, restart Redis, stop the broker
(and start it again), reload the hub (SIGTERM, start again on the same port), kill the hub's worker. A fault's
documented effect lasts from its start until the affected part is back (``recovered_s``) plus 2 s; good
requests in those windows are reported apart. The report: good clients' success rate and p99 (outside
and inside the windows), the hostile answers, worker restarts (expected: one per killed worker), and
RSS and readiness every second.

``acceptance``: undisturbed good-client throughput for ``--phase`` seconds, the same with one crafted
request per second, undisturbed again (the ratio is against the mean of the two undisturbed phases, to
cancel the drift of a shared machine), ``/ready`` polled throughout; then ``/health`` latency and hub RSS
while a 63 MB hostile body arrives, against the same measured just before.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np

from hgr.common.percentiles import percentiles
from hgr.edge import protocol
from hgr.loadtest.helpers import DEFAULT_PHOTOS, ROOT, free_port, stop_process, wait_for_port, wait_ready
from hgr.loadtest.rest import request_args, uniquify
from hgr.loadtest.ws_stream import camera, load_frames, open_stream, start_edge

GRACE_S = 2.0  # a fault's effect is counted until its part is back, plus this
FIXTURE_PHOTOS = ROOT / "tests" / "fixtures" / "hands"


# --- the processes ---

def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def worker_pids(pid: int) -> list[int]:
    out = []
    for child in _children(pid):
        with contextlib.suppress(OSError):
            if b"hgr.common.inference.worker" in Path(f"/proc/{child}/cmdline").read_bytes():
                out.append(child)
    return out


class Stack:
    """redis-server, mosquitto, hub and edge of this run, on free loopback ports, in a temporary folder."""

    def __init__(self, folder: Path, extra_env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.redis_port, self.broker_port = free_port(), free_port()
        self.hub_port, self.edge_port = free_port(), free_port()
        self.redis: subprocess.Popen[bytes] | None = None
        self.broker: subprocess.Popen[bytes] | None = None
        self.hub: subprocess.Popen[bytes] | None = None
        self.edge: subprocess.Popen[bytes] | None = None
        self.hub_starts = 0
        self.env = {**os.environ, "LOG_FORMAT": "text", "LOG_LEVEL": "warning", "WORKERS": "1",
                    "AUTH_ENABLED": "false", "RATE_LIMIT_REQUESTS": "1000000", "CACHE_ENABLED": "true",
                    "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0", "REDIS_ENABLED": "true",
                    "MQTT_URL": f"mqtt://127.0.0.1:{self.broker_port}", "METRICS_INTERVAL": "2",
                    "MQTT_OUTBOX_SETTLE": "0.5", "HEADER_TIMEOUT": "5", "EDGE_ID": "chaos-edge", **(extra_env or {})}

    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}"

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{self.edge_port}"

    def _log(self, name: str) -> Any:
        return (self.folder / f"{name}.log").open("ab")

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no"], stdout=self._log("redis"),
                                      stderr=subprocess.STDOUT, cwd=self.folder)  # nothing lands in the repo
        wait_for_port("127.0.0.1", self.redis_port, 20)

    def start_broker(self) -> None:
        conf = self.folder / "mosquitto.conf"
        conf.write_text(f"listener {self.broker_port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n")
        self.broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=self._log("mosquitto"),
                                       stderr=subprocess.STDOUT, cwd=self.folder)
        wait_for_port("127.0.0.1", self.broker_port, 20)

    def start_hub(self) -> None:
        self.hub_starts += 1
        self.hub = subprocess.Popen([sys.executable, "-m", "hgr", "hub", "--host", "127.0.0.1", "--port",
                                     str(self.hub_port)], env={**self.env, "MQTT_CLIENT_ID": "chaos-hub"},
                                    stdout=self._log("hub"), stderr=subprocess.STDOUT, cwd=self.folder)
        wait_ready(self.hub_url, self.hub, 240)

    def start_edge(self) -> None:
        self.edge = start_edge(self.edge_port, self.env, log_file=self._log("edge"))
        wait_ready(self.edge_url, self.edge, 240)

    def start(self) -> None:
        self.start_redis()
        self.start_broker()
        self.start_hub()
        self.start_edge()

    def stop(self) -> None:
        for proc in (self.edge, self.hub):
            if proc is not None:
                stop_process(proc, 30)
        for proc in (self.broker, self.redis):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    def rss(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, proc in (("hub", self.hub), ("edge", self.edge)):
            if proc is not None and proc.poll() is None:
                out[name] = round(_rss_mb(proc.pid), 1)
                out[f"{name}_workers"] = round(sum(_rss_mb(w) for w in worker_pids(proc.pid)), 1)
        return out


@contextlib.contextmanager
def running_stack(extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    for tool in ("redis-server", "mosquitto"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed; the chaos run starts its own")
    with tempfile.TemporaryDirectory(prefix="hgr-chaos-") as folder:
        stack = Stack(Path(folder), extra_env)
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()


# --- what the run records ---

@dataclass
class Record:
    t0: float  # seconds since the run started
    t1: float
    ok: int  # images answered with a result
    failed: int  # images answered with an error, or lost with the connection
    latencies_ms: list[float]
    outcome: str


@dataclass
class Fault:
    name: str
    at_s: float
    recovered_s: float | None = None
    detail: str = ""

    def covers(self, t0: float, t1: float) -> bool:
        end = (self.recovered_s if self.recovered_s is not None else float("inf")) + GRACE_S
        return t0 <= end and t1 >= self.at_s


@dataclass
class Run:
    start: float = field(default_factory=time.monotonic)
    good: dict[str, list[Record]] = field(default_factory=lambda: {"rest": [], "ws": []})
    hostile: list[tuple[float, str, str]] = field(default_factory=list)  # (t, kind, outcome)
    faults: list[Fault] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    restarts: Counter[str] = field(default_factory=Counter)  # worker restarts seen, by service
    restarts_by_pid: dict[tuple[str, int], int] = field(default_factory=dict)

    def now(self) -> float:
        return time.monotonic() - self.start


# --- good clients ---

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


# --- hostile traffic: issue 13's repros ---

def _png(width: int, height: int) -> bytes:
    _, png = cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))
    return png.tobytes()


WIDE_PNG = _png(32_767, 8)


def _status(r: httpx.Response) -> str:
    try:
        return f"{r.status_code} {r.json()['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return str(r.status_code)


async def _bomb(size: int) -> AsyncIterator[bytes]:
    """Exactly ``size`` (≥ 4) bytes of ``[[],[],…,[]]``: millions of empty lists, the issue's hostile body."""
    chunk = b"[]," * 21_000
    yield b"["
    left = size - 4
    while left >= len(chunk):
        yield chunk
        left -= len(chunk)
    yield b"[]," * (left // 3) + b" " * (left % 3) + b"[]]"


async def _one_string(size: int) -> AsyncIterator[bytes]:
    """Exactly ``size`` bytes of a well-formed batch whose one image is a ``size``-byte base64 string: read in
    full and parsed (the costliest body the JSON limits let through)."""
    head, tail = b'{"images": [{"image_base64": "', b'"}]}'
    left = size - len(head) - len(tail)
    yield head
    while left > 0:
        piece = min(left, 1 << 20)
        yield b"A" * piece
        left -= piece
    yield tail


class Hostile:
    """One crafted action per call, in turn; each returns what the server answered."""

    def __init__(self, stack: Stack, photo: bytes, bomb_bytes: int = 8 * 1024 * 1024) -> None:
        self.stack, self.photo, self.bomb_bytes = stack, photo, bomb_bytes
        self.held: list[socket.socket] = []  # slow-header sockets, closed by the server's HEADER_TIMEOUT
        self.actions: list[tuple[str, Callable[[httpx.AsyncClient], Awaitable[str]]]] = [
            ("wide_png", self.wide_png), ("json_bomb", self.json_bomb), ("surrogate", self.surrogate),
            ("cut_jpeg", self.cut_jpeg), ("ws_nested_nan", self.ws_nested_nan), ("ws_wide_png", self.ws_wide_png),
            ("slow_headers", self.slow_headers), ("wrong_type", self.wrong_type), ("get_post_route", self.get_post)]
        self._turn = itertools.cycle(self.actions)

    async def next(self, client: httpx.AsyncClient) -> tuple[str, str]:
        name, action = next(self._turn)
        try:
            return name, await action(client)
        except httpx.HTTPError as exc:
            return name, f"unreachable {type(exc).__name__}"
        except (OSError, TimeoutError) as exc:
            return name, f"unreachable {type(exc).__name__}"

    async def wide_png(self, client: httpx.AsyncClient) -> str:
        return _status(await client.post(self.stack.hub_url + "/detect-fingers",
                                         json={"image_base64": base64.b64encode(WIDE_PNG).decode()}))

    async def json_bomb(self, client: httpx.AsyncClient) -> str:
        return _status(await client.post(self.stack.hub_url + "/detect-fingers-batch", content=_bomb(self.bomb_bytes),
                                         headers={"content-type": "application/json"}))

    async def surrogate(self, client: httpx.AsyncClient) -> str:
        body = f'{{"image_base64": "{base64.b64encode(self.photo).decode()}", "image_id": "\\ud800"}}'
        return _status(await client.post(self.stack.hub_url + "/detect-fingers", content=body.encode(),
                                         headers={"content-type": "application/json"}))

    async def cut_jpeg(self, client: httpx.AsyncClient) -> str:
        cut = self.photo[: len(self.photo) // 2] + b"\xff\xd9"
        return _status(await client.post(self.stack.hub_url + "/detect-fingers",
                                         json={"image_base64": base64.b64encode(cut).decode()}))

    async def wrong_type(self, client: httpx.AsyncClient) -> str:
        return _status(await client.post(self.stack.hub_url + "/detect-fingers", content=b'{"image_base64": ""}',
                                         headers={"content-type": "text/plain"}))

    async def get_post(self, client: httpx.AsyncClient) -> str:
        return _status(await client.get(self.stack.hub_url + "/detect-fingers-batch"))

    async def _ws(self, subprotocol: str, messages: list[bytes | str]) -> str:
        ws, _ = await open_stream(self.stack.edge_url.replace("http", "ws") + "/ws", subprotocols=[subprotocol])
        try:
            codes = []
            for message in messages:
                await ws.send(message)
                answer = protocol.decode_server_message(await asyncio.wait_for(ws.recv(), 30))
                codes.append(str(answer.get("code", answer["type"])))
            return "ws " + ",".join(codes)
        finally:
            await ws.close()

    async def ws_nested_nan(self, client: httpx.AsyncClient) -> str:
        return await self._ws(protocol.JSON, ["[" * 1500, '{"type": "frame", "seq": 1, "ts": NaN, "image": ""}'])

    async def ws_wide_png(self, client: httpx.AsyncClient) -> str:
        return await self._ws(protocol.MSGPACK, [WIDE_PNG])

    async def slow_headers(self, client: httpx.AsyncClient) -> str:
        sock = socket.create_connection(("127.0.0.1", self.stack.hub_port), timeout=2)
        sock.sendall(b"POST /detect-fingers HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        self.held = [s for s in self.held if s.fileno() != -1][-50:] + [sock]
        return "held"

    def close(self) -> None:
        for sock in self.held:
            sock.close()


async def hostile_client(hostile: Hostile, run: Run, stop: asyncio.Event, interval_s: float = 1.0) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        while not stop.is_set():
            started = time.monotonic()
            t = run.now()
            name, outcome = await hostile.next(client)
            run.hostile.append((t, name, outcome))
            await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))


# --- sampling ---

_RESTARTS = re.compile(r'^hgr_worker_restarts_total\{service="(\w+)"\} ([0-9.]+)$', re.MULTILINE)


async def sampler(stack: Stack, run: Run, stop: asyncio.Event, every_s: float = 1.0) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        while not stop.is_set():
            # A probe takes time (four requests on a busy machine): it is stamped with when it started and
            # when it ended, so a fault that starts while it runs covers it.
            sample: dict[str, Any] = {"t": round(run.now(), 2), **stack.rss()}
            for name, url, proc in (("hub", stack.hub_url, stack.hub), ("edge", stack.edge_url, stack.edge)):
                try:
                    sample[f"{name}_ready"] = (await client.get(url + "/ready")).status_code
                    text = (await client.get(url + "/metrics")).text
                    for service, count in _RESTARTS.findall(text):
                        if proc is not None and service == name:  # each process labels its own pool
                            run.restarts_by_pid[(name, proc.pid)] = int(float(count))
                except httpx.HTTPError:
                    sample[f"{name}_ready"] = None
            sample["t_end"] = round(run.now(), 2)
            run.samples.append(sample)
            await asyncio.sleep(every_s)


# --- faults ---

async def _until(check: Callable[[], Awaitable[bool]], deadline_s: float = 120) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        with contextlib.suppress(Exception):
            if await check():
                return True
        await asyncio.sleep(0.2)
    return False


async def _ready(url: str) -> bool:
    async with httpx.AsyncClient(timeout=2) as client:
        return (await client.get(url + "/ready")).status_code == 200


async def kill_worker(stack: Stack, which: str) -> str:
    proc = stack.edge if which == "edge" else stack.hub
    assert proc is not None
    before = worker_pids(proc.pid)
    for pid in before:
        os.kill(pid, signal.SIGKILL)

    async def replaced() -> bool:
        now = worker_pids(proc.pid)
        return bool(now) and not set(now) & set(before) and await _ready(stack.edge_url if which == "edge"
                                                                          else stack.hub_url)
    await _until(replaced)
    return f"killed {before}"


async def restart_redis(stack: Stack) -> str:
    assert stack.redis is not None
    stack.redis.kill()
    await asyncio.to_thread(stack.redis.wait)
    await asyncio.sleep(1.0)
    await asyncio.to_thread(stack.start_redis)
    return "killed and started again (empty)"


async def stop_broker(stack: Stack, outage_s: float) -> str:
    assert stack.broker is not None
    stack.broker.terminate()
    await asyncio.to_thread(stack.broker.wait)
    await asyncio.sleep(outage_s)
    await asyncio.to_thread(stack.start_broker)
    return f"down {outage_s:g} s"


async def reload_hub(stack: Stack) -> str:
    assert stack.hub is not None
    await asyncio.to_thread(stop_process, stack.hub, 30)
    await asyncio.to_thread(stack.start_hub)
    return "SIGTERM, started again on the same port"


async def inject(stack: Stack, run: Run, duration: float, stop: asyncio.Event) -> None:
    schedule: list[tuple[float, str, Callable[[], Awaitable[str]]]] = [
        (0.15, "kill_edge_worker", lambda: kill_worker(stack, "edge")),
        (0.30, "restart_redis", lambda: restart_redis(stack)),
        (0.45, "stop_broker", lambda: stop_broker(stack, min(10.0, 0.05 * duration))),
        (0.60, "reload_hub", lambda: reload_hub(stack)),
        (0.80, "kill_hub_worker", lambda: kill_worker(stack, "hub")),
    ]
    for fraction, name, action in schedule:
        delay = fraction * duration - run.now()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            return
        fault = Fault(name, round(run.now(), 2))
        run.faults.append(fault)
        fault.detail = await action()
        fault.recovered_s = round(run.now(), 2)


# --- the report ---

def _summary(records: list[Record], faults: list[Fault]) -> dict[str, Any]:
    outside = [r for r in records if not any(f.covers(r.t0, r.t1) for f in faults)]
    inside = [r for r in records if r not in outside]

    def part(rs: list[Record]) -> dict[str, Any]:
        ok, failed = sum(r.ok for r in rs), sum(r.failed for r in rs)
        lat = [x for r in rs for x in r.latencies_ms]
        return {"ok": ok, "failed": failed, "success_rate": round(ok / (ok + failed), 4) if ok + failed else None,
                "latency_ms": percentiles(lat),
                "failures": dict(Counter(r.outcome for r in rs if r.failed).most_common(8))}
    return {"outside_faults": part(outside), "inside_faults": part(inside)}


def _rss_trend(samples: list[dict[str, Any]], key: str) -> dict[str, Any]:
    values = [s[key] for s in samples if s.get(key)]
    if len(values) < 10:
        return {"samples": len(values)}
    fifth = max(1, len(values) // 5)
    first, last = values[fifth: 2 * fifth], values[-fifth:]  # skip the first fifth: warm-up
    return {"start_mb": round(sum(first) / len(first), 1), "end_mb": round(sum(last) / len(last), 1),
            "max_mb": round(max(values), 1), "growth_mb": round(sum(last) / len(last) - sum(first) / len(first), 1)}


def soak_report(run: Run, duration: float) -> dict[str, Any]:
    for (service, _), count in run.restarts_by_pid.items():
        run.restarts[service] += count
    killed = Counter("edge" if f.name == "kill_edge_worker" else "hub" for f in run.faults if f.name.startswith("kill"))
    hostile_5xx = [(t, k, o) for t, k, o in run.hostile if o[:1] == "5"
                   and not any(f.covers(t, t) for f in run.faults)]
    good = {kind: _summary(records, run.faults) for kind, records in run.good.items()}
    edge_rss = _rss_trend(run.samples, "edge")
    unready = [s for s in run.samples if (s.get("hub_ready") != 200 or s.get("edge_ready") != 200)
               and not any(f.covers(s["t"], s.get("t_end", s["t"])) for f in run.faults)]
    verdict = {
        "good_success_outside_faults_ge_99pct": all(
            (g["outside_faults"]["success_rate"] or 0) >= 0.99 for g in good.values()),
        "hostile_5xx_outside_faults": len(hostile_5xx),
        "worker_restarts_equal_kills": all(run.restarts.get(k, 0) == killed.get(k, 0) for k in ("hub", "edge")),
        "edge_rss_growth_lt_50mb": edge_rss.get("growth_mb", 0) < 50,
        "unready_samples_outside_faults": len(unready),
    }
    verdict["passed"] = (verdict["good_success_outside_faults_ge_99pct"] and not hostile_5xx
                         and verdict["worker_restarts_equal_kills"] and verdict["edge_rss_growth_lt_50mb"]
                         and not unready)
    return {
        "mode": "soak", "duration_s": duration, "cpus": os.cpu_count(),
        "faults": [vars(f) for f in run.faults], "grace_s": GRACE_S, "good": good,
        "unready_outside_faults": unready[:10],
        "hostile": {"sent": len(run.hostile), "5xx_outside_faults": hostile_5xx[:10], "outcomes": {
            kind: dict(Counter(o for _, k, o in run.hostile if k == kind))
            for kind in sorted({k for _, k, _ in run.hostile})}},
        "worker_restarts": dict(run.restarts), "workers_killed": dict(killed),
        "rss": {"edge": edge_rss, "edge_workers": _rss_trend(run.samples, "edge_workers"),
                "hub": _rss_trend(run.samples, "hub"), "hub_workers": _rss_trend(run.samples, "hub_workers")},
        "samples": run.samples, "verdict": verdict,
    }


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
            rss.append(_rss_mb(pid))
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
            answer = _status(r)
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
        idle = await _big_body(stack, lambda: _bomb(4), 4)  # a 4-byte body: the probe's undisturbed numbers
        bomb = await _big_body(stack, lambda: _bomb(size), size)
        string = await _big_body(stack, lambda: _one_string(size), size)
    return {
        "mode": "acceptance", "cpus": os.cpu_count(), "phase_s": phase_s,
        "throughput": {"undisturbed_1": calm1, "crafted_1_per_s": crafted, "undisturbed_2": calm2,
                       "ratio": round(crafted["images_per_s"] / undisturbed, 3) if undisturbed else None},
        "body_63mb": {"idle": idle, "empty_lists": bomb, "one_big_string": string,
                      "note": "health_ms during the body vs idle; rss_max_mb - rss_first_mb is the growth"},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hgr.loadtest.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("soak", "acceptance"), default="soak")
    parser.add_argument("--duration", type=float, default=300.0, help="soak: seconds (5 to 3600)")
    parser.add_argument("--phase", type=float, default=30.0, help="acceptance: seconds per throughput phase")
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS if DEFAULT_PHOTOS.is_dir() else FIXTURE_PHOTOS)
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    duration = min(3600.0, max(5.0, args.duration))
    report = asyncio.run(soak(duration, args.photos) if args.mode == "soak"
                         else acceptance(min(600.0, max(5.0, args.phase)), args.photos))
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text if args.mode == "acceptance" else json.dumps({k: v for k, v in report.items() if k != "samples"},
                                                             indent=1))
    return 0 if report.get("verdict", {}).get("passed", True) else 1


if __name__ == "__main__":
    sys.exit(main())
