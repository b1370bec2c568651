"""``hgr edge``: run a standalone edge node (WebSocket frames in, results out)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from common.serve import run


def main(argv: Sequence[str]) -> int:
    from edge.app import create_app

    return run(argv, prog="hgr edge", description="Start an edge node.", port_setting="edge_port",
               create_app=create_app,
               banner=lambda s, host, port: f"hgr edge {s.resolved_edge_id()}: ws://{host}:{port}/ws  "
                                            f"(web demo http://{host}:{port}/)",
               before_shutdown=lambda app: [app.state.edge.stop])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
