"""Redis holds what it must (issue #20, item 5): the rate limits in a Redis of their own, as shipped.

docker-compose.hub.yml runs two Redis: `redis` (the result cache and the fleet, `allkeys-lru`, bounded) and
`redis-limits` (the buckets alone, `noeviction`), and gives the hubs RATE_LIMIT_REDIS_URL. Both run here as
the file writes them (``tests.hub_support.shipped_redis``), with the local redis-server.

- two `hgr hub` processes share the limits exactly through `redis-limits`; every bucket (a key's, and the
  unknown-key pacing's) is there and none in the cache Redis, where the cache entry is;
- the issue's row 6 ("allkeys-lru evicted a tenant's exhausted rate-limit bucket"): with one Redis, as before,
  cache and fleet data written through the hub's own code into a full `allkeys-lru` Redis evict the bucket
  and the tenant is served again; with the shipped layout the same data never forgives it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from hgr.common.config import load_settings
from hgr.common.contracts import DetectionResult, HandResult
from hgr.common.inference.pool import InferencePool
from hgr.common.options import DetectOptions
from hgr.hub.app import Hub
from hgr.hub.cache import RedisCache, cache_key
from hgr.hub.fleet_logic import StatusMsg
from hgr.hub.fleet_store import RedisFleetStore
from tests.hub_support import OPS, OPS_KEY, b64, decisions, hub_app, hub_processes, shipped_redis

KEY, PHOTO_KEY = "team-key-0123456789abcdef", "photo-key-0123456789abcdef"
KEYS = f"team:{KEY},photo:{PHOTO_KEY},ops:{OPS_KEY}:fleet:read"


def _keys(url: str) -> list[str]:
    client = redis.Redis.from_url(url)
    try:
        return sorted(k.decode() for k in client.scan_iter("*"))
    finally:
        client.close()


@pytest.mark.slow
def test_two_hub_processes_keep_their_limits_only_in_the_limits_redis(
        tmp_path: Path, hand_photos: list[tuple[Path, int]]) -> None:
    photo = next(p for p, fingers in hand_photos if fingers >= 2).read_bytes()
    with shipped_redis() as stack:
        env = {**os.environ, **stack.env, "WORKERS": "1", "MQTT_URL": "", "AUTH_ENABLED": "true", "API_KEYS": KEYS,
               "RATE_LIMIT_REQUESTS": "30", "RATE_LIMIT_WINDOW": "60", "RATE_LIMIT_BURST": "0", "LOG_FORMAT": "json"}
        with hub_processes(env, 2, tmp_path) as hubs:
            async def hammer() -> tuple[Counter[int], float]:
                # Charged, then refused as an empty image: every request costs one unit and no inference.
                async with httpx.AsyncClient(timeout=60, headers={"X-API-Key": KEY}) as client:
                    async def one(url: str) -> int:
                        return (await client.post(f"{url}/detect-fingers", json={"image_base64": ""})).status_code
                    start = time.time()
                    statuses = await asyncio.gather(*(one(url) for _ in range(40) for url, _ in hubs))
                    return Counter(statuses), time.time() - start

            counts, elapsed = asyncio.run(hammer())
            accepted = counts[400]
            assert set(counts) == {400, 429}, counts
            assert 30 <= accepted <= 30 + elapsed * 30 / 60 + 1, (counts, elapsed)

            (first, _), (second, _) = hubs
            for _ in range(2):  # an unknown key: paced by a bucket of its client's, in the limits' Redis too
                guess = httpx.post(f"{second}/detect-fingers", json={}, headers={"X-API-Key": "guess"})
                assert guess.status_code == 403
            answer = httpx.post(f"{first}/detect-fingers", json={"image_base64": b64(photo)},
                                headers={"X-API-Key": PHOTO_KEY}, timeout=120)
            assert answer.status_code == 200 and answer.headers["RateLimit-Remaining"] == "29"
            again = httpx.post(f"{second}/detect-fingers", json={"image_base64": b64(photo)},
                               headers={"X-API-Key": PHOTO_KEY}, timeout=120)
            assert again.json()["cached"] is True and again.headers["RateLimit-Remaining"] == "28"  # one budget

            for url, _ in hubs:
                status = httpx.get(f"{url}/status", headers=OPS).json()
                assert status["status"] == "ok" and status["rate_limit"]["store"] == "redis"
                limits = status["rate_limit"]["redis"]
                assert limits["dedicated"] is True and limits["eviction"]["limits_safe"] is True
                assert status["redis"]["up"] is True and limits["up"] is True

        limit_keys, cache_keys = _keys(stack.urls["redis-limits"]), _keys(stack.urls["redis"])
        assert {"hgr:rl:key:team", "hgr:rl:key:photo", "hgr:rl:authfail:ip:127.0.0.1"} <= set(limit_keys)
        assert all(k.startswith("hgr:rl:") for k in limit_keys), limit_keys
        assert not [k for k in cache_keys if k.startswith("hgr:rl:")], cache_keys
        assert len([k for k in cache_keys if k.startswith("hgr:cache:")]) == 1, cache_keys


# ----------------------------------------------------------------------------------------- row 6
MAXMEMORY = 4 * 2**20  # the cache Redis's REDIS_MAXMEMORY here: tiny, so a few MB of data fill it many times
ROUNDS = 8  # each writes 800 cache entries and 800 edges' fleet state, ~4 MB (one layout's bucket went in one)


def _result(seed: int) -> DetectionResult:
    """A two-hand answer as the hub caches it (~3.5 KB of JSON)."""
    hand: HandResult = {
        "handedness": "Right", "score": 0.97,
        "landmarks": [[0.1 + i / 100, 0.2 + seed % 7 / 100, -0.01] for i in range(21)],
        "world_landmarks": [[0.01 * i, 0.02, 0.003] for i in range(21)], "bbox": [0.1, 0.2, 0.4, 0.6],
        "fingers_up": {"thumb": True, "index": True, "middle": False, "ring": False, "pinky": False},
        "fingers": 2, "gesture": "peace"}
    return {"hands": [hand, {**hand, "handedness": "Left"}], "total_fingers": 4, "image_size": [640, 480],
            "timing": {"decode_ms": 1.0, "infer_ms": 20.0, "total_ms": 21.0}}


async def _fill(hub: Hub, round_no: int) -> None:
    """About MAXMEMORY of the hub's own writes: cache entries (``RedisCache``, keyed as the hub keys them) and
    fleet state (``RedisFleetStore``: an edge's hash and the index, by the status script)."""
    assert hub.redis is not None and isinstance(hub.cache, RedisCache)
    cache, fleet = hub.cache, RedisFleetStore(hub.redis.client, hub.settings.redis_key_prefix)
    options, now = DetectOptions(), time.time()
    capabilities = json.dumps({"models": ["full", "lite"], "workers": 4, "padding": "x" * 1500})
    # 20 writes at a time: every connection's buffers count against a Redis's maxmemory too, and a hundred
    # of them leave a 4 MB Redis no key to evict (it answers OOM), which is not what is tested here.
    for start in range(0, 800, 20):
        batch = range(round_no * 800 + start, round_no * 800 + start + 20)
        await asyncio.gather(*(cache.set(cache_key("hgr:", hashlib.sha256(b"%d" % i).digest(), "full+x", options),
                                         _result(i)) for i in batch))
        await asyncio.gather(*(fleet.apply_status(f"edge-{i}", StatusMsg(True, f"s{i}", "", birth_seq=1,
                                                                         capabilities=capabilities), now)
                               for i in batch))


async def _info(url: str) -> dict[str, Any]:
    client = aioredis.Redis.from_url(url)
    try:
        info: dict[str, Any] = await client.info()
        return info
    finally:
        await client.aclose()


@pytest.mark.parametrize("layout", ["one redis, as before", "shipped"])
async def test_row6_a_full_cache_redis_never_forgives_an_exhausted_bucket(model_path: str, layout: str) -> None:
    services = ("redis",) if layout == "one redis, as before" else ("redis", "redis-limits")
    with shipped_redis(services, REDIS_MAXMEMORY=str(MAXMEMORY)) as stack:
        settings = load_settings(stack.env, env_file=None, workers=1, auth_enabled=True, api_keys=KEYS,
                                 rate_limit_requests=3, rate_limit_window=600.0, rate_limit_burst=0)
        hub = Hub(settings, InferencePool(settings, {"full": model_path}, service="hub", workers=1))  # never started
        await hub.start()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hub_app(hub)), base_url="http://hub",
                                         headers={"X-API-Key": KEY}) as client:
                async def request() -> int:  # charged, then refused as an empty image: no inference
                    return (await client.post("/detect-fingers", json={"image_base64": ""})).status_code

                assert [await request() for _ in range(4)] == [400, 400, 400, 429]  # the bucket is exhausted
                assert hub.limits_redis is not None
                failures = decisions("error_allowed")
                after: list[tuple[int, int]] = []  # (the bucket's key there, the answer) after each round
                for round_no in range(ROUNDS):
                    await _fill(hub, round_no)
                    after.append((await hub.limits_redis.client.exists("hgr:rl:key:team"), await request()))
                    if after[-1][1] != 429:
                        break
                failures = decisions("error_allowed") - failures
                cache_info = await _info(stack.urls["redis"])
                status = (await client.get("/status", headers=OPS)).json()
        finally:
            await hub.stop()
    assert cache_info["evicted_keys"] > 0 and cache_info["maxmemory"] == MAXMEMORY  # the pressure was real
    # No Redis refused a call (fail-open would let the tenant through too, for another reason).
    assert failures == 0 and status["degraded"] == ["workers"]
    if layout == "shipped":
        assert after == [(1, 429)] * ROUNDS, after  # row 6 closed: nothing the cache and fleet write forgives it
        assert cache_info["evicted_keys"] >= (ROUNDS - 1) * 1600  # the cache Redis emptied over and over meanwhile
        assert status["rate_limit"]["redis"]["eviction"]["limits_safe"] is True
    else:
        assert after[-1] == (0, 400), after  # row 6 as the issue found it: the bucket evicted, the tenant served
        assert status["rate_limit"]["redis"]["eviction"]["limits_safe"] is False


async def test_a_full_limits_redis_refuses_even_with_rate_limit_fail_open(model_path: str) -> None:
    """env.production ships RATE_LIMIT_FAIL=open (an outage lets clients through). A *full* limits Redis is
    not an outage, and one a client can cause (a bucket per address it uses, until `noeviction` refuses
    new ones): then every request is refused (503), never let through, and the Redis is not taken for down."""
    with shipped_redis(("redis", "redis-limits")) as stack:
        settings = load_settings(stack.env, env_file=None, workers=1, auth_enabled=True, api_keys=KEYS,
                                 rate_limit_requests=100, rate_limit_window=600.0, rate_limit_fail="open")
        hub = Hub(settings, InferencePool(settings, {"full": model_path}, service="hub", workers=1))  # never started
        await hub.start()
        junk = redis.Redis.from_url(stack.urls["redis-limits"])
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hub_app(hub)), base_url="http://hub",
                                         headers={"X-API-Key": KEY}) as client:
                async def request() -> httpx.Response:  # charged, then refused as an empty image: no inference
                    return await client.post("/detect-fingers", json={"image_base64": ""})

                assert (await request()).status_code == 400
                filled = 0
                # The shipped 64 MB, to the last bytes: a refused write's own argument counts while it is
                # checked, so after 1 MB values the room left goes in smaller ones.
                for size in (2**20, 2**14, 2**8):
                    with pytest.raises(redis.exceptions.OutOfMemoryError):
                        while filled < 2**16:
                            filled += 1
                            junk.set(f"junk:{filled}", b"x" * size)
                assert filled > 64
                # Full to the last bytes is not full for long: Redis's own housekeeping frees memory, and a call
                # that fits is rightly let through (400s among the 503s on loaded machines, and once three 400s
                # with the limit 1 MB under what it held: the filling client's query buffer, grown for 1 MB
                # values, is shrunk once it is idle, megabytes at once). So the limit goes to half of what it
                # holds now: full beyond anything housekeeping frees.
                used = int(junk.info("memory")["used_memory"])
                junk.config_set("maxmemory", used // 2)
                allowed, refused = decisions("error_allowed"), decisions("full_refused")
                answers = [await request() for _ in range(3)]
                assert [a.status_code for a in answers] == [503] * 3
                assert {a.json()["error"]["code"] for a in answers} == {"rate_limiter_unavailable"}
                assert all(a.headers["Retry-After"] == "1" for a in answers)
                assert decisions("full_refused") - refused == 3 and decisions("error_allowed") == allowed
                status = (await client.get("/status", headers=OPS)).json()
                assert status["rate_limit"]["redis"]["up"] is True  # full, not down
                junk.delete(*(f"junk:{n}" for n in range(1, filled + 1)))
                charged = decisions("allowed")
                assert (await request()).status_code == 400 and decisions("allowed") == charged + 1  # room again
        finally:
            junk.close()
            await hub.stop()
