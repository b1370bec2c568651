"""Result cache: the same image, model and options give the same answer, so answer it once.

The key is SHA-256 of the image bytes + the answer's id (the model's id, which changes whenever the
bundle's bytes do, and the settings that change a still's answer) + the options' cache key. Two stores
behind one interface: Redis (shared by every hub; entries expire after ``CACHE_TTL``, and the server's
``maxmemory`` with ``allkeys-lru`` bounds the total) and a
bounded in-process LRU with the same TTL. A cache failure is only ever a miss: the request goes on
to the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from typing import Any, Protocol

from hgr.common import metrics
from hgr.common.config import Settings
from hgr.common.contracts import DetectionResult
from hgr.common.options import DetectOptions
from hgr.hub.redis_conn import RedisConn, RedisDown

log = logging.getLogger("hgr.hub.cache")


def cache_key(prefix: str, data: bytes, model_id: str, opts: DetectOptions) -> str:
    return f"{prefix}cache:{hashlib.sha256(data).hexdigest()}:{model_id}:{opts.cache_key()}"


def answer_id(model_id: str, settings: Settings) -> str:
    """The model's id plus the settings that change a still's answer (the exposure retry, the side
    images are scaled to before inference): hubs with different settings sharing one Redis never serve
    each other's answers, and changing a setting retires the old entries at once instead of after
    ``CACHE_TTL``."""
    return f"{model_id}+r{int(settings.exposure_retry)}s{settings.infer_max_side}"


class ResultCache(Protocol):
    enabled: bool  # False: callers skip the lookup, and hashing the image for its key

    async def get(self, key: str) -> DetectionResult | None: ...
    async def set(self, key: str, result: DetectionResult) -> None: ...
    def status(self) -> dict[str, Any]: ...


class _Counts:
    """Hit/miss/error counts for /status (the Prometheus counter is process-wide and shared)."""

    def __init__(self) -> None:
        self.hits = self.misses = self.errors = 0

    def record(self, result: str) -> None:
        metrics.CACHE.labels(result).inc()
        if result == "hit":
            self.hits += 1
        elif result == "miss":
            self.misses += 1
        else:
            self.errors += 1

    def status(self) -> dict[str, Any]:
        lookups = self.hits + self.misses + self.errors
        return {"hits": self.hits, "misses": self.misses, "errors": self.errors,
                "hit_rate": round(self.hits / lookups, 4) if lookups else None}


class MemoryCache:
    enabled = True

    def __init__(self, max_entries: int, ttl_s: float) -> None:
        self._items: OrderedDict[str, tuple[float, DetectionResult]] = OrderedDict()
        self._max, self._ttl = max_entries, ttl_s
        self.counts = _Counts()

    async def get(self, key: str) -> DetectionResult | None:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            if item is not None:
                del self._items[key]
            self.counts.record("miss")
            return None
        self._items.move_to_end(key)
        self.counts.record("hit")
        return item[1]

    async def set(self, key: str, result: DetectionResult) -> None:
        self._items[key] = (time.monotonic() + self._ttl, result)
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def status(self) -> dict[str, Any]:
        return {"enabled": True, "store": "memory", "entries": len(self._items), "max_entries": self._max,
                "ttl_s": self._ttl, **self.counts.status()}


class RedisCache:
    enabled = True

    def __init__(self, conn: RedisConn, ttl_s: int) -> None:
        self.conn, self._ttl = conn, ttl_s
        self.counts = _Counts()

    async def get(self, key: str) -> DetectionResult | None:
        try:
            raw = await self.conn.call(lambda r: r.get(key))
            # Written by ``set`` below; the hub trusts its own Redis.
            result: DetectionResult | None = json.loads(raw) if raw is not None else None
        except (RedisDown, ValueError) as exc:
            log.debug("cache get failed: %s", exc)
            self.counts.record("error")
            return None
        self.counts.record("hit" if result is not None else "miss")
        return result

    async def set(self, key: str, result: DetectionResult) -> None:
        payload = json.dumps(result, separators=(",", ":"))
        try:
            await self.conn.call(lambda r: r.set(key, payload, ex=self._ttl))
        except RedisDown as exc:
            log.debug("cache set failed: %s", exc)

    def status(self) -> dict[str, Any]:
        return {"enabled": True, "store": "redis", "ttl_s": self._ttl, **self.counts.status()}


class NoCache:
    enabled = False

    async def get(self, key: str) -> DetectionResult | None:
        return None

    async def set(self, key: str, result: DetectionResult) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {"enabled": False}
