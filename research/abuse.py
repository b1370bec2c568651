"""Issue 20's cheap attacks (rows 6-9) against a legitimate stream on the same edge, measured A B A.
Prints a table (stderr) and the JSON report (stdout; ``--out`` writes it too).

    python -m research.abuse --window 20 --rows 6,7,8,9

Per row, fresh processes on 127.0.0.1: an ``hgr edge`` (rows 7-9), or a private ``redis-server``, a private
``mosquitto`` WITHOUT ACL (the dev setup: anyone may publish as any edge), an ``hgr hub`` and an ``hgr edge``
reporting to them (row 6; ``research.chaos.stack``). A legitimate stream (``--fps`` frames a second of real
hand photos, ``hgr.loadtest.ws_stream.camera``: paced, never waiting for answers) runs three windows of
``--window`` seconds each: alone, under the row's attack, alone again, so drift between the two alone
windows shows. During every window a prober GETs ``/health`` of the attacked process at 20 Hz (a new
connection each time, as a health checker does; row 6 probes the hub and the edge) and a sampler reads the
attacked process's RSS at 5 Hz. The attack runs in a process of its own (``research.chaos.hostile``'s
attackers), started and imported before the window, at ``--attacker-nice`` (10): it stands for another
machine, so where it competes for a core the edge comes first (the CPU it used is reported, and so is
the rate it reached).

The rows, each at the issue's rate (the attacks that are cut off reconnect, at most ``--reconnects``
connections a second: beyond that it is a handshake flood, another attack):

- 6: made-up edge ids on the broker, a birth and a metrics message each, at ``--fake-edge-rate`` ids a
  second (26 000: the issue's 50 000 in 1.9 s; the rate reached is reported), against the hub. Also
  reported: the hub's ``/metrics`` size, the edge ids it tracks and refuses, and the real edge's metrics
  messages lost on the way (its sequence numbers the hub never stored, and the hub's gap count).
- 7: no key, WebSocket: pings as fast as the edge takes them, never reading a pong (the issue: 400 000 on
  one connection; at most that many per connection here).
- 8: no key, WebSocket: a binary message's first frame, then 1-byte continuation frames as fast as taken.
- 9: direct to the edge: one 80 MB header, then a million headers, connection after connection.

Per row: the legitimate stream's results per second in each window and the ratio of the attacked window
to the mean of the two alone; ``/health`` p50/p99/max per window; the attacked process's RSS before the
attack, its peak during the attack and the second alone window, and at the end; the CPU seconds of the
attacked processes per window (what the attack costs them); what the attacker sent and how the server
ended its connections. Speed is machine-dependent: read the ratios, within one run
(docs/benchmarks.md "Cheap attacks against a legitimate stream"). Every loop is bounded by the windows;
every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from hgr.common.percentiles import percentiles
from hgr.loadtest import ws_stream
from hgr.loadtest.procs import cpu_seconds, rss_mb, sample_sum
from research.chaos.stack import Stack
from research.paths import DEFAULT_PHOTOS

ROWS = ("6", "7", "8", "9")
ATTACKS = {
    "6": "made-up edge ids on a broker without ACL (a birth + a metrics message each)",
    "7": "WebSocket pings, never reading a pong",
    "8": "WebSocket 1-byte continuation frames",
    "9": "an 80 MB header / a million headers, direct to the edge",
}
PROBE_HZ, RSS_HZ = 20.0, 5.0
PREFIX = "hgr/v1"  # MQTT_TOPIC_PREFIX's default: the made-up edges publish where the hub listens
OBSERVER_KEY = "abuse-observer-key-0123456789"  # fleet:read, for the real edge's view at the hub
EDGE_ID = "abuse-edge"


def _log(message: str) -> None:
    print(f"[abuse] {message}", file=sys.stderr, flush=True)


# --- the attacker: a process of its own ---

@dataclass
class AttackPlan:
    row: str
    seconds: float
    edge_port: int = 0
    broker_port: int = 0
    reconnects: float = 5.0  # connections a second at most, for the attacks the edge cuts off
    fake_edge_rate: float = 26_000.0
    nice: int = 10


async def _ws_flood(plan: AttackPlan, first: bytes, batch: bytes, per_batch: int, per_connection: int
                    ) -> dict[str, Any]:
    """Rows 7 and 8: a connection written to as fast as the edge takes it, never read, until it is cut
    off (then the close code it got), the connection's quota is sent or the time is up; then the next."""
    from research.chaos.hostile import close_seen, flood, raw_ws
    end = time.monotonic() + plan.seconds
    frames = connections = cut_off = 0
    outcomes: Counter[str] = Counter()
    while (left := end - time.monotonic()) > 0:
        started = time.monotonic()
        connections += 1
        try:
            reader, writer = await raw_ws(plan.edge_port, timeout_s=left)
        except (OSError, TimeoutError) as exc:
            outcomes[f"not opened: {type(exc).__name__}"] += 1
        else:
            writer.write(first)
            sent, cut = await flood(writer, batch, total=per_connection, per_batch=per_batch,
                                    seconds=end - time.monotonic())
            frames, cut_off = frames + sent, cut_off + cut
            if cut or sent >= per_connection:  # the edge's answer is there (or comes within its linger)
                code = await close_seen(reader, timeout_s=max(0.1, min(5.0, end - time.monotonic())))
                outcomes[f"close {code}" if code is not None else "no close frame"] += 1
            else:
                outcomes["open at the window's end"] += 1
            writer.close()
        await asyncio.sleep(max(0.0, min(end - time.monotonic(), 1 / plan.reconnects - (time.monotonic() - started))))
    return {"connections": connections, "frames_sent": frames, "cut_off": cut_off, "outcomes": dict(outcomes)}


async def _row7(plan: AttackPlan) -> dict[str, Any]:
    from research.chaos.hostile import PING
    return await _ws_flood(plan, b"", PING * 10_000, 10_000, 400_000)


async def _row8(plan: AttackPlan) -> dict[str, Any]:
    from research.chaos.hostile import FIRST_FRAGMENT, ONE_BYTE_FRAGMENT
    return await _ws_flood(plan, FIRST_FRAGMENT, ONE_BYTE_FRAGMENT * 10_000, 10_000, 10**9)


async def _row9(plan: AttackPlan) -> dict[str, Any]:
    """An 80 MB header, then a million headers, on one connection after another until the time is up."""
    from research.chaos.hostile import MANY_HEADERS, ONE_HEADER, endless_head
    end = time.monotonic() + plan.seconds
    sent_bytes = connections = 0
    outcomes: Counter[str] = Counter()
    for name, (start, chunk, limit) in itertools.cycle((("one_header", ONE_HEADER), ("many_headers", MANY_HEADERS))):
        if (left := end - time.monotonic()) <= 0:
            break
        started = time.monotonic()
        connections += 1
        try:
            sent, answer = await endless_head(plan.edge_port, start, chunk, limit, seconds=left,
                                              timeout_s=max(0.1, min(5.0, left)))
        except (OSError, TimeoutError) as exc:
            outcomes[f"{name}: not opened: {type(exc).__name__}"] += 1
            continue
        sent_bytes += sent
        status = answer.split(b" ", 2)[1] if answer.startswith(b"HTTP/") else answer[:20] or b"no answer"
        outcomes[f"{name}: {status.decode(errors='replace')}"] += 1
        await asyncio.sleep(max(0.0, min(end - time.monotonic(), 1 / plan.reconnects - (time.monotonic() - started))))
    return {"connections": connections, "bytes_sent": sent_bytes, "outcomes": dict(outcomes)}


async def _row6(plan: AttackPlan) -> dict[str, Any]:
    """Made-up edge ids at ``fake_edge_rate`` a second for ``seconds``, QoS 1, each id a birth and a
    metrics message; a broker that takes them slower than that slows the sender (TCP), and the rate
    reached is reported."""
    from research.chaos.hostile import RawPublisher, fake_edge
    tag = uuid.uuid4().hex[:6]
    publisher = await RawPublisher.connect("127.0.0.1", plan.broker_port, f"abuse-{tag}")
    ids = 0
    try:
        start = time.monotonic()
        end = start + plan.seconds
        while (now := time.monotonic()) < end:
            due = min(int((now - start) * plan.fake_edge_rate), int(plan.seconds * plan.fake_edge_rate))
            for _ in range(min(due - ids, 2000)):  # a batch, then the broker gets to push back
                fake_edge(publisher, PREFIX, f"fake-{tag}-{ids}")
                ids += 1
            await publisher.drain()
            if ids >= due:
                await asyncio.sleep(0.005)  # pacing: the next ids are due in 5 ms
        elapsed = time.monotonic() - start
        acked = await publisher.wait_acked(publisher.published, 10)
    finally:
        await publisher.close()
    return {"fake_edges": ids, "messages": publisher.published, "ids_per_s": round(ids / elapsed, 1),
            "all_acked": acked}


def _attacker_main(plan: AttackPlan, pipe: Connection, go: Any) -> None:
    """The attack process: import everything, say so, wait for the window, attack, report."""
    from research.chaos import hostile  # noqa: F401 - the heavy imports happen before the window
    os.nice(plan.nice)  # the attacker stands for a remote machine: the edge's CPU comes first
    pipe.send("ready")
    if not go.wait(120):
        pipe.send({"error": "never started"})
        return
    cpu = time.process_time()
    try:
        result = asyncio.run({"6": _row6, "7": _row7, "8": _row8, "9": _row9}[plan.row](plan))
    except Exception as exc:  # noqa: BLE001 - reported, so the run says what the attacker met
        result = {"error": f"{type(exc).__name__}: {exc}"}
    pipe.send({**result, "attacker_cpu_s": round(time.process_time() - cpu, 2)})


class Attacker:
    """The attack process of one window: started and imported before it, released at its start."""

    def __init__(self, plan: AttackPlan) -> None:
        ctx = mp.get_context("spawn")
        self.plan = plan
        self.pipe, child = ctx.Pipe()
        self.go = ctx.Event()
        self.proc = ctx.Process(target=_attacker_main, args=(plan, child, self.go), daemon=True)
        self.proc.start()
        if not self.pipe.poll(120) or self.pipe.recv() != "ready":
            self.stop()
            raise RuntimeError("the attacker process did not start")

    def release(self) -> None:
        self.go.set()

    def result(self) -> dict[str, Any]:
        """What the attacker reports when its time is up (it ends itself; waited for at most 60 s more)."""
        outcome: dict[str, Any] = {"error": "no report"}
        if self.pipe.poll(self.plan.seconds + 60):
            outcome = self.pipe.recv()
        self.stop()
        return outcome

    def stop(self) -> None:
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


# --- what is measured during a window ---

async def _health_ms(port: int, timeout_s: float = 10.0) -> tuple[float, bool]:
    """One ``GET /health`` on a new connection: (milliseconds to the end of the answer, answered 200)."""
    start = time.perf_counter()
    ok = False
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout_s)
        try:
            writer.write(b"GET /health HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), timeout_s)
            ok = answer.startswith(b"HTTP/1.1 200 ")
        finally:
            writer.close()
    except (OSError, TimeoutError):
        pass
    return (time.perf_counter() - start) * 1000, ok


async def _probe(port: int, stop: asyncio.Event) -> dict[str, Any]:
    """``/health`` at PROBE_HZ until ``stop``, one after another: a stalled answer delays the next probe,
    and shows as its own latency."""
    latencies: list[float] = []
    failed = 0
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while not stop.is_set():
        ms, ok = await _health_ms(port)
        latencies.append(ms)
        failed += not ok
        next_at = max(next_at + 1 / PROBE_HZ, loop.time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), next_at - loop.time())
    return {**percentiles(latencies, (50, 99)), "max": round(max(latencies), 3) if latencies else None,
            "probes": len(latencies), "failed": failed}


async def _sample_rss(pids: dict[str, int], stop: asyncio.Event) -> dict[str, dict[str, float | None]]:
    samples: dict[str, list[float]] = {name: [] for name in pids}
    while True:
        for name, pid in pids.items():
            samples[name].append(rss_mb(pid))
        if stop.is_set():
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1 / RSS_HZ)
    return {name: {"first": round(v[0], 1), "max": round(max(v), 1), "last": round(v[-1], 1)}
            for name, v in samples.items()}


def _get(url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> bytes:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as r:
            return bytes(r.read())
    except urllib.error.HTTPError as exc:
        return bytes(exc.read())


# --- the processes of a row ---

@dataclass
class Target:
    edge_port: int
    edge_pid: int
    attacked: str  # "edge" or "hub": whose RSS is the row's
    pids: dict[str, int]  # process → pid, RSS sampled
    health: dict[str, int]  # process → port, /health probed
    stack: Stack | None = None  # row 6

    @property
    def edge_ws(self) -> str:
        return f"ws://127.0.0.1:{self.edge_port}/ws"

    def fleet_view(self) -> dict[str, Any]:
        """Row 6: the real edge as the hub sees it, what the edge says it published, the hub's /metrics."""
        assert self.stack is not None
        auth = {"X-API-Key": OBSERVER_KEY}
        edge = json.loads(_get(f"{self.stack.hub_url}/fleet/edges/{EDGE_ID}", auth) or b"{}")
        hub_metrics = _get(f"{self.stack.hub_url}/metrics")
        text = hub_metrics.decode()
        edge_metrics = _get(f"{self.stack.edge_url}/metrics").decode()
        messages = edge.get("messages", {})
        return {"seq": edge.get("metrics_seq", 0), "stored": messages.get("metrics", 0),
                "gaps": messages.get("gaps", 0), "duplicates": messages.get("duplicates", 0),
                "published": sample_sum(edge_metrics, "hgr_mqtt_published_total", kind="metrics"),
                "hub_metrics_bytes": len(hub_metrics),
                "edges_refused": sample_sum(text, "hgr_fleet_claims_limited_total", what="edges"),
                # the fleet gauges (refreshed every FLEET_GAUGES_INTERVAL: they lag), not /fleet (12 MB at 20 000)
                "edges_in_gauges": sum(sample_sum(text, "hgr_fleet_edges", status=status)
                                     for status in ("online", "offline"))}


@contextlib.contextmanager
def _processes(row: str, args: argparse.Namespace) -> Iterator[Target]:
    edge_env = {"WORKERS": str(args.workers), "AUTH_ENABLED": "false", "LOG_LEVEL": "warning"}
    if row != "6":
        with tempfile.TemporaryDirectory(prefix="hgr-abuse-") as folder, \
                (Path(folder) / "edge.log").open("w") as log, \
                ws_stream.running_edge(edge_env, log_file=log) as (port, proc):
            yield Target(port, proc.pid, "edge", {"edge": proc.pid}, {"edge": port})
        return
    for tool in ("redis-server", "mosquitto"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed; row 6 starts its own")
    with tempfile.TemporaryDirectory(prefix="hgr-abuse-") as folder:
        # research.chaos.stack: private redis-server, anonymous mosquitto (no ACL), hub, edge
        stack = Stack(Path(folder), {**edge_env, "EDGE_ID": EDGE_ID, "METRICS_INTERVAL": "1",
                                     "API_KEYS": f"observer:{OBSERVER_KEY}:fleet:read",
                                     "RATE_LIMIT_REQUESTS": "1000000"})
        try:
            stack.start()  # each process ready
            assert stack.edge is not None and stack.hub is not None and stack.broker is not None
            assert stack.redis is not None
            pids = {"hub": stack.hub.pid, "edge": stack.edge.pid, "broker": stack.broker.pid, "redis": stack.redis.pid}
            yield Target(stack.edge_port, stack.edge.pid, "hub", pids, {"hub": stack.hub_port, "edge": stack.edge_port},
                         stack)
        finally:
            stack.stop()


async def _settled_view(target: Target, before: dict[str, Any], deadline_s: float = 20.0) -> dict[str, Any]:
    """The fleet view once the hub has accounted for every metrics message the edge published up to now
    (stored, or counted as a gap: that takes the hub's gap grace), or after ``deadline_s``."""
    published = (await asyncio.to_thread(target.fleet_view))["published"]
    end = time.monotonic() + deadline_s
    while True:
        view = await asyncio.to_thread(target.fleet_view)
        accounted = view["stored"] - before["stored"] + view["gaps"] - before["gaps"]
        if view["seq"] >= published and accounted >= view["seq"] - before["seq"] or time.monotonic() > end:
            return view
        await asyncio.sleep(0.25)  # polling the hub's view, bounded by the deadline


# --- one window, one row ---

def _cpu(target: Target) -> dict[str, float]:
    """CPU seconds so far of each measured process, and of the edge's inference workers."""
    out = {name: cpu_seconds(pid) for name, pid in target.pids.items()}
    out["edge_workers"] = cpu_seconds(target.edge_pid, tree=True) - out["edge"]
    return out


async def _window(phase: str, target: Target, frames: list[bytes], args: argparse.Namespace,
                  attacker: Attacker | None) -> dict[str, Any]:
    before = await asyncio.to_thread(target.fleet_view) if target.stack else None
    stop = asyncio.Event()
    probers = {name: asyncio.create_task(_probe(port, stop)) for name, port in target.health.items()}
    sampler = asyncio.create_task(_sample_rss(target.pids, stop))
    cpu = _cpu(target)
    if attacker is not None:
        attacker.release()
    report = await ws_stream.camera(target.edge_ws, frames, fps=args.fps, duration=args.window)
    stop.set()
    cpu = {name: round(seconds - cpu[name], 2) for name, seconds in _cpu(target).items()}
    out: dict[str, Any] = {
        "phase": phase,
        "legit": {"sent": report.sent, "results": report.results,
                  "results_per_s": round(report.results / args.window, 2),
                  "latency_ms": percentiles(report.latencies_ms, (50, 99)), "dropped": report.dropped,
                  "errors": report.errors},
        "health_ms": {name: await prober for name, prober in probers.items()}, "rss_mb": await sampler, "cpu_s": cpu,
        "attack": await asyncio.to_thread(attacker.result) if attacker is not None else None,
    }
    if before is not None:
        after = await _settled_view(target, before)
        sent, stored = after["seq"] - before["seq"], after["stored"] - before["stored"]
        out["fleet"] = {"edge_metrics_sent": sent, "stored": stored, "lost": max(0, sent - stored),
                        "gaps": after["gaps"] - before["gaps"],
                        "duplicates": after["duplicates"] - before["duplicates"],
                        "hub_metrics_bytes": [before["hub_metrics_bytes"], after["hub_metrics_bytes"]],
                        "edges_in_gauges": after["edges_in_gauges"],
                        "edges_refused": after["edges_refused"] - before["edges_refused"]}
    return out


def _plan(row: str, target: Target, args: argparse.Namespace) -> AttackPlan:
    return AttackPlan(row, args.window, edge_port=target.edge_port,
                      broker_port=target.stack.broker_port if target.stack else 0,
                      reconnects=args.reconnects, fake_edge_rate=args.fake_edge_rate, nice=args.attacker_nice)


async def run_row(row: str, frames: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    with _processes(row, args) as target:
        _log(f"row {row}: warming up ({ATTACKS[row]})")
        await ws_stream.camera(target.edge_ws, frames, fps=args.fps, duration=min(3.0, args.window))
        windows = []
        for phase in ("alone", "attack", "alone_again"):
            attacker = Attacker(_plan(row, target, args)) if phase == "attack" else None
            _log(f"row {row}: {phase}, {args.window:g} s")
            try:
                windows.append(await _window(phase, target, frames, args, attacker))
            finally:
                if attacker is not None:
                    attacker.stop()
    return {"row": row, "attack": ATTACKS[row], "attacked": target.attacked, "windows": windows,
            "summary": summarise(target.attacked, windows)}


def summarise(attacked: str, windows: list[dict[str, Any]]) -> dict[str, Any]:
    """The row's numbers side by side: rates, ratio, /health and RSS of the attacked process."""
    by_phase = {w["phase"]: w for w in windows}
    rates = [by_phase[p]["legit"]["results_per_s"] for p in ("alone", "attack", "alone_again")]
    alone = (rates[0] + rates[2]) / 2
    attack, again = by_phase["attack"], by_phase["alone_again"]
    rss_attack, rss_again = attack["rss_mb"][attacked], again["rss_mb"][attacked]
    summary: dict[str, Any] = {
        "legit_results_per_s": rates,
        "legit_ratio": round(rates[1] / alone, 3) if alone > 0 else None,
        "alone_drift": round(rates[2] / rates[0], 3) if rates[0] > 0 else None,
        "health_ms": {w["phase"]: w["health_ms"] for w in windows},
        "rss_mb": {"before": rss_attack["first"], "peak": max(rss_attack["max"], rss_again["max"]),
                   "after": rss_again["last"]},
    }
    if "fleet" in attack:
        summary["lost_edge_messages"] = {w["phase"]: w["fleet"]["lost"] for w in windows}
        summary["hub_metrics_bytes"] = [windows[0]["fleet"]["hub_metrics_bytes"][0],
                                        windows[-1]["fleet"]["hub_metrics_bytes"][1]]
    return summary


def finite(value: Any) -> bool:
    """Every number in ``value`` (nested) is finite: what the report's consumers may rely on."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, (int, float)):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(finite(v) for v in value)
    return False


def table(report: dict[str, Any]) -> str:
    """The report as a Markdown table (docs/benchmarks.md has the same columns)."""
    lines = [("| row | legit results/s: alone / attack / alone | ratio "
              "| /health p50 / p99 / max during the attack (ms) | attacked RSS before / peak / after (MB) | attack |"),
             "| --- | --- | --- | --- | --- | --- |"]
    for row in report["rows"]:
        s, attack = row["summary"], next(w for w in row["windows"] if w["phase"] == "attack")
        health = attack["health_ms"][row["attacked"]]
        sent = attack["attack"] or {}
        what = ", ".join(f"{k} {v}" for k, v in sent.items() if k != "outcomes")
        what += "".join(f"; {outcome} ×{n}" for outcome, n in (sent.get("outcomes") or {}).items())
        if "fleet" in attack:
            f = attack["fleet"]
            what += (f"; hub /metrics {f['hub_metrics_bytes'][0]} → {f['hub_metrics_bytes'][1]} B, "
                     f"edges in the gauges {f['edges_in_gauges']:g}, refused {f['edges_refused']:g}, "
                     f"real edge lost {f['lost']} of {f['edge_metrics_sent']} (gaps {f['gaps']})")
        lines.append(f"| {row['row']} ({row['attacked']}) | {' / '.join(f'{r:g}' for r in s['legit_results_per_s'])} "
                     f"| {s['legit_ratio']} | {health['p50']} / {health['p99']} / {health['max']} "
                     f"| {s['rss_mb']['before']} / {s['rss_mb']['peak']} / {s['rss_mb']['after']} | {what} |")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    frames = ws_stream.load_frames(args.photos, limit=args.photo_limit)
    report: dict[str, Any] = {
        "window_s": args.window, "fps": args.fps, "workers": args.workers, "reconnects_per_s": args.reconnects,
        "fake_edge_rate": args.fake_edge_rate, "attacker_nice": args.attacker_nice,
        "cpus": os.cpu_count(), "photos": len(frames), "rows": []}
    for row in args.rows:
        report["rows"].append(await run_row(row, frames, args))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.abuse",
                                     description="Issue 20's cheap attacks against a legitimate stream, A B A")
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated, of 6,7,8,9 (default: all)")
    parser.add_argument("--window", type=float, default=20.0, help="seconds per window (three per row; 1 to 600)")
    parser.add_argument("--fps", type=float, default=12.0, help="the legitimate stream's frames per second")
    parser.add_argument("--workers", type=int, default=1, help="WORKERS of the edge (and hub)")
    parser.add_argument("--reconnects", type=float, default=5.0,
                        help="connections a second at most for the attacks the edge cuts off (rows 7-9)")
    parser.add_argument("--fake-edge-rate", type=float, default=26_000.0, help="row 6: made-up edge ids a second")
    parser.add_argument("--attacker-nice", type=int, default=10,
                        help="niceness of the attack process (it stands for another machine; 0: an equal share)")
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--photo-limit", type=int, default=60, help="photos the stream cycles through")
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    if not args.rows or set(args.rows) - set(ROWS):
        parser.error(f"--rows: some of {','.join(ROWS)}")
    args.window = min(600.0, max(1.0, args.window))
    args.reconnects = max(0.1, args.reconnects)
    report = asyncio.run(run(args))
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text)
    print(table(report), file=sys.stderr)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
