"""What the fleet's once-a-second housekeeping costs one hub at N edges. Prints JSON.

    python -m research.fleet_housekeeping --edges 10000

Starts a private ``redis-server`` on a free port, stores N edges (a birth and one metrics message each)
through the real ``RedisFleetStore``, then times the two calls every hub makes about once a second: the
sweep script (``store.sweep``: staleness, forgetting) and the read of every edge that refreshes the
per-edge Prometheus gauges (``store.edges``), with the Redis commands each one executes, the longest the
event loop was held meanwhile (``*_loop_lag_max_ms``) and the fleet state's memory per edge.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from hgr.hub.fleet_logic import EdgeBatch, parse_metrics, parse_status
from hgr.hub.fleet_store import RedisFleetStore
from hgr.loadtest.procs import free_port, loop_lag, start_redis, stop_process

REPEATS = 5


async def measure(port: int, edges: int) -> dict[str, Any]:
    """The report, against the empty Redis on 127.0.0.1:``port``."""
    client = aioredis.Redis(port=port)
    store = RedisFleetStore(client, "hgr:")
    now = time.time()
    batches = {}
    for i in range(edges):
        edge_id = f"e{i:05d}"
        await store.apply_status(edge_id, parse_status({
            "status": "online", "session": "s1", "birth_seq": 1, "metrics_seq": 0, "version": "1",
            "model": "full", "capabilities": {"max_fps": 30}}), now)
        batch = EdgeBatch()
        batch.add_metrics(parse_metrics({"session": "s1", "seq": 1, "fps": 10.0, "frames": {"received": 1},
                                         "latency_ms": {"p50": 5.0}, "frames_by_key": {"k": 3}}))
        batch.prepare()
        batches[edge_id] = batch
    await store.apply_batches(batches, now, 2.0)
    memory = int((await client.info("memory"))["used_memory"])
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "sweep": lambda: store.sweep(time.time(), 45.0, 86_400.0), "edges": store.edges}
    report: dict[str, Any] = {"edges": edges, "fleet_memory_bytes_per_edge": round(memory / edges)}
    for name, call in calls.items():
        before = int((await client.info("stats"))["total_commands_processed"])
        lags_ms: list[float] = []
        probe = asyncio.create_task(loop_lag(lags_ms))
        await asyncio.sleep(0)  # the probe starts its first timer
        start = time.perf_counter()
        for _ in range(REPEATS):
            await call()
        elapsed = time.perf_counter() - start
        probe.cancel()
        report[f"{name}_ms"] = round(elapsed / REPEATS * 1000, 1)
        # the longest the loop was held during the calls: what a REST request on this hub waited at worst
        report[f"{name}_loop_lag_max_ms"] = round(max(lags_ms, default=elapsed * 1000), 1)
        after = int((await client.info("stats"))["total_commands_processed"])
        report[f"{name}_redis_commands"] = round((after - before - 1) / REPEATS)  # the INFO call itself
    await client.aclose()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.fleet_housekeeping",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--edges", type=int, default=10_000)
    args = parser.parse_args(argv)
    port = free_port()
    proc = start_redis(port)
    try:
        print(json.dumps(asyncio.run(measure(port, max(1, args.edges))), indent=2))
    finally:
        stop_process(proc, 10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
