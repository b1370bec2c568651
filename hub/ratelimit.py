"""Global rate limits: one GCRA bucket per API key name (or per client IP when anonymous).

Two stores with the same arithmetic (``hub.gcra``): Redis (one atomic Lua script per decision, so
any number of hub processes share one budget) and an in-process dict for the all-in-one without
Redis. The Redis is ``RATE_LIMIT_REDIS_URL``'s when set (a Redis of the limits' own, whose eviction
policy nothing else needs), else ``REDIS_URL``'s; ``check_eviction`` reads its policy at start. When it is
unreachable ``RATE_LIMIT_FAIL`` decides: ``open`` allows (and says so in the metrics), ``closed``
refuses with 503; when it is full (``noeviction`` refusing writes) it refuses with 503 either way.
``RATE_LIMIT_SHADOW`` computes and reports everything but never refuses.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from hgr.common import metrics
from hgr.common.config import Settings
from hgr.common.errors import HgrError
from hgr.hub.gcra import US, Decision, Policy, gcra
from hgr.hub.redis_conn import RedisConn, RedisDown, RedisFull, text

log = logging.getLogger("hgr.hub.ratelimit")

LUA = files("hgr.hub").joinpath("ratelimit.lua").read_text()
NEAR_LIMIT_FRACTION = 0.1  # "near limit": fewer than 10 % of the capacity left after this request
FULL_LOG_EVERY_S = 10.0


class RateLimited(HgrError):
    code = "rate_limited"


class LimiterUnavailable(HgrError):
    code = "rate_limiter_unavailable"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the client is told: whether to proceed, and the RateLimit-* header values."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    retry_after_s: int | None = None  # only when refused
    reason: str = "ok"  # ok | limited | too_costly | shadow | store_down | store_full

    def headers(self) -> dict[str, str]:
        out = {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(max(0, self.remaining)),
               "RateLimit-Reset": str(self.reset_s)}
        if self.retry_after_s is not None:
            out["Retry-After"] = str(self.retry_after_s)
        return out


class MemoryBuckets:
    """TATs in a bounded dict; a bucket past its TAT is full again, so it is the first to go."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._tats: OrderedDict[str, int] = OrderedDict()
        self._max = max_keys

    async def decide(self, key: str, now_us: int, cost: int, policy: Policy) -> Decision:
        decision = gcra(self._tats.get(key), now_us, cost, policy.interval_us, policy.capacity)
        if decision.allowed:
            self._tats[key] = decision.new_tat_us
            self._tats.move_to_end(key)
            while len(self._tats) > self._max:
                self._tats.popitem(last=False)
        return decision


class RedisBuckets:
    def __init__(self, conn: RedisConn) -> None:
        self.conn = conn
        self._script = conn.client.register_script(LUA)

    async def decide(self, key: str, now_us: int, cost: int, policy: Policy) -> Decision:
        reply = await self.conn.call(
            lambda _: self._script(keys=[key], args=[now_us, cost, policy.interval_us, policy.capacity]))
        allowed, new_tat, remaining, retry_after, reset = (int(v) for v in reply)
        return Decision(bool(allowed), new_tat, remaining, retry_after, reset)


class RateLimiter:
    def __init__(self, settings: Settings, redis: RedisConn | None = None) -> None:
        """``redis``: the connection that holds the buckets (the hub passes RATE_LIMIT_REDIS_URL's when
        set, else REDIS_URL's); None keeps them in this process."""
        self.settings = settings
        self.enabled = settings.rate_limit_enabled
        self.default = Policy(settings.rate_limit_requests, settings.rate_limit_window, settings.rate_limit_burst)
        self.prefix = f"{settings.redis_key_prefix}rl:"
        self.redis = redis
        self.store: MemoryBuckets | RedisBuckets = RedisBuckets(redis) if redis else MemoryBuckets()
        self.eviction: dict[str, Any] | None = None  # the Redis's eviction settings, read at start
        self._full_logged_at = -math.inf

    async def check_eviction(self) -> dict[str, Any] | None:
        """Read (and keep, for ``status``) the eviction settings of the Redis that holds the buckets; None
        without one. Any policy but ``noeviction`` under a ``maxmemory`` may drop an exhausted bucket (every
        bucket has a TTL: it expires when full again) and hand its client a full allowance (issue #20,
        docs/security.md "Redis"): that is logged as a warning."""
        if self.redis is None:
            return None
        self.eviction = await read_eviction(self.redis)
        if self.eviction["limits_safe"] is False:
            log.warning("Redis maxmemory-policy %s (maxmemory %d) may evict rate-limit buckets: a client whose "
                        "bucket is evicted gets a full allowance; give the limits a Redis of their own "
                        "(RATE_LIMIT_REDIS_URL) with noeviction, or use noeviction for this one "
                        "(docs/security.md)", self.eviction["policy"], self.eviction["maxmemory"],
                        extra={"redis": self.redis.status()["url"]})
        return self.eviction

    def policy_for(self, override: tuple[int, float] | None) -> Policy:
        if override is None:
            return self.default
        return Policy(override[0], override[1], self.settings.rate_limit_burst)

    async def check(self, identity: str, cost: int, override: tuple[int, float] | None = None,
                    now_s: float | None = None) -> Verdict:
        """Charge ``cost`` images to ``identity`` (``key:<name>`` or ``ip:<addr>``). Raises RateLimited
        (429) or LimiterUnavailable (503, fail-closed) carrying the headers; else returns the verdict."""
        policy = self.policy_for(override)
        if not self.enabled:
            return Verdict(True, policy.capacity, policy.capacity, 0)
        now_us = int((time.time() if now_s is None else now_s) * US)
        try:
            decision = await self.store.decide(self.prefix + identity, now_us, cost, policy)
        except RedisFull:
            return self._store_full(policy)
        except RedisDown:
            return self._store_down(policy)
        verdict = _verdict(decision, policy)
        if verdict.allowed:
            near = verdict.remaining < policy.capacity * NEAR_LIMIT_FRACTION
            metrics.RATE_LIMIT.labels("near_limit" if near else "allowed").inc()
            return verdict
        if self.settings.rate_limit_shadow:
            metrics.RATE_LIMIT.labels("shadow_limited").inc()
            log.info("rate limit exceeded (shadow mode: allowed)", extra={"identity": identity, "cost": cost})
            return Verdict(True, verdict.limit, 0, verdict.reset_s, None, "shadow")
        metrics.RATE_LIMIT.labels("limited").inc()
        raise _refusal(verdict, cost, policy)

    async def admit(self, identity: str, override: tuple[int, float] | None = None) -> int:
        """Before reading a body whose cost is not known yet (a batch, an upload): refuse (429) a key
        that cannot afford a single image, so it cannot make us read and parse megabytes only to be
        refused; charge nothing otherwise. Returns the images charged: 0, or 1 in shadow mode or when the
        key ran out between the look and the refusal (``check_rest`` then charges that much less)."""
        if not self.enabled:
            return 0
        now_us = int(time.time() * US)
        try:  # a cost-0 decision changes nothing and tells what is left
            left = (await self.store.decide(self.prefix + identity, now_us, 0, self.policy_for(override))).remaining
        except RedisDown:
            return 0  # the charge after the read applies RATE_LIMIT_FAIL
        if left >= 1:
            return 0
        await self.check(identity, 1, override)  # refuses with the usual headers and metrics
        return 1

    async def check_rest(self, identity: str, total: int, paid: int,
                         override: tuple[int, float] | None = None) -> Verdict:
        """Charge a request whose cost (``total`` images) became known after ``paid`` were charged up
        front (``admit``). A ``total`` over the whole allowance is refused as ``check`` would refuse it."""
        policy = self.policy_for(override)
        if self.enabled and not self.settings.rate_limit_shadow and total > policy.capacity:
            metrics.RATE_LIMIT.labels("limited").inc()
            too_costly = Verdict(False, policy.capacity, 0, 0, math.ceil(policy.window_s), "too_costly")
            raise _refusal(too_costly, total, policy)
        return await self.check(identity, max(0, total - paid), override)

    def _store_down(self, policy: Policy) -> Verdict:
        if self.settings.rate_limit_fail == "open" or self.settings.rate_limit_shadow:
            metrics.RATE_LIMIT.labels("error_allowed").inc()
            return Verdict(True, policy.capacity, policy.capacity, 0, None, "store_down")
        metrics.RATE_LIMIT.labels("error_refused").inc()
        raise LimiterUnavailable("the rate limiter's store is unreachable; try again shortly",
                                 headers={"Retry-After": "1"})

    def _store_full(self, policy: Policy) -> Verdict:
        """Refused whatever RATE_LIMIT_FAIL says: fail-open is for an outage, and a full limits Redis is one a
        client can cause (a bucket per address it uses, until ``noeviction`` refuses new ones): letting
        everyone through then would hand the limits to whoever fills it. Shadow mode still never refuses."""
        if self.settings.rate_limit_shadow:
            metrics.RATE_LIMIT.labels("error_allowed").inc()
            return Verdict(True, policy.capacity, policy.capacity, 0, None, "store_full")
        metrics.RATE_LIMIT.labels("full_refused").inc()
        if time.monotonic() - self._full_logged_at >= FULL_LOG_EVERY_S:  # one line, not one per request
            self._full_logged_at = time.monotonic()
            log.warning("the rate limits' Redis is full (maxmemory, noeviction): requests refused whatever "
                        "RATE_LIMIT_FAIL says (docs/security.md \"Redis\")")
        raise LimiterUnavailable("the rate limiter's store is full; try again shortly", headers={"Retry-After": "1"})

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "enabled": self.enabled, "store": "redis" if isinstance(self.store, RedisBuckets) else "memory",
            "requests": self.default.requests, "window_s": self.default.window_s,
            "burst": self.default.burst, "shadow": self.settings.rate_limit_shadow,
            "fail": self.settings.rate_limit_fail}
        if self.redis is not None:  # where the buckets are, and whether that Redis may evict them
            out["redis"] = {**self.redis.status(), "dedicated": bool(self.settings.rate_limit_redis_url),
                            "eviction": self.eviction}
        return out


async def read_eviction(conn: RedisConn) -> dict[str, Any]:
    """``maxmemory`` and ``maxmemory-policy`` of ``conn``'s Redis, and ``limits_safe``: whether it never
    evicts (``noeviction``, or no ``maxmemory``); None (policy ``unknown``) when CONFIG is refused or
    Redis is down: check such a Redis by hand."""
    try:  # straight to the client: a managed Redis that refuses CONFIG is not a Redis that is down
        raw: dict[Any, Any] = await conn.client.config_get("maxmemory*")
        # A Redis Cluster may answer per node ({node: {...}}): every node must be safe.
        nodes = [v for v in raw.values() if isinstance(v, dict)] or [raw]
        configs = [{text(k): text(v) for k, v in node.items()} for node in nodes]
        pairs = {(int(c["maxmemory"]), c["maxmemory-policy"]) for c in configs}
    except Exception as exc:  # noqa: BLE001 - CONFIG renamed or refused, or Redis down: unknown
        log.warning("could not read Redis's eviction policy: %s", exc, extra={"redis": conn.status()["url"]})
        return {"maxmemory": None, "policy": "unknown", "limits_safe": None}
    return {"maxmemory": max(m for m, _ in pairs), "policy": ",".join(sorted({p for _, p in pairs})),
            "limits_safe": all(m == 0 or p == "noeviction" for m, p in pairs)}



def _verdict(d: Decision, policy: Policy) -> Verdict:
    reset_s = math.ceil(d.reset_us / US)
    if d.allowed:
        return Verdict(True, policy.capacity, d.remaining, reset_s)
    if d.retry_after_us < 0:
        return Verdict(False, policy.capacity, d.remaining, reset_s, math.ceil(policy.window_s), "too_costly")
    return Verdict(False, policy.capacity, d.remaining, reset_s, max(1, math.ceil(d.retry_after_us / US)), "limited")


def _refusal(verdict: Verdict, cost: int, policy: Policy) -> RateLimited:
    if verdict.reason == "too_costly":
        return RateLimited(f"this request costs {cost} images but the limit allows at most {policy.capacity} "
                           f"at once; send smaller batches", code="batch_exceeds_rate_limit",
                           headers=verdict.headers())
    return RateLimited(f"rate limit exceeded ({policy.requests} images per {policy.window_s:g} s); "
                       f"retry after {verdict.retry_after_s} s", headers=verdict.headers())
