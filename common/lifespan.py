"""The app lifespan shared by the edge, the hub and ``hgr up``: pool first, parts in order, reverse on stop."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from starlette.applications import Starlette

from hgr.common import internals
from hgr.common.contracts import DetectionPool

log = logging.getLogger("hgr.serve")


class Part(Protocol):
    """A service part with a lifecycle: ``EdgeNode``, ``Hub``."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def lifespan(pool: DetectionPool, *parts: Part, describe: dict[str, Any] | None = None
             ) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    """An app lifespan: the inference pool first, then each part (``start()``/``stop()``) in order;
    on shutdown the parts in reverse and the pool last, so in-flight work finishes before the workers
    exit. ``describe`` goes into the "starting" log line."""

    @contextlib.asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[None]:
        log.info("starting", extra=describe or {})
        internals.warn_fallbacks()
        await pool.start()
        started: list[Part] = []
        try:
            for part in parts:
                await part.start()
                started.append(part)
            yield
        finally:
            for part in reversed(started):
                await part.stop()
            await pool.close()
            log.info("stopped")

    return run
