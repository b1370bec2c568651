"""The hub on Redis topologies bigger than one server, all real processes on loopback:

- a 3-master Redis Cluster: three `hgr hub` processes keep per-key limits exact (the keys fall on
  different shards), share the cache, and the fleet store runs its scripts there (the store suite in
  test_fleet_logic runs on the cluster too);
- a master + replica + 3 Sentinels: the master is killed under a steady load on two hubs, one
  fail-open and one fail-closed: no 500, each answers by its policy during the switch, and both are
  back on the new master within the failover time plus a few seconds, limits, cache and fleet state
  working there.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from hub_support import b64, hub_processes, hub_settings, serve_hub
from redis.cluster import RedisCluster
from redis_topologies import DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS, ClusterOf3, SentinelSet
from support import eventually

from hgr.common import metrics
from hgr.common.pool import InferencePool
from hgr.hub.fleet_logic import EdgeBatch, parse_metrics, parse_status
from hgr.hub.fleet_store import RedisFleetStore

pytestmark = pytest.mark.asyncio(loop_scope="module")

KEYS = {"alpha": "alpha-key-0123456789", "bravo": "bravo-key-0123456789", "charlie": "charlie-key-012345678",
        "cache": "cache-key-0123456789"}
LIMIT = 30


@pytest.fixture(scope="module")
def photo(hand_photos: list[tuple[Path, int]]) -> bytes:
    return next(p for p, fingers in hand_photos if fingers >= 2).read_bytes()


# --- Redis Cluster ---

@pytest.mark.slow
async def test_three_hubs_on_a_cluster_keep_every_key_exact_and_share_the_cache(
        redis_cluster: ClusterOf3, tmp_path: Path, photo: bytes) -> None:
    # Fixed: with the cluster's fixed slot split, alpha's bucket lands on one shard, bravo's and charlie's on another.
    prefix = "topo:"
    env = {**os.environ, "WORKERS": "1", "REDIS_URL": redis_cluster.url, "REDIS_KEY_PREFIX": prefix,
           "RATE_LIMIT_REQUESTS": str(LIMIT), "RATE_LIMIT_WINDOW": "60", "AUTH_ENABLED": "true",
           "API_KEYS": ",".join(f"{name}:{key}" for name, key in KEYS.items()), "MQTT_URL": ""}
    with hub_processes(env, 3, tmp_path) as hubs:
        urls = [url for url, _ in hubs]
        async with httpx.AsyncClient(timeout=120) as client:
            # Charged, then refused as an empty image: each request costs one unit and no inference.
            async def one(url: str, key: str) -> tuple[str, int]:
                r = await client.post(f"{url}/detect-fingers", json={"image_base64": ""}, headers={"X-API-Key": key})
                return key, r.status_code
            start = time.time()
            replies = await asyncio.gather(*(one(url, KEYS[name]) for _ in range(20) for url in urls
                                             for name in ("alpha", "bravo", "charlie")))
            elapsed = time.time() - start
            for name in ("alpha", "bravo", "charlie"):
                counts = Counter(status for key, status in replies if key == KEYS[name])
                assert set(counts) <= {400, 429}, (name, counts)
                assert LIMIT <= counts[400] <= LIMIT + elapsed * LIMIT / 60 + 1, (name, counts, elapsed)

            # The cache: a miss on one hub is a hit on the two others.
            cached = []
            for url in urls:
                r = await client.post(f"{url}/detect-fingers", json={"image_base64": b64(photo)},
                                      headers={"X-API-Key": KEYS["cache"]})
                assert r.status_code == 200, r.text
                cached.append(r.json()["cached"])
            assert cached == [False, True, True]
            for url in urls:
                async def up(url: str = url) -> dict[str, Any] | None:  # a ping may time out on a busy machine
                    status: dict[str, Any] = (await client.get(f"{url}/status")).json()
                    return status if status["redis"]["up"] else None
                status = await eventually(up, 30, f"{url} seeing the cluster")
                assert status["redis"]["topology"] == "cluster"
                assert status["rate_limit"]["store"] == "redis" and status["cache"]["store"] == "redis"

    # The buckets are real cluster keys, spread over the shards (not funnelled into one slot).
    host, port = redis_cluster.url.removeprefix("redis+cluster://").split(",")[0].split(":")
    with RedisCluster(host=host, port=int(port)) as cluster:
        buckets = [f"{prefix}rl:key:{name}" for name in ("alpha", "bravo", "charlie")]
        assert all(cluster.exists(key) for key in buckets)
        assert len({cluster.get_node_from_key(key).name for key in buckets}) >= 2
        assert len(list(cluster.scan_iter(f"{prefix}cache:*", target_nodes=RedisCluster.ALL_NODES))) == 1


# --- Sentinel ---

async def _load(client: httpx.AsyncClient, seen: list[tuple[float, int]], stop: asyncio.Event) -> None:
    """Steady requests, one after another: (time, status) of each."""
    while not stop.is_set():
        r = await client.post("/detect-fingers", json={"image_base64": ""})
        seen.append((time.monotonic(), r.status_code))
        await asyncio.sleep(0.02)


@pytest.mark.slow
async def test_sentinel_failover_under_load_no_500_and_state_resumes(
        hub_pool: InferencePool, photo: bytes, redis_sentinel: SentinelSet) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}:"
    common = {"redis_url": redis_sentinel.url, "rate_limit_requests": 100_000, "redis_key_prefix": prefix}
    let_through = metrics.RATE_LIMIT.labels("error_allowed")
    async with (serve_hub(hub_settings(**common, rate_limit_fail="open"), hub_pool) as (open_base, open_hub),
                serve_hub(hub_settings(**common, rate_limit_fail="closed"), hub_pool) as (closed_base, closed_hub),
                httpx.AsyncClient(base_url=open_base, timeout=60) as fail_open,
                httpx.AsyncClient(base_url=closed_base, timeout=60) as fail_closed):
        assert open_hub.redis is not None and closed_hub.redis is not None
        await eventually(lambda: open_hub.redis.up and closed_hub.redis.up, 30, "both hubs on the master")
        stop = asyncio.Event()
        opened: list[tuple[float, int]] = []
        closed: list[tuple[float, int]] = []
        loads = [asyncio.create_task(_load(fail_open, opened, stop)) for _ in range(2)] + \
            [asyncio.create_task(_load(fail_closed, closed, stop)) for _ in range(2)]
        try:
            await eventually(lambda: len(opened) > 10 and len(closed) > 10, 30, "the load running")
            assert 400 in {s for _, s in opened + closed}  # charged by the limiter, refused as empty
            let_through_before = let_through._value.get()

            old_port = await asyncio.to_thread(redis_sentinel.kill_master)
            killed_at = time.monotonic()
            new_port = await asyncio.to_thread(redis_sentinel.wait_failover, old_port, 30)
            promoted_at = time.monotonic()

            async def both_back() -> bool:
                # fail-closed answers 400 (not 503) only once its limiter decides again; fail-open's
                # limiter is asked directly, since it answers 400 either way
                closed_back = any(t > promoted_at and s == 400 for t, s in closed)
                return closed_back and (await open_hub.limiter.check("ip:probe", 1)).reason == "ok"
            budget = DOWN_AFTER_MS / 1000 + FAILOVER_TIMEOUT_MS / 1000 + 5
            await eventually(both_back, max(1.0, killed_at + budget - time.monotonic()),
                             "both hubs limiting on the new master")
        finally:
            stop.set()
            await asyncio.gather(*loads)

        assert {s for _, s in opened} == {400}, Counter(s for _, s in opened)  # fail-open: never refused…
        assert let_through._value.get() > let_through_before  # …but let through unchecked during the switch
        assert {s for _, s in closed} == {400, 503}, Counter(s for _, s in closed)  # fail-closed: 503s then

        # Limits, cache and fleet state on the new master.
        assert (await open_hub.limiter.check("key:heavy", 50_000)).reason == "ok"  # half the budget: 30 s to refill
        with redis.Redis(port=new_port) as master:
            assert master.exists(f"{prefix}rl:key:heavy")
        first = await fail_open.post("/detect-fingers", json={"image_base64": b64(photo)})
        second = await fail_closed.post("/detect-fingers", json={"image_base64": b64(photo)})
        assert first.status_code == second.status_code == 200
        assert second.json()["cached"] is True
        store = RedisFleetStore(open_hub.redis.client, prefix)
        birth = parse_status({"status": "online", "session": "s1", "birth_seq": 1, "metrics_seq": 0,
                              "version": "1.0.0", "model": "full", "capabilities": {}})
        assert await store.apply_status("edge-x", birth, time.time())
        batch = EdgeBatch()
        for seq in (1, 2, 3):
            batch.add_metrics(parse_metrics({"session": "s1", "seq": seq, "fps": 5.0}))
        assert batch.prepare()
        assert (await store.apply_batch("edge-x", batch, time.time(), 2.0)).accepted == [1, 2, 3]
        edge = await store.edge("edge-x")
        assert edge is not None and edge["status"] == "online" and edge["msgs"] == "3"
        with redis.Redis(port=new_port) as master:
            assert master.sismember(f"{{{prefix}fleet}}:edges", "edge-x")


async def test_sentinels_and_master_with_passwords(hub_pool: InferencePool, tmp_path: Path) -> None:
    sentinels = SentinelSet(tmp_path, password="data-secret", sentinel_password="sentinel-secret")
    prefix = f"t{uuid.uuid4().hex[:6]}:"
    try:
        sentinels.start()  # inside the try: a start that fails half-way still stops what it started
        settings = hub_settings(redis_url=sentinels.url, redis_sentinel_password="sentinel-secret",
                                redis_key_prefix=prefix)
        async with serve_hub(settings, hub_pool) as (base, hub), httpx.AsyncClient(base_url=base) as client:
            async def up() -> dict[str, Any] | None:  # the first ping may time out on a busy machine
                status: dict[str, Any] = (await client.get("/status")).json()
                return status if status["redis"]["up"] else None
            status = await eventually(up, 30, "the hub connected through the Sentinels")
            assert status["redis"]["topology"] == "sentinel" and "secret" not in json.dumps(status)

            async def decided() -> bool:
                return (await hub.limiter.check("key:heavy", 60)).reason == "ok"
            await eventually(decided, 30, "a limiter decision on the master")
        _, port = sentinels.master_addr()
        with redis.Redis(port=port, password="data-secret") as master:
            assert master.exists(f"{prefix}rl:key:heavy")
        # Without the Sentinels' password the hub cannot learn where the master is: down, and says so.
        async with serve_hub(hub_settings(redis_url=sentinels.url, redis_key_prefix=prefix), hub_pool) as (base, _), \
                httpx.AsyncClient(base_url=base) as client:
            status = (await client.get("/status")).json()
            assert status["redis"]["up"] is False and status["redis"]["error"] and status["status"] == "degraded"
            assert "secret" not in json.dumps(status)
    finally:
        sentinels.stop()
