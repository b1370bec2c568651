"""hub/app.py against Redis: Redis holds what it must (issue #20). A hub reads the eviction settings of the
Redis that holds its rate limits (RATE_LIMIT_REDIS_URL's, else REDIS_URL's) at start, warns when they let it
evict buckets (every bucket has a TTL, so any policy but noeviction may drop a client's exhausted one), and
shows them in /status (`rate_limit.redis.eviction`). Each case is a private redis-server configured so; the
last ones run the Redis of docker-compose.hub.yml as shipped."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from hgr.common.config import load_settings
from hgr.common.inference.pool import InferencePool
from hgr.hub.app import Hub
from tests.hub_support import OPS, OPS_SPEC, hub_app, shipped_redis
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


async def _status(env: dict[str, str], model_path: str) -> dict[str, Any]:
    settings = load_settings(env, env_file=None, api_keys=OPS_SPEC, workers=1)
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
        status = await _status({"REDIS_URL": url}, model_path)
    limits = status["rate_limit"]["redis"]
    assert status["redis"]["up"] is True and limits["up"] is True and limits["dedicated"] is False
    assert limits["url"] == status["redis"]["url"] and "eviction" not in status["redis"]
    assert limits["eviction"]["policy"] == policy and limits["eviction"]["limits_safe"] is safe
    warned = [r for r in caplog.records if "may evict rate-limit buckets" in r.getMessage()]
    assert bool(warned) is not safe


async def test_a_redis_that_refuses_config_is_unknown_not_down(model_path: str) -> None:
    with redis_server("--rename-command", "CONFIG", "") as url:
        status = await _status({"REDIS_URL": url}, model_path)
    assert status["redis"]["up"] is True and status["status"] == "degraded"  # degraded: the idle pool only
    assert status["degraded"] == ["workers"]
    assert status["rate_limit"]["redis"]["eviction"] == {"maxmemory": None, "policy": "unknown", "limits_safe": None}


async def test_the_shipped_layout_keeps_the_limits_safe(model_path: str, caplog: pytest.LogCaptureFixture) -> None:
    """docker-compose.hub.yml's two Redis as written: the cache's `allkeys-lru` is no concern of the limits,
    which live in `redis-limits` under noeviction; no warning."""
    caplog.set_level(logging.WARNING, logger="hgr.hub")
    with shipped_redis() as stack:
        status = await _status(stack.env, model_path)
    limits = status["rate_limit"]["redis"]
    assert limits["dedicated"] is True and limits["up"] is True and limits["topology"] == "single"
    assert limits["url"] != status["redis"]["url"] and "***" in limits["url"]  # the password masked
    assert "limits-pw" not in str(status)
    assert limits["eviction"] == {"maxmemory": 64 * 2**20, "policy": "noeviction", "limits_safe": True}
    assert status["status"] == "degraded" and status["degraded"] == ["workers"]  # the pool is never started
    assert not [r for r in caplog.records if "may evict rate-limit buckets" in r.getMessage()]


async def test_one_shipped_cache_redis_for_everything_is_reported_unsafe(
        model_path: str, caplog: pytest.LogCaptureFixture) -> None:
    """The layout before RATE_LIMIT_REDIS_URL: the compose file's cache Redis (allkeys-lru) holding the limits
    too. The hub says so at start and in /status."""
    caplog.set_level(logging.WARNING, logger="hgr.hub")
    with shipped_redis(("redis",)) as stack:
        assert set(stack.env) == {"REDIS_URL"}
        status = await _status(stack.env, model_path)
    limits = status["rate_limit"]["redis"]
    assert limits["dedicated"] is False and limits["eviction"]["limits_safe"] is False
    assert limits["eviction"]["policy"] == "allkeys-lru" and limits["eviction"]["maxmemory"] == 256 * 2**20
    warned = [r.getMessage() for r in caplog.records if "may evict rate-limit buckets" in r.getMessage()]
    assert len(warned) == 1 and "RATE_LIMIT_REDIS_URL" in warned[0]


async def test_a_limits_redis_without_a_cache_redis(model_path: str) -> None:
    """RATE_LIMIT_REDIS_URL alone: the limits in that Redis, the cache and the fleet in the process."""
    with shipped_redis(("redis-limits",)) as stack:
        assert set(stack.env) == {"RATE_LIMIT_REDIS_URL"}
        status = await _status(stack.env, model_path)
    assert status["redis"] == {"configured": False} and status["cache"]["store"] == "memory"
    assert status["rate_limit"]["store"] == "redis" and status["rate_limit"]["redis"]["dedicated"] is True
    assert status["rate_limit"]["redis"]["eviction"]["limits_safe"] is True
