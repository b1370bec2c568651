"""The one shape of ``GET /ready`` on the edge and on the hub (docs/api.md, docs/protocol.md).

``200 {"status": "ready", "workers": 2, "models": ["full"], "redis": null}`` when the node can take work;
``503`` with ``"status": "not_ready"`` and the common error body (code ``not_ready``) when it cannot.
``workers`` counts the live inference processes; ``redis`` is the hub's Redis link (``true``/``false``:
true while REDIS_URL's and RATE_LIMIT_REDIS_URL's are both up) and ``null`` where there is no Redis (an
edge, a hub without one). A Redis outage never makes a node unready: the hub serves on without it
(RATE_LIMIT_FAIL decides about the limits, no cache).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hgr.common.errors import spec


def readiness(*, ready: bool, workers: int, models: Sequence[str], stopping: bool = False,
              redis: bool | None = None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of ``/ready``: ready when the pool is and the node is not stopping."""
    ok = ready and not stopping
    body: dict[str, Any] = {"status": "ready" if ok else "not_ready", "workers": workers,
                            "models": sorted(models), "redis": redis}
    if ok:
        return 200, body
    why = "the node is stopping" if stopping else "model not loaded or no inference worker up"
    body["error"] = {"code": "not_ready", "message": why}
    return spec("not_ready").status, body
