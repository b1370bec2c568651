"""One image through the hub: result cache first, then the inference pool, then back into the cache."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from hgr.common import metrics
from hgr.common.contracts import DetectionPool
from hgr.common.errors import HgrError
from hgr.common.inference.model import describe
from hgr.common.options import DetectOptions
from hgr.hub.cache import ResultCache, cache_key

log = logging.getLogger("hgr.hub.detect")


class NotReady(HgrError):
    code = "not_ready"


def model_ids(paths: dict[str, str]) -> dict[str, str]:
    """variant → model id (changes whenever the bundle's bytes do, so the cache never serves stale results)."""
    return {variant: describe(Path(path), "path", variant).model_id for variant, path in paths.items()}


Item = tuple[bytes | HgrError, DetectOptions | HgrError, dict[str, Any]]  # data, options, fields to echo


class Detection:
    def __init__(self, pool: DetectionPool, cache: ResultCache, model_ids: dict[str, str], key_prefix: str) -> None:
        self.pool = pool
        self.cache = cache
        self.model_ids = model_ids
        self.prefix = key_prefix
        # Fairness: one request keeps at most this many of its images in the pool's queues at once, so
        # a 32-image batch fills every worker but a single image sent meanwhile waits behind only a
        # couple of the batch's images, not all of them.
        self.per_request = 2 * max(1, pool.size)

    async def run(self, data: bytes, opts: DetectOptions, received_at: float) -> dict[str, Any]:
        """The common result schema plus ``cached`` and ``processing_ms`` (since ``received_at``,
        a ``time.monotonic()``). Raises HgrError only."""
        key = cache_key(self.prefix, data, self.model_ids.get(opts.model, "absent"), opts) \
            if self.cache.enabled else None
        result = await self.cache.get(key) if key else None
        cached = result is not None
        if result is None:
            if not self.pool.ready:
                raise NotReady("the inference workers are not ready yet; retry shortly")
            result = await self.pool.submit(data, opts, received_at=received_at)
            if key:
                await self.cache.set(key, result)
        return {**result, "cached": cached, "processing_ms": round((time.monotonic() - received_at) * 1000, 3)}

    async def run_all(self, items: list[Item], received_at: float) -> list[dict[str, Any]]:
        """Every item of a batch or upload, concurrently (at most ``per_request`` at once), in order."""
        gate = asyncio.Semaphore(self.per_request)

        async def one(item: Item) -> dict[str, Any]:
            async with gate:
                return await self.run_item(*item[:2], received_at, item[2])

        return list(await asyncio.gather(*(one(item) for item in items)))

    async def run_item(self, data: bytes | HgrError, opts: DetectOptions | HgrError, received_at: float,
                       extra: dict[str, Any]) -> dict[str, Any]:
        """One item of a batch or upload: a result or an ``error``, never an exception, so one bad
        image leaves the others alone."""
        try:
            if isinstance(data, HgrError):
                raise data
            if isinstance(opts, HgrError):
                raise opts
            return {**extra, **await self.run(data, opts, received_at)}
        except HgrError as exc:
            metrics.ERRORS.labels("hub", exc.code).inc()
            return {**extra, "error": exc.to_dict()}
        except Exception:  # a bug, not the client's fault: keep the batch alive, log it
            log.exception("unexpected error on a batch item")
            metrics.ERRORS.labels("hub", "internal_error").inc()
            return {**extra, "error": {"code": "internal_error", "message": "internal error on this image"}}
