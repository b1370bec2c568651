"""``hgr edge``: run a standalone edge node under uvicorn, tuned for many small binary messages."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from common.config import Settings, load_settings
from common.logs import setup_logging

log = logging.getLogger("hgr.edge")


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The server options measured fastest for JPEG frames over WebSocket (see docs/protocol.md)."""
    ws = "websockets-sansio"
    try:
        importlib.import_module("uvicorn.protocols.websockets.websockets_sansio_impl")
    except ImportError:  # older uvicorn
        ws = "websockets"
    return {
        "ws": ws,
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
        # permessage-deflate cannot shrink JPEG and cost 50x in throughput when measured.
        "ws_per_message_deflate": False,
        # Oversize messages are refused by the protocol parser with close 1009 before they are buffered.
        "ws_max_size": settings.max_frame_bytes,
        "lifespan": "on",
        "log_config": None,
        "access_log": False,
    }


class GracefulServer(uvicorn.Server):
    """uvicorn closes every open WebSocket with 1012 *before* the app's lifespan shutdown runs, which
    would cut off frames in inference. This server runs ``before_shutdown`` hooks first (for the edge:
    ``EdgeNode.stop`` — answer the frames in inference, then close with 1001), then shuts down as usual."""

    def __init__(self, config: uvicorn.Config, before_shutdown: list[Callable[[], Awaitable[None]]]) -> None:
        super().__init__(config)
        self.before_shutdown = before_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for hook in self.before_shutdown:
            try:
                await asyncio.wait_for(hook(), 30)
            except Exception:  # shutting down regardless
                log.exception("shutdown hook failed")
        await super().shutdown(sockets)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hgr edge", description="Start an edge node.")
    settings = load_settings()
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.edge_port)
    args = parser.parse_args(argv)
    setup_logging(settings)

    from edge.app import create_app

    app = create_app(settings)
    print(f"hgr edge {settings.resolved_edge_id()}: ws://{args.host}:{args.port}/ws  "
          f"(web demo http://{args.host}:{args.port}/)", flush=True)
    config = uvicorn.Config(app, host=args.host, port=args.port, **uvicorn_options(settings))
    GracefulServer(config, before_shutdown=[app.state.edge.stop]).run()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
