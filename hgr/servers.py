"""``hgr edge`` and ``hgr hub``: each service on its own, started by ``hgr.serve.run``."""

from __future__ import annotations

from collections.abc import Sequence

from hgr.serve import run


def edge_main(argv: Sequence[str]) -> int:
    """Start a standalone edge node (WebSocket frames in, results out)."""
    from hgr.edge.app import create_app

    return run(argv, service="edge", description="Start an edge node.",
               create_app=create_app,
               banner=lambda s, host, port: f"hgr edge {s.resolved_edge_id()}: ws://{host}:{port}/ws  "
                                            f"(web demo http://{host}:{port}/)",
               before_shutdown=lambda app: [app.state.edge.stop])


def hub_main(argv: Sequence[str]) -> int:
    """Start the hub on its own (REST API, cache, rate limits, fleet view)."""
    from hgr.hub.app import create_app

    return run(argv, service="hub", description="Start the hub (REST API, cache, rate limits, fleet view).",
               create_app=create_app,
               banner=lambda s, host, port: f"hgr hub: REST API at http://{host}:{port}/  (schema: /openapi.json)")
