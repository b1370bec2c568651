"""Operational endpoints: liveness, readiness, status, model info, Prometheus metrics, OpenAPI schema and
its interactive documentation (``/docs``, ``hub.apidocs``).

None needs an API key: probes and scrapers run without one. ``/status`` tells a keyless caller only
whether the hub is up; the rest (pool, Redis, policies, fleet) only a key with ``fleet:read``
(docs/security.md). ``/metrics`` is for the scraper on the internal network: the shipped nginx blocks it.
"""

from __future__ import annotations

from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hgr.common import metrics
from hgr.common.auth import FLEET_READ
from hgr.common.config import Settings
from hgr.common.contracts import DetectionPool
from hgr.common.readiness import readiness
from hgr.hub import apidocs
from hgr.hub.access import Access
from hgr.hub.openapi import openapi_schema
from hgr.hub.redis_conn import RedisConn


class OpsHost(Protocol):
    """What these routes need from the hub (``hub.app.Hub``), stated here so the hub imports its
    routes and never the reverse."""

    @property
    def settings(self) -> Settings: ...
    @property
    def pool(self) -> DetectionPool: ...
    def redis_conns(self) -> list[RedisConn]: ...

    @property
    def access(self) -> Access: ...

    def status(self) -> dict[str, Any]: ...

    def public_status(self) -> dict[str, Any]: ...

    def model_info(self) -> dict[str, Any]: ...


def routes(hub: OpsHost) -> list[Route]:
    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> JSONResponse:
        stats = hub.pool.stats()
        conns = hub.redis_conns()  # REDIS_URL's and RATE_LIMIT_REDIS_URL's: `redis` is true when every one is up
        status, body = readiness(ready=bool(hub.pool.ready), workers=stats["alive"], models=stats["models"],
                                 redis=all(c.up for c in conns) if conns else None)
        return JSONResponse(body, status_code=status)

    async def status(request: Request) -> JSONResponse:
        return JSONResponse(hub.status() if await hub.access.may(request, FLEET_READ) else hub.public_status())

    async def model_info(request: Request) -> JSONResponse:
        return JSONResponse(hub.model_info())

    async def prometheus(request: Request) -> Response:
        body, content_type = await metrics.render_off_loop()
        return Response(body, media_type=content_type)

    schema = openapi_schema(hub.settings.app_version)

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(schema)

    return [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/status", status, methods=["GET"]),
        Route("/model/info", model_info, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *apidocs.routes(),
    ]
