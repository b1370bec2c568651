"""The fleet's REST view and controls (served when fleet reporting is configured; docs/api.md, docs/mqtt.md).

``GET /fleet`` and ``GET /fleet/edges/{edge_id}`` read the fleet store: they name edges and live
streams, so they need a key with ``fleet:read``. ``POST /fleet/edges/{edge_id}/streams/{stream}/throttle``
caps one stream of one edge: a control, for a key with ``fleet:admin`` (``hub.access``; both whatever
``AUTH_ENABLED`` says). A store that cannot be read is a 503 ``fleet_unavailable``, never a 500.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hgr.common import jsonsafe
from hgr.common.auth import FLEET_ADMIN, FLEET_READ
from hgr.common.contracts import ThrottleRequest
from hgr.common.errors import HgrError
from hgr.common.names import valid_edge_id
from hgr.hub.access import Access
from hgr.hub.bodies import InvalidRequest, convert, read_json
from hgr.hub.fleet import FleetService
from hgr.hub.fleet_logic import edge_view

log = logging.getLogger("hgr.hub.fleet")

class EdgeNotFound(HgrError):
    code = "edge_not_found"


class FleetUnavailable(HgrError):
    code = "fleet_unavailable"


def throttle_request(body: Any) -> tuple[float | None, float | None]:
    """The body as ``common.contracts.ThrottleRequest`` → (max_fps, duration_s); InvalidRequest otherwise
    (``max_fps`` is required: null lifts the cap, so a forgotten field never lifts one by accident)."""
    request = convert(body, ThrottleRequest, "ThrottleRequest")
    return request.max_fps, request.duration_s


def _store_down(exc: Exception) -> FleetUnavailable:
    log.warning("fleet store unavailable: %s", exc)
    return FleetUnavailable("the fleet store (Redis) is unreachable")


def routes(fleet: FleetService, access: Access) -> list[Route]:
    """The fleet's routes; ``access`` checks their callers' keys and scopes (the hub's API keys)."""
    s = fleet.settings
    json_limits = jsonsafe.JsonLimits(s.max_json_depth, s.max_json_values)

    async def known_edge(edge_id: str) -> dict[str, str]:
        """The edge's stored hash; EdgeNotFound (404) or FleetUnavailable (503)."""
        try:
            raw = await fleet.store.edge(edge_id) if valid_edge_id(edge_id) else None
        except Exception as exc:  # noqa: BLE001 - any store failure is a 503, not a 500
            raise _store_down(exc) from None
        if raw is None:
            raise EdgeNotFound(f"no edge {edge_id[:64]!r} in the fleet")
        return raw

    async def list_fleet(request: Request) -> JSONResponse:
        await access.require(request, FLEET_READ)
        try:
            view = await fleet.fleet_view()
            return await asyncio.to_thread(JSONResponse, view)  # 10 000 edges render to 6 MB in ~75 ms
        except Exception as exc:  # noqa: BLE001 - any store failure is a 503, not a 500
            raise _store_down(exc) from None

    async def get_edge(request: Request) -> JSONResponse:
        await access.require(request, FLEET_READ)
        edge_id = request.path_params["edge_id"]
        return JSONResponse(edge_view(edge_id, await known_edge(edge_id), time.time()))

    async def throttle_stream(request: Request) -> JSONResponse:
        await access.require(request, FLEET_ADMIN)  # 401/403/429 before reading a byte
        edge_id, stream = request.path_params["edge_id"], request.path_params["stream"]
        max_fps, duration_s = throttle_request(await read_json(request, s.max_request_size, json_limits,
                                                                 s.body_timeout))
        if len(stream) > 64:
            raise InvalidRequest("a stream id is 1-64 characters (the `stream` of the edge's hello and events)")
        await known_edge(edge_id)
        command = fleet.throttle_stream(edge_id, stream, max_fps, duration_s)
        log.info("stream throttle sent", extra={"edge_id": edge_id, "stream": stream, "max_fps": max_fps,
                                                "duration_s": duration_s})
        # 202: the command is on its way (MQTT QoS 1); an edge without that stream ignores it.
        return JSONResponse({"edge_id": edge_id, "command": command}, status_code=202)

    return [Route("/fleet", list_fleet, methods=["GET"]),
            Route("/fleet/edges/{edge_id}", get_edge, methods=["GET"]),
            Route("/fleet/edges/{edge_id}/streams/{stream}/throttle", throttle_stream, methods=["POST"])]
