"""The hub on Redis: shared cache and limits, and Redis dying and coming back under it (never a 500); the
limits' own Redis (RATE_LIMIT_REDIS_URL, the shipped layout) dying under it the same way."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from hgr.common.config import load_settings
from hgr.common.inference.pool import InferencePool
from tests.hub_support import OPS, OPS_SPEC, b64, decisions, hub_settings, serve_hub, shipped_redis
from tests.support import eventually, free_port, redis_argv

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def photo(hand_photos: list[tuple[Path, int]]) -> bytes:
    return next(p for p, fingers in hand_photos if fingers >= 2).read_bytes()


def restart_redis(url: str) -> subprocess.Popen[bytes]:
    """A fresh redis-server on the port of ``url`` (the test waits for the hub to notice)."""
    return subprocess.Popen(redis_argv(url.rsplit(":", 1)[1].split("/")[0]), stdout=subprocess.DEVNULL)


async def test_cache_and_limits_live_in_redis(hub_pool: InferencePool, photo: bytes,
                                              private_redis: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, _ = private_redis
    settings = hub_settings(api_keys=OPS_SPEC, redis_url=url, rate_limit_requests=50, cache_ttl=120)
    client_redis = aioredis.Redis.from_url(url)
    try:
        async with (serve_hub(settings, hub_pool) as (base, _),
                    httpx.AsyncClient(base_url=base, timeout=120) as client):
            first = await client.post("/detect-fingers", json={"image_base64": b64(photo)})
            assert first.status_code == 200 and first.json()["cached"] is False
            assert first.headers["RateLimit-Remaining"] == "49"
            second = await client.post("/detect-fingers", json={"image_base64": b64(photo)})
            assert second.json()["cached"] is True and second.headers["RateLimit-Remaining"] == "48"
            status = (await client.get("/status", headers=OPS)).json()
            assert status["cache"]["store"] == "redis" and status["rate_limit"]["store"] == "redis"
            assert status["redis"]["up"] is True and status["status"] == "ok"
            cache_keys = [k async for k in client_redis.scan_iter("hgr:cache:*")]
            assert len(cache_keys) == 1 and 0 < await client_redis.ttl(cache_keys[0]) <= 120
            assert await client_redis.exists("hgr:rl:ip:127.0.0.1")
            # a second hub on the same Redis shares both: a cache hit and the same budget
            async with (serve_hub(settings, hub_pool) as (base2, _),
                        httpx.AsyncClient(base_url=base2, timeout=120) as client):
                third = await client.post("/detect-fingers", json={"image_base64": b64(photo)})
            assert third.json()["cached"] is True and third.headers["RateLimit-Remaining"] == "47"
    finally:
        await client_redis.aclose()


async def test_redis_killed_fail_open_keeps_serving_then_recovers(
        hub_pool: InferencePool, photo: bytes, private_redis: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, proc = private_redis
    settings = hub_settings(api_keys=OPS_SPEC, redis_url=url, rate_limit_requests=1000, rate_limit_fail="open")
    async with (serve_hub(settings, hub_pool) as (base, _),
                httpx.AsyncClient(base_url=base, timeout=120) as client):
        assert (await client.post("/detect-fingers", json={"image_base64": b64(photo)})).status_code == 200
        proc.kill()
        proc.wait()
        statuses = []
        for _ in range(3):
            r = await client.post("/detect-fingers", json={"image_base64": b64(photo)})
            statuses.append(r.status_code)
            assert r.status_code == 200, r.text
            assert r.json()["cached"] is False  # the cache is down: a miss, answered by the model
        bad = await client.post("/detect-fingers", json={"image_base64": "%%%"})
        assert bad.status_code == 400
        status = (await client.get("/status", headers=OPS)).json()
        assert status["status"] == "degraded" and "redis" in status["degraded"]
        assert status["redis"]["up"] is False and status["redis"]["error"]
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/ready")).status_code == 200  # fail-open: still serving
        metrics = (await client.get("/metrics")).text
        assert 'hgr_redis_up{redis="main"} 0.0' in metrics
        assert 'hgr_rate_limit_decisions_total{decision="error_allowed"}' in metrics

        restarted = restart_redis(url)
        try:
            async def recovered() -> bool:
                return bool((await client.get("/status", headers=OPS)).json()["status"] == "ok")
            await eventually(recovered, 30, "the hub to see Redis again", ignore=())
            r = await client.post("/detect-fingers", json={"image_base64": b64(photo)})
            assert r.status_code == 200 and r.headers["RateLimit-Remaining"] == "999"  # a fresh Redis
        finally:
            restarted.kill()
            restarted.wait()


async def test_redis_killed_fail_closed_refuses_with_503(
        hub_pool: InferencePool, photo: bytes, private_redis: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, proc = private_redis
    settings = hub_settings(api_keys=OPS_SPEC, redis_url=url, rate_limit_fail="closed")
    async with (serve_hub(settings, hub_pool) as (base, _),
                httpx.AsyncClient(base_url=base, timeout=120) as client):
        assert (await client.post("/detect-fingers", json={"image_base64": b64(photo)})).status_code == 200
        proc.kill()
        proc.wait()
        for path, body in (("/detect-fingers", {"image_base64": b64(photo)}),
                           ("/detect-fingers-batch", {"images": [{"image_base64": b64(photo)}]})):
            r = await client.post(path, json=body)
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "rate_limiter_unavailable" and r.headers["Retry-After"] == "1"
        assert (await client.get("/status", headers=OPS)).json()["status"] == "degraded"
        assert (await client.get("/health")).status_code == 200


async def test_hub_starts_with_redis_down_and_connects_later(hub_pool: InferencePool, photo: bytes) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with (serve_hub(hub_settings(api_keys=OPS_SPEC, redis_url=url), hub_pool) as (base, _),
                httpx.AsyncClient(base_url=base, timeout=120) as client):
        assert (await client.get("/status", headers=OPS)).json()["redis"]["up"] is False
        assert (await client.post("/detect-fingers", json={"image_base64": b64(photo)})).status_code == 200
        server = restart_redis(url)
        try:
            async def up() -> bool:
                return (await client.get("/status", headers=OPS)).json()["redis"]["up"] is True
            await eventually(up, 30, "the first connection to Redis", ignore=())
        finally:
            server.kill()
            server.wait()


@pytest.mark.parametrize("fail", ["open", "closed"])
async def test_the_limits_redis_killed_follows_rate_limit_fail(hub_pool: InferencePool, photo: bytes,
                                                                fail: str) -> None:
    """docker-compose.hub.yml's two Redis; `redis-limits` killed under the hub: RATE_LIMIT_FAIL decides as it
    did with one Redis (open: served and counted `error_allowed`; closed: 503 `rate_limiter_unavailable`),
    while the cache Redis serves on; /status and /ready say which Redis is down; the limits come back with
    their Redis."""
    with shipped_redis() as stack:
        settings = load_settings(stack.env, env_file=None, api_keys=OPS_SPEC, workers=1, rate_limit_requests=1000,
                                 rate_limit_fail=fail, cache_ttl=120)
        async with (serve_hub(settings, hub_pool) as (base, _),
                    httpx.AsyncClient(base_url=base, timeout=120) as client):
            body = {"image_base64": b64(photo)}
            first = await client.post("/detect-fingers", json=body)
            assert first.status_code == 200 and first.headers["RateLimit-Remaining"] == "999"
            stack.kill("redis-limits")
            allowed, refused = decisions("error_allowed"), decisions("error_refused")
            r = await client.post("/detect-fingers", json=body)
            if fail == "open":
                assert r.status_code == 200 and r.json()["cached"] is True  # the cache's Redis is up
                assert (decisions("error_allowed") - allowed, decisions("error_refused") - refused) == (1, 0)
            else:
                assert r.status_code == 503 and r.json()["error"]["code"] == "rate_limiter_unavailable"
                assert r.headers["Retry-After"] == "1"
                assert (decisions("error_allowed") - allowed, decisions("error_refused") - refused) == (0, 1)
            status = (await client.get("/status", headers=OPS)).json()
            assert status["status"] == "degraded" and status["degraded"] == ["rate_limit_redis"]
            assert status["redis"]["up"] is True
            assert status["rate_limit"]["redis"]["up"] is False and status["rate_limit"]["redis"]["error"]
            ready = await client.get("/ready")
            assert ready.status_code == 200 and ready.json()["redis"] is False  # never unready for Redis
            metrics = (await client.get("/metrics")).text
            assert 'hgr_redis_up{redis="rate_limit"} 0.0' in metrics and 'hgr_redis_up{redis="main"} 1.0' in metrics

            stack.start("redis-limits")

            async def recovered() -> bool:
                return bool((await client.get("/status", headers=OPS)).json()["status"] == "ok")
            await eventually(recovered, 30, "the hub to see the limits' Redis again", ignore=())
            r = await client.post("/detect-fingers", json=body)
            assert r.status_code == 200 and r.headers["RateLimit-Remaining"] == "999"  # a fresh, empty Redis
            assert (await client.get("/ready")).json()["redis"] is True
