"""The GCRA arithmetic (pure), the in-process limiter, and the Redis Lua script computing the same numbers."""

from __future__ import annotations

import random
import uuid

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from hgr.common.config import load_settings
from hgr.hub.gcra import US, Policy, gcra
from hgr.hub.ratelimit import LUA, RateLimited, RateLimiter
from hgr.hub.redis_conn import RedisConn


def run(policy: Policy, events: list[tuple[float, int]]) -> list[bool]:
    tat = None
    out = []
    for t, cost in events:
        d = gcra(tat, int(t * US), cost, policy.interval_us, policy.capacity)
        if d.allowed:
            tat = d.new_tat_us
        out.append(d.allowed)
    return out


def test_fresh_bucket_allows_capacity_at_once_then_refuses() -> None:
    policy = Policy(requests=10, window_s=60, burst=2)
    allowed = run(policy, [(1000.0, 1)] * 15)
    assert allowed == [True] * 12 + [False] * 3


def test_steady_rate_refills_one_per_interval() -> None:
    policy = Policy(requests=10, window_s=10)  # one per second
    events = [(0.0, 1)] * 10 + [(0.5, 1), (1.0, 1), (1.01, 1), (2.0, 1)]
    assert run(policy, events) == [True] * 10 + [False, True, False, True]


def test_never_more_than_capacity_plus_rate_times_elapsed() -> None:
    rng = random.Random(7)
    policy = Policy(requests=20, window_s=5, burst=3)
    t, events = 0.0, []
    for _ in range(3000):
        t += rng.random() * 0.02
        events.append((t, rng.choice((1, 1, 1, 2, 5))))
    accepted = sum(cost for (_, cost), ok in zip(events, run(policy, events)) if ok)
    assert accepted <= policy.capacity + t * policy.requests / policy.window_s + 1
    assert accepted >= t * policy.requests / policy.window_s * 0.9  # and it does let the rate through


def test_batch_costs_n_and_too_costly_batch_never_fits() -> None:
    policy = Policy(requests=10, window_s=60)
    d = gcra(None, 0, 4, policy.interval_us, policy.capacity)
    assert d.allowed and d.remaining == 6
    d = gcra(None, 0, 11, policy.interval_us, policy.capacity)
    assert not d.allowed and d.retry_after_us == -1


def test_retry_after_is_when_the_request_fits() -> None:
    policy = Policy(requests=2, window_s=10)  # one per 5 s
    tat = None
    for _ in range(2):
        tat = gcra(tat, 0, 1, policy.interval_us, policy.capacity).new_tat_us
    refused = gcra(tat, 0, 1, policy.interval_us, policy.capacity)
    assert not refused.allowed and refused.retry_after_us == 5 * US and refused.reset_us == 10 * US
    assert gcra(tat, refused.retry_after_us, 1, policy.interval_us, policy.capacity).allowed


def decisions(name: str) -> float:
    return REGISTRY.get_sample_value("hgr_rate_limit_decisions_total", {"decision": name}) or 0.0


async def test_memory_limiter_raises_429_with_headers() -> None:
    settings = load_settings({}, env_file=None, rate_limit_requests=3, rate_limit_window=60.0)
    limiter = RateLimiter(settings)
    before = {d: decisions(d) for d in ("allowed", "near_limit", "limited")}
    verdicts = [await limiter.check("ip:1.2.3.4", 1, now_s=100.0) for _ in range(3)]
    assert [v.remaining for v in verdicts] == [2, 1, 0]
    assert verdicts[0].headers()["RateLimit-Limit"] == "3"
    with pytest.raises(RateLimited) as info:
        await limiter.check("ip:1.2.3.4", 1, now_s=100.0)
    assert info.value.status == 429 and info.value.headers["Retry-After"] == "20"
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


async def test_lua_script_agrees_with_python(redis_url: str) -> None:
    """Random traffic through both; every decision and number must be identical."""
    client = aioredis.Redis.from_url(redis_url)
    script = client.register_script(LUA)
    key = f"hgr-test:{uuid.uuid4().hex}:rl"
    rng = random.Random(11)
    try:
        for policy in (Policy(5, 1.0), Policy(100, 60.0, 10), Policy(7, 3.3, 2), Policy(3, 0.01)):
            await client.delete(key)
            tat, now = None, 1_764_000_000 * US + rng.randrange(US)
            for _ in range(300):
                now += rng.randrange(0, 3 * policy.interval_us // 2 + 1)
                cost = rng.choice((1, 1, 2, 3, policy.capacity + 1))
                expected = gcra(tat, now, cost, policy.interval_us, policy.capacity)
                reply = [int(v) for v in await script(keys=[key], args=[now, cost, policy.interval_us,
                                                                          policy.capacity])]
                assert reply == [int(expected.allowed), expected.new_tat_us, expected.remaining,
                                 expected.retry_after_us, expected.reset_us]
                if expected.allowed:
                    tat = expected.new_tat_us
                    stored = int(await client.get(key))
                    assert stored == tat  # no precision lost on 16-digit microsecond values
    finally:
        await client.delete(key)
        await client.aclose()


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
