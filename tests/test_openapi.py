"""hub/openapi.py: the hand-written OpenAPI document is valid OpenAPI 3.1, lists every route the hub
serves (fleet routes included) and is what ``GET /openapi.json`` answers."""

from __future__ import annotations

import httpx
import pytest
from hub_support import hub_app, hub_settings
from openapi_spec_validator import validate

from hgr.common.inference.pool import InferencePool
from hgr.common.messaging.bus import LocalBus
from hgr.hub.app import Hub
from hgr.hub.openapi import openapi_schema


@pytest.mark.asyncio
async def test_openapi_is_valid_and_lists_every_route(model_path: str) -> None:
    settings = hub_settings()
    idle = InferencePool(settings, {"full": model_path}, service="hub", workers=1)  # never started
    hub = Hub(settings, idle, bus=LocalBus(settings, service="hub"))  # with a bus: the fleet routes too
    served = {(r.path, m.lower())  # type: ignore[attr-defined]  # starlette's BaseRoute declares no path
              for r in hub.routes for m in getattr(r, "methods", None) or () if m != "HEAD"}
    assert ("/fleet/edges/{edge_id}/streams/{stream}/throttle", "post") in served
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hub_app(hub)), base_url="http://hub") as client:
        schema = (await client.get("/openapi.json")).json()
    assert schema == openapi_schema(settings.app_version)
    validate(schema)
    documented = {(path, method) for path, ops in schema["paths"].items() for method in ops}
    assert served <= documented
    assert documented <= served, "the document lists routes the hub does not serve"
