"""The hub: REST detection API, result cache, global rate limits, fleet view, ops endpoints.

``Hub(settings, pool, bus=...)`` owns everything but the pool and the bus (shared with the edge in
the all-in-one): its routes go into any Starlette app, together with ``HubMiddleware`` and
``EXCEPTION_HANDLERS`` from ``hub.middleware``. ``create_app(settings)`` builds the standalone hub.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from hgr.common import internals
from hgr.common.auth import KeyRing
from hgr.common.config import Settings
from hgr.common.contracts import DetectionPool
from hgr.common.lifespan import lifespan
from hgr.common.options import default_options
from hgr.hub import routes_detect, routes_fleet, routes_ops
from hgr.hub.access import Access
from hgr.hub.cache import MemoryCache, NoCache, RedisCache, ResultCache, answer_id
from hgr.hub.detection import Detection, model_ids
from hgr.hub.fleet import FleetService
from hgr.hub.middleware import EXCEPTION_HANDLERS, HubMiddleware
from hgr.hub.ratelimit import RateLimiter
from hgr.hub.redis_conn import RedisConn

if TYPE_CHECKING:  # the bus module imports paho; it is loaded only when MQTT is configured
    from hgr.common.messaging.bus import MessageBus

log = logging.getLogger("hgr.hub")


class Hub:
    def __init__(self, settings: Settings, pool: DetectionPool, *, bus: MessageBus | None = None) -> None:
        self.settings = settings
        self.pool = pool
        self.bus = bus
        self.keyring = KeyRing.from_spec(settings.api_keys)
        self.defaults = default_options(settings)
        url = settings.resolved_redis_url()
        self.redis = RedisConn(url, sentinel_password=settings.redis_sentinel_password or None) if url else None
        self.cache: ResultCache = (NoCache() if not settings.cache_enabled
                                   else RedisCache(self.redis, settings.cache_ttl) if self.redis
                                   else MemoryCache(settings.cache_max_entries, settings.cache_ttl))
        self.limiter = RateLimiter(settings, self.redis)
        self.access = Access(settings, self.keyring, self.limiter)
        self.model_ids = model_ids(pool.model_paths)
        answer_ids = {variant: answer_id(mid, settings) for variant, mid in self.model_ids.items()}
        self.detection = Detection(pool, self.cache, answer_ids, settings.redis_key_prefix)
        # The fleet talks to Redis directly (its own retries), not through RedisConn's fail-fast wrapper.
        self.fleet = (FleetService(settings, bus, self.redis.client if self.redis else None)
                      if bus is not None else None)
        self.started = time.monotonic()
        self.eviction: dict[str, Any] | None = None  # Redis's eviction settings, read at start
        self.routes: list[BaseRoute] = [*routes_detect.routes(self), *routes_ops.routes(self),
                                         *(routes_fleet.routes(self.fleet, self.access) if self.fleet else [])]

    async def start(self) -> None:
        self.started = time.monotonic()
        if self.redis:
            await self.redis.start()  # Redis down at start is not fatal: the pinger keeps trying
            self.eviction = await self.check_eviction()
        if self.fleet:
            await self.fleet.start()  # starts the bus (reference-counted: shared with the edge in `hgr up`)
        log.info("hub started", extra={
            "redis": self.redis.status()["url"] if self.redis else None, "auth": self.settings.auth_enabled,
            "keys": len(self.keyring.keys), "cache": self.cache.status().get("store", "off"),
            "rate_limit": self.limiter.status()})

    async def check_eviction(self) -> dict[str, Any]:
        """Redis's ``maxmemory`` and ``maxmemory-policy``, and whether they let Redis evict rate-limit
        buckets: every bucket has a TTL (it expires when full again), so any policy but ``noeviction`` may
        drop an exhausted one under memory pressure and hand its client a full allowance (issue #20,
        docs/security.md "Redis"). Logged as a warning when they do; shown in ``/status``."""
        assert self.redis is not None
        try:  # straight to the client: a managed Redis that refuses CONFIG is not a Redis that is down
            raw: dict[Any, Any] = await self.redis.client.config_get("maxmemory*")
            # A Redis Cluster may answer per node ({node: {...}}): every node must be safe.
            nodes = [v for v in raw.values() if isinstance(v, dict)] or [raw]
            configs = [{_text(k): _text(v) for k, v in node.items()} for node in nodes]
            pairs = {(int(c["maxmemory"]), c["maxmemory-policy"]) for c in configs}
        except Exception as exc:  # noqa: BLE001 - CONFIG renamed or refused, or Redis down: unknown
            log.warning("could not read Redis's eviction policy: %s", exc)
            return {"maxmemory": None, "policy": "unknown", "limits_safe": None}
        safe = all(m == 0 or p == "noeviction" for m, p in pairs)
        maxmemory, policy = max(m for m, _ in pairs), ",".join(sorted({p for _, p in pairs}))
        if not safe:
            log.warning("Redis maxmemory-policy %s (maxmemory %d) may evict rate-limit buckets: a client whose "
                        "bucket is evicted gets a full allowance; use noeviction with RATE_LIMIT_FAIL=closed, or "
                        "a Redis of their own for the limits (docs/security.md)", policy, maxmemory)
        return {"maxmemory": maxmemory, "policy": policy, "limits_safe": safe}

    async def stop(self) -> None:
        if self.fleet:
            await self.fleet.stop()
        if self.redis:
            await self.redis.close()

    def status(self) -> dict[str, Any]:
        s = self.settings
        redis: dict[str, Any] = self.redis.status() if self.redis else {"configured": False}
        if self.redis:
            redis["eviction"] = self.eviction
        degraded = [name for name, bad in (("redis", self.redis is not None and not self.redis.up),
                                           ("workers", not self.pool.ready)) if bad]
        bus = None
        if self.bus is not None:
            bus = {"kind": "mqtt" if s.mqtt_url else "in-process", "connected": bool(self.bus.connected)}
        return {
            "service": s.app_name, "version": s.app_version, "status": "degraded" if degraded else "ok",
            "degraded": degraded, "uptime_s": round(time.monotonic() - self.started, 1),
            "model": self.model_info(), "pool": self.pool.stats(), "redis": redis, "mqtt": bus,
            "cache": self.cache.status(), "rate_limit": self.limiter.status(),
            "auth": {"enabled": s.auth_enabled, "keys": len(self.keyring.keys)},
            "fleet": self.fleet.status() if self.fleet else None,
            "limits": {"max_image_size": s.max_image_size, "max_image_pixels": s.max_image_pixels,
                       "max_request_size": s.max_request_size, "max_batch_images": s.max_batch_images},
            "internals": internals.status(),
        }

    def public_status(self) -> dict[str, Any]:
        """What ``/status`` tells a caller without a ``fleet:read`` key: up or not, and nothing about the
        deployment (no PIDs, Redis address, policies, edge or stream ids; docs/security.md)."""
        full = self.status()
        return {k: full[k] for k in ("service", "version", "status", "degraded", "uptime_s")}

    def model_info(self) -> dict[str, Any]:
        return {"default": self.defaults.model, "variants": self.model_ids,
                "defaults": {"num_hands": self.defaults.num_hands, "mirrored": self.defaults.mirrored},
                "ready": bool(self.pool.ready)}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def create_app(settings: Settings) -> Starlette:
    """The standalone hub: its own pool, bus (for the fleet view) and Redis client."""
    from hgr.common.inference.model import model_paths
    from hgr.common.inference.pool import InferencePool
    from hgr.common.messaging.bus import make_bus

    pool = InferencePool(settings, model_paths(settings), service="hub")
    hub = Hub(settings, pool, bus=make_bus(settings, service="hub"))

    app = Starlette(routes=hub.routes, lifespan=lifespan(pool, hub), exception_handlers=EXCEPTION_HANDLERS,
                    middleware=[Middleware(HubMiddleware)])
    app.state.hub = hub
    return app
