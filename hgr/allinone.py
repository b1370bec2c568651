"""`hgr up`: hub + edge + web demo in one process tree, on one port, with nothing else to install.

One inference pool serves both the edge's streams and the hub's REST requests. Without ``MQTT_URL``
the edge reports to the hub through an in-process bus (same topics, same payloads); without Redis the
hub's cache, limiter and fleet store are in-process with the same semantics. The log says which.

Shutdown (Ctrl-C / SIGTERM, handled by uvicorn): open WebSockets get a close frame, in-flight frames
finish, the edge publishes ``offline``, then the workers exit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import Scope

from hgr.common.config import Settings
from hgr.common.lifespan import lifespan
from hgr.serve import run

log = logging.getLogger("hgr.up")


def combine_routes(hub_routes: Sequence[BaseRoute], edge_routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """The hub's routes, then the edge's that the hub does not already answer, static mounts last.

    Both answer /health, /ready and /metrics; the hub's versions cover the shared pool and registry.
    """
    taken = {getattr(r, "path", None) for r in hub_routes}
    edge_only = [r for r in edge_routes if getattr(r, "path", None) not in taken]
    routes = [*hub_routes, *edge_only]
    plain = [r for r in routes if not isinstance(r, Mount)]
    return plain + [YieldingMount(r, plain) for r in routes if isinstance(r, Mount)]


class YieldingMount(Mount):
    """A mount (the web demo at ``/``) that yields every path a route before it owns: GET on a POST-only
    route then gets the router's 405, as on ``hgr hub``, instead of the static files' 404 (Starlette's
    router takes a later full match over an earlier method mismatch)."""

    def __init__(self, mount: Mount, routes: list[BaseRoute]) -> None:
        super().__init__(mount.path, app=mount.app, name=mount.name)
        self.routes_before = routes

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if any(r.matches(scope)[0] != Match.NONE for r in self.routes_before):
            return Match.NONE, {}
        return super().matches(scope)


def create_app(settings: Settings) -> Starlette:
    from hgr.common.inference.model import model_paths
    from hgr.common.inference.pool import InferencePool
    from hgr.common.messaging.bus import make_bus
    from hgr.edge.app import EdgeNode
    from hgr.hub.app import Hub
    from hgr.hub.middleware import EXCEPTION_HANDLERS, HubMiddleware

    pool = InferencePool(settings, model_paths(settings), service="edge")
    bus = make_bus(settings)
    hub = Hub(settings, pool, bus=bus)
    edge = EdgeNode(settings, pool, bus=bus)

    describe = {"broker": "mqtt" if settings.mqtt_url else "in-process bus",
                "redis": "redis" if settings.resolved_redis_url() else "in-process cache and fleet store",
                "rate_limits": ("their own redis" if settings.rate_limit_redis_url
                                else "redis" if settings.resolved_redis_url() else "in-process"),
                "workers": settings.resolved_workers()}
    # The edge starts first: its reporter sets the Last Will, which must precede the bus's first
    # connection. The bus is reference-counted, so the hub's start/stop pair nests inside the edge's.
    app = Starlette(routes=combine_routes(hub.routes, edge.routes),
                    lifespan=lifespan(pool, edge, hub, describe=describe),
                    exception_handlers=EXCEPTION_HANDLERS)
    app.add_middleware(HubMiddleware)
    app.state.edge, app.state.hub, app.state.pool = edge, hub, pool
    return app


def main(argv: Sequence[str]) -> int:
    return run(argv, service="up", description=__doc__.splitlines()[0], create_app=create_app,
               banner=lambda s, host, port: f"hgr up: web demo at http://{host}:{port}/  (REST API "
                                            f"http://{host}:{port}/detect-fingers, fleet http://{host}:{port}/fleet "
                                            f"with a fleet:read key, "
                                            f"WebSocket ws://{host}:{port}/ws)",
               # Answer the frames in inference and close sockets with 1001 before uvicorn's 1012.
               before_shutdown=lambda app: [app.state.edge.stop])
