"""The faults of a soak, in turn: kill a worker, restart Redis, stop the broker, reload the hub."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable

import httpx

from hgr.loadtest.procs import stop_process, worker_pids
from research.chaos.record import Fault, Run
from research.chaos.stack import Stack


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
