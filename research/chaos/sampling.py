"""Every second: the RSS of hub and edge (and their workers), their readiness, their worker restarts."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx

from research.chaos.record import Run
from research.chaos.stack import Stack

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
