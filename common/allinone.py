"""`hgr up`: hub + edge + web demo in one process tree, on one port, with nothing else to install.

One inference pool serves both the edge's streams and the hub's REST requests. Without ``MQTT_URL``
the edge reports to the hub through an in-process bus (same topics, same payloads); without Redis the
hub's cache, limiter and fleet store are in-process with the same semantics. The log says which.

Shutdown (Ctrl-C / SIGTERM, handled by uvicorn): open WebSockets get a close frame, in-flight frames
finish, the edge publishes ``offline``, then the workers exit.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from common.config import Settings, load_settings
from common.logs import setup_logging

log = logging.getLogger("hgr.up")


def combine_routes(hub_routes: Sequence[BaseRoute], edge_routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """The hub's routes, then the edge's that the hub does not already answer, static mounts last.

    Both answer /health, /ready and /metrics; the hub's versions cover the shared pool and registry.
    """
    taken = {getattr(r, "path", None) for r in hub_routes}
    edge_only = [r for r in edge_routes if getattr(r, "path", None) not in taken]
    routes = [*hub_routes, *edge_only]
    return [r for r in routes if not isinstance(r, Mount)] + [r for r in routes if isinstance(r, Mount)]


def create_app(settings: Settings) -> Starlette:
    from common.bus import make_bus
    from common.model import model_paths
    from common.pool import InferencePool
    from edge.app import EdgeNode
    from hub.app import Hub
    from hub.middleware import EXCEPTION_HANDLERS, HubMiddleware

    pool = InferencePool(settings, model_paths(settings), service="edge")
    bus = make_bus(settings)
    hub = Hub(settings, pool, bus=bus)
    edge = EdgeNode(settings, pool, bus=bus)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.info("starting", extra={
            "broker": "mqtt" if settings.mqtt_url else "in-process bus",
            "redis": "redis" if settings.resolved_redis_url() else "in-process cache, limiter and fleet store",
            "workers": settings.resolved_workers()})
        await pool.start()
        # The edge first: its reporter sets the Last Will, which must precede the bus's first
        # connection. The bus is reference-counted, so the hub's start/stop pair nests inside.
        await edge.start()
        await bus.start()
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()
            await bus.stop()
            await edge.stop()
            await pool.close()
            log.info("stopped")

    app = Starlette(routes=combine_routes(hub.routes, edge.routes), lifespan=lifespan,
                    exception_handlers=EXCEPTION_HANDLERS)
    app.add_middleware(HubMiddleware, settings=settings)
    app.state.edge, app.state.hub, app.state.pool = edge, hub, pool
    return app


def main(argv: Sequence[str]) -> int:
    import uvicorn

    from edge.server import GracefulServer, uvicorn_options

    parser = argparse.ArgumentParser(prog="hgr up", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(list(argv))
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = load_settings(**overrides)
    setup_logging(settings)
    app = create_app(settings)
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = f"http://{shown}:{settings.port}/"
    print(f"hgr up: web demo at {url}  (REST API {url}detect-fingers, fleet {url}fleet, "
          f"WebSocket ws://{shown}:{settings.port}/ws)", flush=True)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, **uvicorn_options(settings))
    # Answer the frames in inference and close sockets with 1001 before uvicorn's own 1012 closes.
    GracefulServer(config, before_shutdown=[app.state.edge.stop]).run()
    return 0
