"""The fuzz suite's profiles and its one set of real services.

Profiles (Hypothesis): ``ci`` (the default, and what CI runs) gives each fuzz test ``weight × 600``
examples, about 8 000 in all, in about a minute on a 2-core machine; ``long`` gives it ``weight × 10 000``
(about 130 000, ``HYPOTHESIS_PROFILE=long``, on demand). The profiles are applied per test (``fuzz(weight)``),
so the project's other Hypothesis tests keep their own settings.

    pytest -q tests/fuzz                                   # the ci profile
    HYPOTHESIS_PROFILE=long pytest -q tests/fuzz           # on demand
    pytest -q tests/fuzz --hypothesis-show-statistics      # what the inputs hit (status codes, errors)

Services: one background event loop (a thread) holds one inference worker, a hub (in-process bus and
stores) reached in-process through httpx's ASGI transport, and an edge behind a real uvicorn for the
WebSocket tests. Synchronous Hypothesis tests hand coroutines to that loop (``Services.run``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, settings

from hgr.common.config import Settings, load_settings
from hgr.common.inference.pool import InferencePool
from hgr.common.messaging.bus import LocalBus
from hgr.hub.app import Hub
from hgr.loadtest import procs
from tests.hub_support import hub_app
from tests.support import serve_edge

T = TypeVar("T")

_COMMON = {"deadline": None, "print_blob": True,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much]}
settings.register_profile("ci", max_examples=600, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("long", max_examples=10_000, **_COMMON)  # type: ignore[arg-type]
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE not in ("ci", "long"):
    PROFILE = "ci"


def fuzz(weight: float) -> settings:
    """The selected profile, scaled: ``weight × max_examples`` examples for this test."""
    base = settings.get_profile(PROFILE)
    return settings(base, max_examples=max(1, int(base.max_examples * weight)))


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of ``pid`` (default: this process, which hosts the hub and the edge), in MB."""
    return procs.rss_mb(pid or os.getpid())


@dataclass
class Services:
    loop: asyncio.AbstractEventLoop
    settings: Settings
    pool: InferencePool
    hub: Hub
    bus: LocalBus
    client: httpx.AsyncClient  # in-process: the hub app through httpx's ASGI transport
    ws_url: str  # the edge behind a real uvicorn

    def run(self, make: Callable[[], Awaitable[T]], timeout: float = 120) -> T:
        """Run a coroutine on the services' loop and return its result (its exception, if any)."""
        async def wrapped() -> T:
            return await make()
        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout)

    def worker_restarts(self) -> int:
        return int(self.pool.stats()["restarts"])

    def worker_rss_mb(self) -> float:
        return max((rss_mb(pid) for pid in self.pool.stats()["pids"] if pid), default=0.0)


FUZZ_SETTINGS: dict[str, Any] = {
    "workers": 1, "rate_limit_requests": 10**6, "max_fps": 100_000, "max_frame_bytes": 256 * 1024,
    "max_image_size": 192 * 1024, "max_request_size": 1024 * 1024, "max_batch_images": 4, "idle_timeout": 600,
}


@pytest.fixture(scope="session")
def services(model_path: str) -> Iterator[Services]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-services", daemon=True)
    thread.start()
    stack = contextlib.AsyncExitStack()
    s = load_settings({}, env_file=None, **FUZZ_SETTINGS)

    async def start() -> Services:
        pool = InferencePool(s, {"full": model_path}, service="hub", workers=1)
        await pool.start()
        stack.push_async_callback(pool.close)
        bus = LocalBus(s, service="hub")
        hub = Hub(s, pool, bus=bus)
        await hub.start()
        stack.push_async_callback(hub.stop)
        client = await stack.enter_async_context(httpx.AsyncClient(
            transport=httpx.ASGITransport(app=hub_app(hub)), base_url="http://fuzz", timeout=120))
        _, ws_url = await stack.enter_async_context(serve_edge(s, pool))
        return Services(loop, s, pool, hub, bus, client, ws_url)

    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(240)
    finally:
        asyncio.run_coroutine_threadsafe(stack.aclose(), loop).result(120)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


@pytest.fixture
def bounded(services: Services) -> Iterator[Services]:
    """The properties every fuzz test ends on: no worker restarted, memory did not run away."""
    restarts, rss = services.worker_restarts(), rss_mb()
    yield services
    assert services.worker_restarts() == restarts, "an input took an inference worker down"
    assert services.pool.ready
    assert rss_mb() - rss < 300, f"the server process grew from {rss:.0f} MB to {rss_mb():.0f} MB"
    assert services.worker_rss_mb() < 1500, f"a worker holds {services.worker_rss_mb():.0f} MB"


@pytest.fixture(scope="session")
def fuzz_photos(hand_photos: list[tuple[Path, int]]) -> list[bytes]:
    """Six small real photos (the fuzz seeds for image bytes)."""
    from hgr.loadtest.ws_stream import load_frames

    return load_frames(hand_photos[0][0].parent, limit=6, max_side=320)
