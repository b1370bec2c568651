"""A Redis connection of the hub (``REDIS_URL``'s, for the cache, the fleet and the rate limits; or
``RATE_LIMIT_REDIS_URL``'s, the limits' own), with its health.

Calls fail fast instead of hanging a request: short socket timeouts, no client-side retries, and
after a failure the connection is marked down so further calls are refused at once (``RedisDown``)
until a background ping sees Redis again. redis-py reconnects by itself on the next command; the
pinger is what notices recovery when no traffic would, and what keeps ``/status`` and
``hgr_redis_up`` truthful.

The URL picks the topology (``hgr.common.redis_url``): one server, a master found through Sentinels
(every new connection asks them, so after a failover the next connection lands on the new master), or
a Redis Cluster (redis-py's RedisCluster routes each key to its shard). Callers see the same client
interface and the same RedisDown in all three.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import OutOfMemoryError, RedisClusterException, RedisError

from hgr.common import metrics
from hgr.common.masking import mask_url
from hgr.common.redis_url import RedisTarget, parse_redis_url

log = logging.getLogger("hgr.hub.redis")
T = TypeVar("T")
Client = aioredis.Redis | RedisCluster
# What "Redis is away" looks like. RedisCluster raises RedisClusterException, which is not a RedisError,
# when it cannot (re)learn the slot map: "cannot be connected" with no node reachable, or a slot not
# covered. Uncaught, it ended the pinger (Redis then stayed down for good) and made a hub fail to start
# while its cluster was unreachable; a call that re-learns the map could have carried it to a 500.
ERRORS = (RedisError, RedisClusterException, OSError)


def text(value: Any) -> str:
    """A Redis reply value as text, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisDown(Exception):
    """Redis is unreachable (now or at the last attempt); callers apply their own fallback."""


class RedisFull(RedisDown):
    """Redis answered, but refuses writes: it is at ``maxmemory`` under ``noeviction`` (the limits' Redis, as
    shipped). It is up; callers that do not tell the two apart treat it as down."""


class RedisConn:
    def __init__(self, url: str, *, timeout_s: float = 0.5, ping_interval_s: float = 1.0,
                 sentinel_password: str | None = None, name: str = "main") -> None:
        self.url = url
        self.name = name  # the `redis` label of hgr_redis_up: `main` (REDIS_URL) or `rate_limit`
        self.target = parse_redis_url(url)
        self.client: Client = make_client(self.target, timeout_s, sentinel_password)
        self.up = False
        self.last_error: str | None = None
        self.down_since: float | None = None
        self._ping_interval = ping_interval_s
        self._pinger: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.ping()
        self._pinger = asyncio.create_task(self._ping_loop(), name=f"redis-ping-{self.name}")

    async def close(self) -> None:
        if self._pinger:
            self._pinger.cancel()
            await asyncio.gather(self._pinger, return_exceptions=True)
        await self.client.aclose()

    async def ping(self) -> bool:
        try:
            await self.client.ping()
        except ERRORS as exc:
            self._mark_down(exc)
            return False
        self._mark_up()
        return True

    async def call(self, fn: Callable[[Client], Awaitable[T]]) -> T:
        """Run ``fn(client)``; raise RedisDown (never a redis-py error) if Redis is or goes away, RedisFull if
        it refuses a write for want of memory."""
        if not self.up:
            raise RedisDown(self.last_error or "redis is down")
        try:
            result = await fn(self.client)
        except OutOfMemoryError as exc:  # not marked down: it answers, and reads and deletes still work
            raise RedisFull(str(exc)) from None
        except ERRORS as exc:
            self._mark_down(exc)
            raise RedisDown(str(exc)) from None
        return result

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"configured": True, "up": self.up, "url": mask_url(self.url),
                               "topology": self.target.kind}
        if not self.up:
            out["error"] = self.last_error
            out["down_for_s"] = round(time.monotonic() - self.down_since, 1) if self.down_since else None
        return out

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self._ping_interval)
            await self.ping()

    def _mark_up(self) -> None:
        if not self.up:
            log.info("redis is up", extra={"redis": mask_url(self.url), "role": self.name})
        self.up, self.last_error, self.down_since = True, None, None
        metrics.REDIS_UP.labels(self.name).set(1)

    def _mark_down(self, exc: BaseException) -> None:
        if self.up or self.down_since is None:
            log.warning("redis is down: %s", exc, extra={"redis": mask_url(self.url), "role": self.name})
            self.down_since = time.monotonic()
        self.up, self.last_error = False, f"{exc.__class__.__name__}: {exc}"
        metrics.REDIS_UP.labels(self.name).set(0)


def make_client(target: RedisTarget, timeout_s: float, sentinel_password: str | None = None) -> Client:
    """A fail-fast client for ``target``: short timeouts and no retries (RedisConn decides what a failure
    means), raw bytes in and out. ``sentinel_password``: what the Sentinels themselves require."""
    options: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s,
                               "retry": Retry(NoBackoff(), 0), "health_check_interval": 0,
                               "decode_responses": False}
    if target.kind == "single":
        return aioredis.Redis.from_url(target.url, **options)
    options.update(username=target.username, password=target.password, ssl=target.tls)
    if target.kind == "cluster":
        return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in target.nodes], **options)
    # Sentinels have their own password (REDIS_SENTINEL_PASSWORD), not the master's, and answer as
    # quickly as the master must; the master connection is re-resolved through them on every connect.
    # (Sentinel's __init__ is typed from redis 8 on; unused-ignore keeps the older releases in range checked.)
    sentinel = Sentinel(list(target.nodes),  # type: ignore[no-untyped-call, unused-ignore]
                        sentinel_kwargs={"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s,
                                         "password": sentinel_password})
    client: aioredis.Redis = sentinel.master_for(target.master, db=target.db, **options)
    return client
