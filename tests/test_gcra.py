"""hub/gcra.py: the GCRA arithmetic (pure), and its Lua twin in hub/ratelimit.lua computing the same numbers."""

from __future__ import annotations

import random
import uuid

import redis.asyncio as aioredis

from hgr.hub.gcra import US, Policy, gcra
from hgr.hub.ratelimit import LUA


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
                # The script sets a real-time expiry from the simulated clock (milliseconds for the
                # fastest policy); a loaded machine would let it lapse between two calls. So each call,
                # the expiry it set and its removal run as one transaction: the test's clock alone rules.
                pipe = client.pipeline(transaction=True)
                await script(keys=[key], args=[now, cost, policy.interval_us, policy.capacity], client=pipe)
                pipe.pttl(key)
                pipe.persist(key)
                raw, ttl_ms, _ = await pipe.execute()
                reply = [int(v) for v in raw]
                assert reply == [int(expected.allowed), expected.new_tat_us, expected.remaining,
                                 expected.retry_after_us, expected.reset_us]
                if expected.allowed:
                    tat = expected.new_tat_us
                    assert 0 < ttl_ms <= max(1, -(-(tat - now) // 1000))  # expires once the bucket is full
                    stored_raw = await client.get(key)
                    assert stored_raw is not None
                    stored = int(stored_raw)
                    assert stored == tat  # no precision lost on 16-digit microsecond values
    finally:
        await client.delete(key)
        await client.aclose()
