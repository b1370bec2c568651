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
from hgr.hub.cache import MemoryCache, NoCache, RedisCache, ResultCache, answer_id, keyed_inference
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
        sentinel_password = settings.redis_sentinel_password or None
        self.redis = RedisConn(url, sentinel_password=sentinel_password) if url else None
        # The rate limits in a Redis of their own when RATE_LIMIT_REDIS_URL says so: eviction policy is per
        # Redis, so only there can the limits have `noeviction` while the cache keeps `allkeys-lru`, and
        # no cache entry or fleet key competes with a bucket for memory (docs/security.md "Redis").
        limits_url = settings.rate_limit_redis_url
        self.limits_redis = (RedisConn(limits_url, sentinel_password=sentinel_password, name="rate_limit")
                             if limits_url else self.redis)
        self.cache: ResultCache = (NoCache() if not settings.cache_enabled
                                   else RedisCache(self.redis, settings.cache_ttl) if self.redis
                                   else MemoryCache(settings.cache_max_entries, settings.cache_ttl))
        self.limiter = RateLimiter(settings, self.limits_redis)
        self.access = Access(settings, self.keyring, self.limiter)
        self.model_ids = model_ids(pool.model_paths)
        # What runs the workers' models on this CPU, resolved once here (the workers resolve it alike): part of
        # every cached answer's id.
        self.inference = keyed_inference(settings)
        answer_ids = {variant: answer_id(mid, settings, self.inference) for variant, mid in self.model_ids.items()}
        self.detection = Detection(pool, self.cache, answer_ids, settings.redis_key_prefix)
        # The fleet talks to Redis directly (its own retries), not through RedisConn's fail-fast wrapper.
        self.fleet = (FleetService(settings, bus, self.redis.client if self.redis else None)
                      if bus is not None else None)
        self.started = time.monotonic()
        self.routes: list[BaseRoute] = [*routes_detect.routes(self), *routes_ops.routes(self),
                                         *(routes_fleet.routes(self.fleet, self.access) if self.fleet else [])]

    async def start(self) -> None:
        self.started = time.monotonic()
        for conn in self.redis_conns():
            await conn.start()  # Redis down at start is not fatal: the pinger keeps trying
        await self.limiter.check_eviction()  # of the Redis that holds the limits
        if self.fleet:
            await self.fleet.start()  # starts the bus (reference-counted: shared with the edge in `hgr up`)
        log.info("hub started", extra={
            "redis": self.redis.status()["url"] if self.redis else None,
            "rate_limit_redis": self.limits_redis.status()["url"] if self.limits_redis else None,
            "auth": self.settings.auth_enabled,
            "keys": len(self.keyring.keys), "cache": self.cache.status().get("store", "off"),
            "rate_limit": self.limiter.status()})

    def redis_conns(self) -> list[RedisConn]:
        """Every Redis connection of the hub: REDIS_URL's and RATE_LIMIT_REDIS_URL's, each once."""
        conns = [self.redis] if self.redis else []
        if self.limits_redis is not None and self.limits_redis is not self.redis:
            conns.append(self.limits_redis)
        return conns

    async def stop(self) -> None:
        if self.fleet:
            await self.fleet.stop()
        for conn in self.redis_conns():
            await conn.close()

    def status(self) -> dict[str, Any]:
        s = self.settings
        redis: dict[str, Any] = self.redis.status() if self.redis else {"configured": False}
        dedicated = self.limits_redis if self.limits_redis is not self.redis else None
        degraded = [name for name, bad in (("redis", self.redis is not None and not self.redis.up),
                                           ("rate_limit_redis", dedicated is not None and not dedicated.up),
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
