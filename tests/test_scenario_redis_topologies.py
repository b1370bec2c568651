"""The hub on Redis topologies bigger than one server, all real processes on loopback:

- a 3-master Redis Cluster: three `hgr hub` processes keep per-key limits exact (the keys fall on
  different shards), share the cache, and the fleet store runs its scripts there (the store suite in
  test_fleet_logic runs on the cluster too);
- a hub started while its cluster is unreachable starts degraded and finds the cluster once it is up;
- a master + replica + 3 Sentinels, and a 3-master cluster with a replica per master: the master (of
  the shard holding the load's bucket and the fleet's keys) is killed under a steady load on two hubs,
  one fail-open and one fail-closed: no 500, each answers by its policy during the switch, and both
  are back on the new master within the failover time plus a few seconds, limits, cache and fleet
  state working there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from hgr.common import metrics
from hgr.common.contracts import MetricsPayload
from hgr.common.inference.pool import InferencePool
from hgr.common.messaging.topics import conform
from hgr.hub.app import Hub
from hgr.hub.fleet_logic import EdgeBatch, metrics_msg, read_status
from hgr.hub.fleet_store import RedisFleetStore
from hgr.hub.ratelimit import RateLimited
from tests.hub_support import OPS, OPS_SPEC, b64, hub_processes, hub_settings, serve_hub
from tests.redis_topologies import DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS, ClusterOf3, SentinelSet
from tests.support import eventually

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
                    r = await client.get(f"{url}/status", headers={"X-API-Key": KEYS["cache"]})  # the full view
                    status: dict[str, Any] = r.json()
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


async def test_a_hub_started_before_its_cluster_waits_for_it(hub_pool: InferencePool, tmp_path: Path) -> None:
    # No node reachable: RedisCluster cannot learn the slot map and says so with a RedisClusterException
    # (not a RedisError; redis 8 raises its subclass RedisClusterUnreachableError). The hub starts degraded,
    # refuses by its policy, and its pinger keeps going.
    cluster = ClusterOf3(tmp_path)  # ports chosen, nothing started yet
    settings = hub_settings(api_keys=OPS_SPEC, redis_url=cluster.url, redis_key_prefix=f"t{uuid.uuid4().hex[:6]}:",
                            rate_limit_fail="closed")
    try:
        async with serve_hub(settings, hub_pool) as (base, hub), httpx.AsyncClient(base_url=base, timeout=60) as client:
            assert hub.redis is not None
            status = (await client.get("/status", headers=OPS)).json()
            assert status["redis"]["up"] is False and status["status"] == "degraded", status
            error_class = status["redis"]["error"].split(":", 1)[0]
            assert issubclass(getattr(redis.exceptions, error_class), RedisClusterException), status
            r = await client.post("/detect-fingers", json={"image_base64": ""})
            assert r.status_code == 503 and r.json()["error"]["code"] == "rate_limiter_unavailable", r.text
            await asyncio.to_thread(cluster.start)
            await eventually(lambda: hub.redis.up, 30, "the pinger finding the cluster")
            r = await client.post("/detect-fingers", json={"image_base64": ""})
            assert r.status_code == 400, r.text  # charged by the limiter, refused as empty
    finally:
        cluster.stop()


# --- Sentinel ---

async def _load(client: httpx.AsyncClient, seen: list[tuple[float, int]], stop: asyncio.Event) -> None:
    """Steady requests, one after another: (time sent, status) of each."""
    while not stop.is_set():
        sent = time.monotonic()
        r = await client.post("/detect-fingers", json={"image_base64": ""})
        seen.append((sent, r.status_code))
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def two_hubs(hub_pool: InferencePool, redis_url: str,
                   prefix: str) -> AsyncIterator[tuple[Hub, Hub, httpx.AsyncClient, httpx.AsyncClient]]:
    """A fail-open and a fail-closed hub on ``redis_url``, both connected: (hubs, then a client of each)."""
    common = {"redis_url": redis_url, "rate_limit_requests": 100_000, "redis_key_prefix": prefix}
    async with (serve_hub(hub_settings(**common, rate_limit_fail="open"), hub_pool) as (open_base, open_hub),
                serve_hub(hub_settings(**common, rate_limit_fail="closed"), hub_pool) as (closed_base, closed_hub),
                httpx.AsyncClient(base_url=open_base, timeout=60) as fail_open,
                httpx.AsyncClient(base_url=closed_base, timeout=60) as fail_closed):
        assert open_hub.redis is not None and closed_hub.redis is not None
        await eventually(lambda: open_hub.redis.up and closed_hub.redis.up, 30, "both hubs on Redis")
        yield open_hub, closed_hub, fail_open, fail_closed


@contextlib.asynccontextmanager
async def under_load(fail_open: httpx.AsyncClient, opened: list[tuple[float, int]],
                     fail_closed: httpx.AsyncClient, closed: list[tuple[float, int]]) -> AsyncIterator[None]:
    """Two steady loads on each hub (``_load``, into ``opened`` and ``closed``) while the block runs; the
    block starts once both are answered and the limiter charges them."""
    stop = asyncio.Event()
    loads = [asyncio.create_task(_load(fail_open, opened, stop)) for _ in range(2)] + \
        [asyncio.create_task(_load(fail_closed, closed, stop)) for _ in range(2)]
    try:
        await eventually(lambda: len(opened) > 10 and len(closed) > 10, 30, "the load running")
        assert 400 in {s for _, s in opened + closed}  # charged by the limiter, refused as empty
        yield
    finally:
        stop.set()
        await asyncio.gather(*loads)


async def _cache_and_fleet_work(fail_open: httpx.AsyncClient, fail_closed: httpx.AsyncClient, photo: bytes,
                                open_hub: Hub, prefix: str, master_port: int) -> None:
    """After a failover: the two hubs share the cache again, and a fleet birth and metrics are stored on the
    master at ``master_port``."""
    assert open_hub.redis is not None
    first = await fail_open.post("/detect-fingers", json={"image_base64": b64(photo)})
    second = await fail_closed.post("/detect-fingers", json={"image_base64": b64(photo)})
    assert first.status_code == second.status_code == 200
    assert second.json()["cached"] is True
    store = RedisFleetStore(open_hub.redis.client, prefix)
    birth = read_status({"status": "online", "session": "s1", "birth_seq": 1, "metrics_seq": 0,
                          "version": "1.0.0", "model": "full", "capabilities": {}})
    assert await store.apply_status("edge-x", birth, time.time())
    batch = EdgeBatch()
    for seq in (1, 2, 3):
        batch.add_metrics(metrics_msg(conform({"session": "s1", "seq": seq, "fps": 5.0}, MetricsPayload)))
    assert batch.prepare()
    assert (await store.apply_batch("edge-x", batch, time.time(), 2.0)).accepted == [1, 2, 3]
    edge = await store.edge("edge-x")
    assert edge is not None and edge["status"] == "online" and edge["msgs"] == "3"
    with redis.Redis(port=master_port) as master:
        assert master.sismember(f"{{{prefix}fleet}}:edges", "edge-x")


@pytest.mark.slow
async def test_sentinel_failover_under_load_no_500_and_state_resumes(
        hub_pool: InferencePool, photo: bytes, redis_sentinel: SentinelSet) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}:"
    let_through = metrics.RATE_LIMIT.labels("error_allowed")
    async with two_hubs(hub_pool, redis_sentinel.url, prefix) as (open_hub, _, fail_open, fail_closed):
        opened: list[tuple[float, int]] = []
        closed: list[tuple[float, int]] = []
        async with under_load(fail_open, opened, fail_closed, closed):
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

        assert {s for _, s in opened} == {400}, Counter(s for _, s in opened)  # fail-open: never refused…
        assert let_through._value.get() > let_through_before  # …but let through unchecked during the switch
        assert {s for _, s in closed} == {400, 503}, Counter(s for _, s in closed)  # fail-closed: 503s then

        # Limits, cache and fleet state on the new master.
        assert (await open_hub.limiter.check("key:heavy", 50_000)).reason == "ok"  # half the budget: 30 s to refill
        with redis.Redis(port=new_port) as master:
            assert master.exists(f"{prefix}rl:key:heavy")
        await _cache_and_fleet_work(fail_open, fail_closed, photo, open_hub, prefix, new_port)


# --- Redis Cluster failover ---

@pytest.mark.slow
async def test_cluster_failover_under_load_no_500_and_state_resumes(
        hub_pool: InferencePool, photo: bytes, tmp_path: Path) -> None:
    cluster = ClusterOf3(tmp_path, replicas=1)
    try:
        await asyncio.to_thread(cluster.start)  # inside the try: a start that fails half-way still stops it
        # A prefix that puts the load's bucket (every request here comes from 127.0.0.1) and the fleet's
        # hash tag on the same shard: killing that shard's master hits the limiter and the fleet at once.
        while True:
            prefix = f"t{uuid.uuid4().hex[:6]}:"
            bucket, fleet_tag = f"{prefix}rl:ip:127.0.0.1", f"{{{prefix}fleet}}:edges"
            shard = cluster.master_of(bucket)
            if cluster.master_of(fleet_tag) == shard:
                break
        probe = next(f"ip:probe-{i}" for i in range(1000) if cluster.master_of(f"{prefix}rl:ip:probe-{i}") == shard)
        let_through = metrics.RATE_LIMIT.labels("error_allowed")
        async with two_hubs(hub_pool, cluster.url, prefix) as (open_hub, closed_hub, fail_open, fail_closed):
            opened: list[tuple[float, int]] = []
            closed: list[tuple[float, int]] = []
            async with under_load(fail_open, opened, fail_closed, closed):
                let_through_before = let_through._value.get()

                killed_at = time.monotonic()
                old_port = await asyncio.to_thread(cluster.kill_master_of, bucket)
                new_port = await asyncio.to_thread(cluster.wait_promoted, bucket, old_port, 30)
                promoted_at = time.monotonic()

                async def both_back() -> bool:
                    # fail-closed answers 400 (not 503) only once its limiter decides again; fail-open's
                    # limiter is asked directly (a bucket on the failed-over shard), since it answers 400 either way
                    closed_back = any(t > promoted_at and s == 400 for t, s in closed)
                    return closed_back and (await open_hub.limiter.check(probe, 1)).reason == "ok"
                await eventually(both_back, 15, "both hubs limiting on the new master")
                back_at = time.monotonic()
                await eventually(lambda: sum(t > back_at for t, _ in closed) >= 20, 30, "more load after the switch")
            refused = [t - killed_at for t, s in closed if s == 503]
            print(f"\ncluster failover: promoted {promoted_at - killed_at:.1f} s after the kill, both hubs deciding "
                  f"{back_at - promoted_at:.1f} s later; fail-open {dict(Counter(s for _, s in opened))}, fail-closed "
                  f"{dict(Counter(s for _, s in closed))}, its 503s sent {min(refused, default=0):.2f} to "
                  f"{max(refused, default=0):.2f} s after the kill")

            assert {s for _, s in opened} == {400}, Counter(s for _, s in opened)  # fail-open: never refused…
            assert let_through._value.get() > let_through_before  # …but let through unchecked during the switch
            assert {s for _, s in closed} == {400, 503}, Counter(s for _, s in closed)  # fail-closed: 503s then
            # …only during the switch: sent before both hubs were back, and none while Redis was healthy (a
            # request of the load takes milliseconds; one in flight as the master died may be refused too)
            assert all(-1 < t < back_at - killed_at for t in refused), (refused, back_at - killed_at)

            # Limits, cache and fleet state on the new master.
            heavy = next(f"key:heavy-{i}" for i in range(1000)
                         if cluster.master_of(f"{prefix}rl:key:heavy-{i}") == new_port)
            ten_an_hour = (10, 3600.0)  # exact again, both hubs on one bucket: 6 + 4 pass, the 11th is refused
            assert (await open_hub.limiter.check(heavy, 6, ten_an_hour)).reason == "ok"
            assert (await closed_hub.limiter.check(heavy, 4, ten_an_hour)).reason == "ok"
            with pytest.raises(RateLimited):
                await open_hub.limiter.check(heavy, 1, ten_an_hour)
            with redis.Redis(port=new_port) as master:
                assert master.exists(f"{prefix}rl:{heavy}")
            await _cache_and_fleet_work(fail_open, fail_closed, photo, open_hub, prefix, new_port)
    finally:
        cluster.stop()


async def test_sentinels_and_master_with_passwords(hub_pool: InferencePool, tmp_path: Path) -> None:
    sentinels = SentinelSet(tmp_path, password="data-secret", sentinel_password="sentinel-secret")
    prefix = f"t{uuid.uuid4().hex[:6]}:"
    try:
        sentinels.start()  # inside the try: a start that fails half-way still stops what it started
        settings = hub_settings(api_keys=OPS_SPEC, redis_url=sentinels.url, redis_sentinel_password="sentinel-secret",
                                redis_key_prefix=prefix)
        async with serve_hub(settings, hub_pool) as (base, hub), httpx.AsyncClient(base_url=base) as client:
            async def up() -> dict[str, Any] | None:  # the first ping may time out on a busy machine
                status: dict[str, Any] = (await client.get("/status", headers=OPS)).json()
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
        no_password = hub_settings(api_keys=OPS_SPEC, redis_url=sentinels.url, redis_key_prefix=prefix)
        async with serve_hub(no_password, hub_pool) as (base, _), \
                httpx.AsyncClient(base_url=base) as client:
            status = (await client.get("/status", headers=OPS)).json()
            assert status["redis"]["up"] is False and status["redis"]["error"] and status["status"] == "degraded"
            assert "secret" not in json.dumps(status)
    finally:
        sentinels.stop()
