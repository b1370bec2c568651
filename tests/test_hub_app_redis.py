"""hub/app.py against Redis: Redis holds what it must (issue #20). A hub reads Redis's eviction settings at
start, warns when they let Redis evict rate-limit buckets (every bucket has a TTL, so any policy but
noeviction may drop a client's exhausted one), and shows them in /status. Each case is a private
redis-server configured so."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from hgr.common.inference.pool import InferencePool
from hgr.hub.app import Hub
from tests.hub_support import OPS, OPS_SPEC, hub_app, hub_settings
from tests.support import free_port, need, redis_argv, start_server


@contextmanager
def redis_server(*options: str) -> Iterator[str]:
    need(bool(shutil.which("redis-server")), "redis-server is not installed")
    port = free_port()
    proc = start_server([*redis_argv(port), *options], port)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()


async def _status(url: str, model_path: str) -> dict[str, Any]:
    settings = hub_settings(api_keys=OPS_SPEC, redis_url=url)
    hub = Hub(settings, InferencePool(settings, {"full": model_path}, service="hub", workers=1))  # never started
    await hub.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hub_app(hub)), base_url="http://hub") as c:
            full: dict[str, Any] = (await c.get("/status", headers=OPS)).json()
            assert "redis" not in (await c.get("/status")).json()  # not for keyless callers
            return full
    finally:
        await hub.stop()


@pytest.mark.parametrize("options,policy,safe", [
    (("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"), "allkeys-lru", False),
    (("--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru"), "volatile-lru", False),  # buckets have TTLs
    (("--maxmemory", "64mb", "--maxmemory-policy", "noeviction"), "noeviction", True),
    (("--maxmemory", "0", "--maxmemory-policy", "allkeys-lru"), "allkeys-lru", True),  # no limit: never evicts
])
async def test_the_hub_reports_whether_redis_may_evict_rate_limits(
        model_path: str, caplog: pytest.LogCaptureFixture, options: tuple[str, ...], policy: str, safe: bool) -> None:
    caplog.set_level(logging.WARNING, logger="hgr.hub")
    with redis_server(*options) as url:
        status = await _status(url, model_path)
    assert status["redis"]["up"] is True
    assert status["redis"]["eviction"]["policy"] == policy and status["redis"]["eviction"]["limits_safe"] is safe
    warned = [r for r in caplog.records if "may evict rate-limit buckets" in r.getMessage()]
    assert bool(warned) is not safe


async def test_a_redis_that_refuses_config_is_unknown_not_down(model_path: str) -> None:
    with redis_server("--rename-command", "CONFIG", "") as url:
        status = await _status(url, model_path)
    assert status["redis"]["up"] is True and status["status"] == "degraded"  # degraded: the idle pool only
    assert status["degraded"] == ["workers"]
    assert status["redis"]["eviction"] == {"maxmemory": None, "policy": "unknown", "limits_safe": None}
