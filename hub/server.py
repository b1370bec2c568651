"""`hgr hub [--host H] [--port P]`: the hub on its own (REST API, cache, rate limits, fleet view)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from common.config import load_settings
from common.logs import setup_logging


def main(argv: Sequence[str]) -> int:
    import uvicorn

    from hub.app import create_app

    parser = argparse.ArgumentParser(prog="hgr hub", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=None, help="bind address (default: HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (default: PORT)")
    args = parser.parse_args(list(argv))
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = load_settings(**overrides)
    setup_logging(settings)
    app = create_app(settings)
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    print(f"hgr hub: REST API at http://{shown}:{settings.port}/  (schema: /openapi.json)", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, loop="uvloop", http="httptools",
                log_config=None, timeout_graceful_shutdown=10, server_header=False)
    return 0
