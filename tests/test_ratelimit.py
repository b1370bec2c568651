"""hub/ratelimit.py: the limiter in process (429 with its headers, shadow mode) and in Redis (its key
expires). The arithmetic and its Lua twin: test_gcra.py."""

from __future__ import annotations

import uuid

import pytest

from hgr.common.config import load_settings
from hgr.hub.ratelimit import RateLimited, RateLimiter
from hgr.hub.redis_conn import RedisConn
from tests.hub_support import decisions


async def test_memory_limiter_raises_429_with_headers() -> None:
    settings = load_settings({}, env_file=None, rate_limit_requests=3, rate_limit_window=60.0)
    limiter = RateLimiter(settings)
    before = {d: decisions(d) for d in ("allowed", "near_limit", "limited")}
    verdicts = [await limiter.check("ip:1.2.3.4", 1, now_s=100.0) for _ in range(3)]
    assert [v.remaining for v in verdicts] == [2, 1, 0]
    assert verdicts[0].headers()["RateLimit-Limit"] == "3"
    with pytest.raises(RateLimited) as info:
        await limiter.check("ip:1.2.3.4", 1, now_s=100.0)
    assert info.value.status == 429 and info.value.headers is not None and info.value.headers["Retry-After"] == "20"
    assert {d: decisions(d) - before[d] for d in before} == {"allowed": 2, "near_limit": 1, "limited": 1}
    # another identity has its own bucket; a key's own limit overrides the global one
    assert (await limiter.check("ip:5.6.7.8", 1, now_s=100.0)).allowed
    assert (await limiter.check("key:big", 50, (100, 60.0), now_s=100.0)).remaining == 50


async def test_shadow_mode_counts_but_never_blocks() -> None:
    settings = load_settings({}, env_file=None, rate_limit_requests=2, rate_limit_shadow=True)
    limiter = RateLimiter(settings)
    verdicts = [await limiter.check("ip:x", 1, now_s=5.0) for _ in range(5)]
    assert all(v.allowed for v in verdicts)
    assert [v.reason for v in verdicts] == ["ok", "ok", "shadow", "shadow", "shadow"]


async def test_redis_limiter_key_expires_when_bucket_is_full(redis_url: str) -> None:
    prefix = f"hgr-test:{uuid.uuid4().hex}:"
    settings = load_settings({}, env_file=None, rate_limit_requests=10, rate_limit_window=1.0,
                             redis_url=redis_url, redis_key_prefix=prefix)
    conn = RedisConn(redis_url)
    await conn.start()
    try:
        limiter = RateLimiter(settings, conn)
        assert (await limiter.check("key:a", 4)).remaining == 6
        ttl_ms = await conn.client.pttl(f"{prefix}rl:key:a")
        assert 0 < ttl_ms <= 400  # 4 images at 100 ms each
    finally:
        await conn.close()
