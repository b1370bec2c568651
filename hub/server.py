"""`hgr hub [--host H] [--port P]`: the hub on its own (REST API, cache, rate limits, fleet view)."""

from __future__ import annotations

from collections.abc import Sequence

from common.serve import run


def main(argv: Sequence[str]) -> int:
    from hub.app import create_app

    return run(argv, prog="hgr hub", description=__doc__.splitlines()[0], port_setting="port",
               create_app=create_app,
               banner=lambda s, host, port: f"hgr hub: REST API at http://{host}:{port}/  (schema: /openapi.json)")
