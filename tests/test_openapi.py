"""hub/openapi.py: the generated OpenAPI document is valid OpenAPI 3.1, lists every route the hub serves
(fleet routes and /docs included) with an operationId, the scope hub.access gives it and the errors it can
answer; its shapes are the declarations of common.contracts, every example fits its schema, and what a
real hub answers validates against it."""

from __future__ import annotations

import json
import typing
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import msgspec
import pytest
import pytest_asyncio
from openapi_spec_validator import validate

from hgr.common import contracts
from hgr.common.errors import CATALOGUE
from hgr.common.inference.pool import InferencePool
from hgr.common.messaging.bus import LocalBus
from hgr.common.options import VARIANTS
from hgr.hub.access import ROUTE_SCOPES
from hgr.hub.app import Hub
from hgr.hub.openapi import COMPONENT_TYPES, OPERATIONS, openapi_schema
from tests.hub_support import SEEDED_EDGE_STALE_AFTER, b64, hub_app, hub_settings, seed_edge, serve_hub

SCHEMA = openapi_schema("test")
KEY = "openapi-test-key-0123456789"


def served_routes(hub: Hub) -> set[tuple[str, str]]:
    return {(r.path, m.lower())  # type: ignore[attr-defined]  # starlette's BaseRoute declares no path
            for r in hub.routes for m in getattr(r, "methods", None) or () if m != "HEAD"}


@pytest.mark.asyncio
async def test_openapi_is_valid_and_lists_every_route(model_path: str) -> None:
    settings = hub_settings()
    idle = InferencePool(settings, {"full": model_path}, service="hub", workers=1)  # never started
    hub = Hub(settings, idle, bus=LocalBus(settings, service="hub"))  # with a bus: the fleet routes too
    served = served_routes(hub)
    assert {("/fleet/edges/{edge_id}/streams/{stream}/throttle", "post"), ("/docs", "get")} <= served
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hub_app(hub)), base_url="http://hub") as client:
        schema = (await client.get("/openapi.json")).json()
    assert schema == openapi_schema(settings.app_version)
    validate(schema)
    documented = {(path, method) for path, ops in schema["paths"].items() for method in ops}
    assert served <= documented
    assert documented <= served, "the document lists routes the hub does not serve"


def test_every_operation_has_an_id_its_scope_and_catalogued_errors() -> None:
    ops = [(path, method, op) for path, item in SCHEMA["paths"].items() for method, op in item.items()]
    ids = [op["operationId"] for _, _, op in ops]
    assert len(ids) == len(set(ids)) == len(ROUTE_SCOPES)
    assert {(m.upper(), p): op["x-hgr-scope"] for p, m, op in ops} == ROUTE_SCOPES
    for path, method, op in ops:
        assert op["summary"] and op["responses"], (path, method)
        assert "500" in op["responses"], f"{method} {path}: every route may answer internal_error"
        for status, response in op["responses"].items():
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            if "allOf" in schema:  # an error response: its codes are catalogued and have this status
                codes = schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]
                assert codes and all(CATALOGUE[code].status == int(status) for code in codes), (path, status)
                assert set(response["content"]["application/json"]["examples"]) == set(codes)
        if op["x-hgr-scope"] != "none":
            assert op["security"], f"{method} {path} needs a key: its security must say how"
    schemes = SCHEMA["components"]["securitySchemes"]
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["bearer"]["scheme"] == "bearer"


def test_the_shapes_are_the_contracts_declarations() -> None:
    _, generated = msgspec.json.schema_components(COMPONENT_TYPES, ref_template=contracts.REST_SCHEMA_REF)
    assert SCHEMA["components"]["schemas"] == generated
    assert set(generated) >= {"DetectRequest", "BatchRequest", "RestOptions", "ThrottleRequest", "ErrorBody",
                              "RestResult", "BatchResult", "Status", "Ready", "FleetView"}
    model = typing.get_type_hints(contracts.RestOptions, include_extras=True)["model"]
    literal = typing.get_args(typing.get_args(model)[0])[0]  # Annotated[Literal[...], Meta] | UnsetType
    assert typing.get_args(literal) == VARIANTS  # the options' variants, as common.options knows them
    # the raw image body's query parameters are RestOptions' fields
    params = {p["name"] for p in SCHEMA["paths"]["/detect-fingers"]["post"]["parameters"]}
    assert params == set(contracts.RestOptions.__struct_fields__) | {"image_id"}


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**schema, "components": SCHEMA["components"]})


def response_schema(path: str, method: str, status: int, media: str = "application/json") -> dict[str, Any]:
    schema: dict[str, Any] = SCHEMA["paths"][path][method]["responses"][str(status)]["content"][media]["schema"]
    return schema


def test_every_example_fits_its_schema() -> None:
    checked = 0
    for item in SCHEMA["paths"].values():
        for op in item.values():
            media_objects = [*op.get("requestBody", {}).get("content", {}).values(),
                             *(m for r in op["responses"].values() for m in r.get("content", {}).values())]
            for media in media_objects:
                examples = ([media["example"]] if "example" in media else []) + \
                    [e["value"] for e in media.get("examples", {}).values()]
                for example in examples:
                    _validator(media["schema"]).validate(example)
                    checked += 1
            for param in op.get("parameters", []):
                if "example" in param:
                    _validator(param["schema"]).validate(param["example"])
    assert checked > 60


# --- a real hub's answers against the schema ---

@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def real_hub(hub_pool: InferencePool) -> AsyncIterator[tuple[str, Hub]]:
    settings = hub_settings(api_keys=f"ops:{KEY}:detect+fleet:admin", rate_limit_requests=1000,
                            edge_stale_after=SEEDED_EDGE_STALE_AFTER)
    bus = LocalBus(settings, service="hub")
    async with serve_hub(settings, hub_pool, bus) as (url, hub):
        await seed_edge(hub, "cam-1")
        yield url, hub


@pytest.mark.asyncio(loop_scope="module")
async def test_a_real_hubs_answers_validate_against_the_schema(real_hub: tuple[str, Hub],
                                                               hand_photos: list[tuple[Path, int]]) -> None:
    url, hub = real_hub
    photo = next(p for p, fingers in hand_photos if fingers == 5).read_bytes()
    key = {"X-API-Key": KEY}
    # (method, path template, request kwargs, expected status)
    calls: list[tuple[str, str, str, dict[str, Any], int]] = [
        ("post", "/detect-fingers", "/detect-fingers", {"json": {"image_base64": b64(photo), "image_id": 3}}, 200),
        ("post", "/detect-fingers", "/detect-fingers?num_hands=1&image_id=raw",
         {"content": photo, "headers": {"content-type": "image/jpeg"}}, 200),
        ("post", "/detect-fingers", "/detect-fingers", {"json": {"image_base64": b64(photo),
                                                                 "options": {"num_hands": 7}}}, 422),
        ("post", "/detect-fingers", "/detect-fingers", {"json": {"image": 1}}, 422),
        ("post", "/detect-fingers", "/detect-fingers", {"json": {"image_base64": "@@"}}, 400),
        ("post", "/detect-fingers-batch", "/detect-fingers-batch",
         {"json": {"images": [{"image_base64": b64(photo)}, {"image_base64": "QUJD"}, 5]}}, 200),
        ("post", "/detect-fingers-upload", "/detect-fingers-upload",
         {"files": [("file", ("a.jpg", photo, "image/jpeg"))], "data": {"options": '{"mirrored": true}'}}, 200),
        ("get", "/health", "/health", {}, 200),
        ("get", "/ready", "/ready", {}, 200),
        ("get", "/status", "/status", {}, 200),
        ("get", "/status", "/status", {"headers": key}, 200),
        ("get", "/status", "/status", {"headers": {"X-API-Key": "wrong"}}, 403),
        ("get", "/model/info", "/model/info", {}, 200),
        ("get", "/fleet", "/fleet", {}, 401),
        ("get", "/fleet", "/fleet", {"headers": key}, 200),
        ("get", "/fleet/edges/{edge_id}", "/fleet/edges/cam-1", {"headers": key}, 200),
        ("get", "/fleet/edges/{edge_id}", "/fleet/edges/nobody", {"headers": key}, 404),
        ("post", "/fleet/edges/{edge_id}/streams/{stream}/throttle", "/fleet/edges/cam-1/streams/s1/throttle",
         {"headers": key, "json": {"max_fps": 2, "duration_s": 30}}, 202),
        ("post", "/fleet/edges/{edge_id}/streams/{stream}/throttle", "/fleet/edges/cam-1/streams/s1/throttle",
         {"headers": key, "json": {"max_fps": -1}}, 422),
    ]
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        for method, template, path, kwargs, status in calls:
            r = await client.request(method.upper(), path, **kwargs)
            assert r.status_code == status, (path, r.text)
            body = r.json()
            _validator(response_schema(template, method, status)).validate(body)
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200 and "text/plain" in metrics.headers["content-type"]
        served = (await client.get("/openapi.json")).json()
        assert served == json.loads(json.dumps(openapi_schema(hub.settings.app_version)))
    assert len(OPERATIONS) == len({(op.method, op.path) for op in OPERATIONS})
