"""The hub's OpenAPI 3.1 document, generated: served at ``/openapi.json`` and rendered at ``/docs``.

The shapes are not written here: they are the REST declarations of ``common.contracts`` (the types the
routes validate their bodies with), turned into JSON Schema by ``msgspec.json.schema_components``. This
module adds what a type cannot say: the routes (``OPERATIONS``: method, path, ``operationId``, scope,
bodies, answers), the error codes each route can answer (from the ``common.errors`` catalogue, grouped
by HTTP status, each with an example), the API-key security schemes (``hub.callers``: ``Authorization:
Bearer`` or ``X-API-Key``) and the examples (typed with the contracts, so mypy checks them).

``tests/test_openapi.py`` validates the document (openapi-spec-validator), holds its routes and scopes to
the hub's, every example to its schema, and real answers of a real hub to the schemas;
``tests/test_contract_fuzz.py`` runs schemathesis against a hub with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from hgr.common import contracts as c
from hgr.common.auth import DETECT, FLEET_ADMIN, FLEET_READ
from hgr.common.errors import CATALOGUE
from hgr.hub.access import PUBLIC
from hgr.hub.apidocs import ASSETS

# Every component, generated from its declaration.
COMPONENT_TYPES: tuple[Any, ...] = (
    c.DetectRequest, c.BatchRequest, c.BatchItem, c.RestOptions, c.UploadForm, c.ThrottleRequest, c.ThrottleAnswer,
    c.RestResult, c.ItemError, c.BatchResult, c.ErrorBody, c.Health, c.Ready, c.ModelInfo, c.Status, c.FleetView,
    c.EdgeView,
)


def _ref(kind: Any) -> dict[str, str]:
    return {"$ref": c.REST_SCHEMA_REF.format(name=kind.__name__)}


# --- examples (typed with the contracts: mypy holds them to the declarations, the tests to the schema) ---

# A 16×16 JPEG of skin colour: a real image, so "Try it out" in /docs gets a real answer (no hand in it).
TINY_JPEG_B64 = (
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1RV19iZ2hn"
    "Pk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2Nj"
    "Y2P/wAARCAAQABADASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQID"
    "AAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlq"
    "c3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3"
    "+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEI"
    "FEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImK"
    "kpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDY"
    "ooormOg//9k="
)

EXAMPLE_DETECT: c.DetectRequest = {"image_base64": TINY_JPEG_B64, "image_id": "photo-1",
                                   "options": c.RestOptions(num_hands=2)}
EXAMPLE_BATCH: c.BatchRequest = {"images": [{"image_id": "a", "image_base64": TINY_JPEG_B64},
                                            {"image_id": "b", "image_base64": TINY_JPEG_B64,
                                             "options": c.RestOptions(mirrored=True)}],
                                 "options": c.RestOptions(num_hands=1)}
EXAMPLE_THROTTLE = c.ThrottleRequest(max_fps=2, duration_s=30)


def _hand() -> c.HandResult:
    # An open right hand: 21 landmarks along five fingers from the wrist (normalised image coordinates).
    landmarks = [[0.5, 0.8, 0.0]] + [[round(0.38 + 0.06 * f, 3), round(0.7 - 0.08 * j, 3), round(-0.01 * j, 3)]
                                     for f in range(5) for j in range(4)]
    return {"handedness": "Right", "score": 0.98, "landmarks": landmarks, "world_landmarks": None,
            "bbox": [0.38, 0.38, 0.62, 0.8], "fingers_up": dict.fromkeys(("thumb", "index", "middle", "ring",
                                                                            "pinky"), True),
            "fingers": 5, "gesture": "open_palm"}


EXAMPLE_RESULT: c.RestResult = {
    "image_id": "photo-1", "hands": [_hand()], "total_fingers": 5, "image_size": [640, 480],
    "timing": {"queue_ms": 0.4, "decode_ms": 2.1, "infer_ms": 18.6, "total_ms": 21.2},
    "cached": False, "processing_ms": 23.5}
EXAMPLE_ITEM_ERROR: c.ItemError = {"image_id": "b", "error": {"code": "corrupt_image",
                                                              "message": "the image bytes cannot be decoded"}}
EXAMPLE_BATCH_RESULT: c.BatchResult = {"results": [dict(EXAMPLE_RESULT, image_id="a"), dict(EXAMPLE_ITEM_ERROR)],
                                       "count": 2, "succeeded": 1, "failed": 1, "processing_ms": 41.0}
EXAMPLE_THROTTLE_ANSWER: c.ThrottleAnswer = {"edge_id": "cam-1", "command": {
    "cmd": "throttle", "stream": "s1", "max_fps": 2, "duration_s": 30, "reason": "operator"}}
EXAMPLE_READY: c.Ready = {"status": "ready", "workers": 2, "models": ["full", "lite"], "redis": True}
EXAMPLE_MODEL_INFO: c.ModelInfo = {"default": "full", "variants": {"full": "hand_landmarker-0123abcd"},
                                   "defaults": {"num_hands": 2, "mirrored": False}, "ready": True}
EXAMPLE_STATUS: c.Status = {"service": "hgr", "version": "1.0.0", "status": "ok", "degraded": [], "uptime_s": 3600.0}
EXAMPLE_FLEET: c.FleetView = {"edges": [], "totals": {"edges": 0, "online": 0, "offline": 0, "fps": 0.0}, "ts": 1.7e9}


# --- errors: which codes each route can answer ---

ALWAYS = ("internal_error",)
AUTH = ("forbidden", "too_many_auth_failures")  # a key was sent: unknown (403, 429 when guessing) or lacking the scope
NEEDS_KEY = ("unauthorized", *AUTH)
LIMITED = ("rate_limited", "rate_limiter_unavailable")
JSON_BODY = ("request_timeout", "request_too_large", "bad_json", "json_too_complex", "unsupported_media_type",
             "invalid_request")
IMAGE = ("bad_base64", "empty_image", "corrupt_image", "image_too_large", "too_many_pixels", "image_side_too_large",
         "unsupported_format")
OPTIONS = ("bad_options", "model_unavailable")
POOL = ("not_ready", "worker_restarted", "unavailable")


def _error_example(code: str) -> dict[str, Any]:
    return {"summary": CATALOGUE[code].when[:120],
            "value": {"error": {"code": code, "message": CATALOGUE[code].when, "request_id": "4f0c1e0b9a2d4c6e"}}}


_RATE_HEADERS = {
    "RateLimit-Limit": {"description": "Images allowed at once (requests + burst).", "schema": {"type": "integer"}},
    "RateLimit-Remaining": {"description": "Images still allowed now.", "schema": {"type": "integer"}},
    "RateLimit-Reset": {"description": "Seconds until the allowance is full again.", "schema": {"type": "integer"}},
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}}


def error_responses(codes: tuple[str, ...]) -> dict[str, Any]:
    """One response per HTTP status among ``codes``: the error body, its ``code`` limited to those codes."""
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(CATALOGUE[code].status, []).append(code)
    out: dict[str, Any] = {}
    for status, listed in sorted(by_status.items()):
        schema = {"allOf": [_ref(c.ErrorBody), {"type": "object", "properties": {"error": {
            "type": "object", "properties": {"code": {"enum": listed}}}}}]}
        response: dict[str, Any] = {
            "description": "; ".join(f"`{code}`: {CATALOGUE[code].when}" for code in listed),
            "content": {"application/json": {"schema": schema,
                                             "examples": {code: _error_example(code) for code in listed}}}}
        if status == 429:
            response["headers"] = {**_RETRY_AFTER, **_RATE_HEADERS}
        out[str(status)] = response
    return out


# --- the routes ---

@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    scope: str  # the key scope it needs (hub.access.ROUTE_SCOPES); PUBLIC: anyone
    ok: dict[str, Any]  # the success responses, by status
    errors: tuple[str, ...] = ()
    body: dict[str, Any] | None = None  # requestBody content, by media type
    parameters: list[dict[str, Any]] = field(default_factory=list)
    description: str = ""
    tag: str = "detection"


def _json(kind: Any, description: str, example: Any = None, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": _ref(kind)}
    if example is not None:
        media["example"] = msgspec.to_builtins(example)
    out: dict[str, Any] = {"description": description, "content": {"application/json": media}}
    if headers:
        out["headers"] = headers
    return out


def _path_param(name: str, description: str, schema: dict[str, Any], example: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema,
            "example": example}


def _raw_image_parameters() -> list[dict[str, Any]]:
    """The query parameters of a raw image body: ``RestOptions``' fields, and ``image_id``."""
    _, components = msgspec.json.schema_components((c.RestOptions,), ref_template=c.REST_SCHEMA_REF)
    fields = components["RestOptions"]["properties"]
    params = [{"name": name, "in": "query", "schema": {k: v for k, v in schema.items() if k != "description"},
               "description": f"Raw image bodies only (as `options.{name}` of a JSON body): {schema['description']}"}
              for name, schema in fields.items()]
    return [*params, {"name": "image_id", "in": "query", "schema": {"type": "string", "maxLength": 256},
                      "description": "Raw image bodies only: echoed back."}]


_EDGE_ID = _path_param("edge_id", "The edge's `EDGE_ID`.",
                       {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[^\\s+#/]+$"}, "cam-1")
_FLEET = "Served when fleet reporting is configured (`MQTT_URL`, or `hgr up`)."

OPERATIONS: tuple[Operation, ...] = (
    Operation("post", "/detect-fingers", "detectFingers",
              "Detect hands and count fingers in one image", DETECT,
              {"200": _json(c.RestResult, "The image's hands.", EXAMPLE_RESULT, _RATE_HEADERS)},
              ALWAYS + NEEDS_KEY + LIMITED + JSON_BODY + IMAGE + OPTIONS + POOL,
              body={"application/json": {"schema": _ref(c.DetectRequest),
                                          "example": msgspec.to_builtins(EXAMPLE_DETECT)},
                    **{kind: {"schema": {"type": "string", "contentMediaType": kind}}
                       for kind in ("image/jpeg", "image/png", "image/webp")}},
              parameters=_raw_image_parameters(),
              description="The image as base64 in a JSON body (`DetectRequest`), or the image itself as the body "
                          "(`Content-Type: image/jpeg|png|webp`) with the options in the query string."),
    Operation("post", "/detect-fingers-batch", "detectFingersBatch",
              "Several images in one request (one answer each, in order)", DETECT,
              {"200": _json(c.BatchResult, "One entry per image.", EXAMPLE_BATCH_RESULT, _RATE_HEADERS)},
              ALWAYS + NEEDS_KEY + LIMITED + ("batch_exceeds_rate_limit", "too_many_images", "image_too_large",
                                              "bad_options") + JSON_BODY,
              body={"application/json": {"schema": _ref(c.BatchRequest),
                                          "example": msgspec.to_builtins(EXAMPLE_BATCH)}},
              description="Admitted if the caller can afford one image, then charged one unit per image. An "
                          "entry's own error (a bad image, bad options) is answered in its slot."),
    Operation("post", "/detect-fingers-upload", "detectFingersUpload",
              "Multipart upload of one or more image files (field `file`)", DETECT,
              {"200": _json(c.BatchResult, "One entry per file, with its `filename`.", EXAMPLE_BATCH_RESULT,
                            _RATE_HEADERS)},
              ALWAYS + NEEDS_KEY + LIMITED + ("batch_exceeds_rate_limit", "request_timeout", "request_too_large",
                                              "too_many_images", "form_too_large", "image_too_large",
                                              "bad_multipart", "bad_json", "json_too_complex",
                                              "unsupported_media_type", "invalid_request", "bad_options"),
              body={"multipart/form-data": {"schema": _ref(c.UploadForm),
                                             "encoding": {"file": {"contentType": "image/*"}}}}),
    Operation("get", "/health", "health", "Liveness: the process answers", PUBLIC,
              {"200": _json(c.Health, "Up.", {"status": "ok"})}, ALWAYS, tag="operations"),
    Operation("get", "/ready", "ready", "Readiness: the inference workers are up", PUBLIC,
              {"200": _json(c.Ready, "Ready for work.", EXAMPLE_READY),
               "503": _json(c.Ready, "Not ready: `status` is `not_ready` and `error` says why (code `not_ready`).",
                            {**EXAMPLE_READY, "status": "not_ready", "workers": 0,
                             "error": {"code": "not_ready", "message": "model not loaded or no inference worker up"}})},
              ALWAYS, tag="operations"),
    Operation("get", "/status", "status", "Version, uptime and health; the rest for a `fleet:read` key", PUBLIC,
              {"200": _json(c.Status, "Anyone gets the first five fields; a key with `fleet:read` the whole view "
                                      "(pool, Redis, MQTT, cache, rate limit, fleet, limits).", EXAMPLE_STATUS)},
              ALWAYS + AUTH, tag="operations"),
    Operation("get", "/model/info", "modelInfo", "Model variants, their ids and the default options", PUBLIC,
              {"200": _json(c.ModelInfo, "The models.", EXAMPLE_MODEL_INFO)}, ALWAYS, tag="operations"),
    Operation("get", "/metrics", "metrics", "Prometheus metrics (for the scraper on the internal network)", PUBLIC,
              {"200": {"description": "The Prometheus text format.",
                       "content": {"text/plain": {"schema": {"type": "string"}}}}}, ALWAYS, tag="operations"),
    Operation("get", "/openapi.json", "openapi", "This document", PUBLIC,
              {"200": {"description": "OpenAPI 3.1.", "content": {"application/json": {"schema": {
                  "type": "object"}}}}}, ALWAYS, tag="operations"),
    Operation("get", "/docs", "apiDocs", "Interactive API documentation (Swagger UI, served by the hub)", PUBLIC,
              {"200": {"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}}},
              ALWAYS, tag="operations"),
    Operation("get", "/docs/{asset}", "apiDocsAsset", "A file of the `/docs` page", PUBLIC,
              {"200": {"description": "The file.", "content": {
                  kind: {"schema": {"type": "string"}}
                  for kind in ("text/javascript", "text/css", "text/plain")}},
               "304": {"description": "Not modified (`If-None-Match` named its `ETag`)."}},
              ALWAYS + ("not_found",), tag="operations",
              parameters=[_path_param("asset", "One of the page's files.",
                                      {"type": "string", "enum": list(ASSETS)}, "swagger-ui.css")]),
    Operation("get", "/fleet", "fleet", "The fleet of edges: status, rates, latency", FLEET_READ,
              {"200": _json(c.FleetView, "Every edge the hub knows, and the totals.", EXAMPLE_FLEET)},
              ALWAYS + NEEDS_KEY + ("fleet_unavailable",), tag="fleet", description=_FLEET),
    Operation("get", "/fleet/edges/{edge_id}", "fleetEdge", "One edge's details", FLEET_READ,
              {"200": {"description": "The edge.", "content": {"application/json": {"schema": _ref(c.EdgeView)}}}},
              ALWAYS + NEEDS_KEY + ("edge_not_found", "not_found", "fleet_unavailable"), tag="fleet",
              parameters=[_EDGE_ID], description=_FLEET),
    Operation("post", "/fleet/edges/{edge_id}/streams/{stream}/throttle", "throttleStream",
              "Cap one stream of one edge (sent to the edge over MQTT; docs/mqtt.md)", FLEET_ADMIN,
              {"202": _json(c.ThrottleAnswer, "The command sent.", EXAMPLE_THROTTLE_ANSWER)},
              ALWAYS + NEEDS_KEY + JSON_BODY + ("edge_not_found", "not_found", "fleet_unavailable"), tag="fleet",
              body={"application/json": {"schema": _ref(c.ThrottleRequest),
                                          "example": msgspec.to_builtins(EXAMPLE_THROTTLE)}},
              parameters=[_EDGE_ID, _path_param("stream", "The stream id of the edge's WebSocket hello and fleet "
                                                          "events.", {"type": "string", "minLength": 1,
                                                                      "maxLength": 64}, "s1")],
              description=_FLEET),
)

_KEY_SCHEMES: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]


def _security(scope: str) -> list[dict[str, list[str]]]:
    if scope == PUBLIC:
        return []
    # {}: anonymous callers too; `detect` is needed only with AUTH_ENABLED=true (docs/security.md)
    return [{}, *_KEY_SCHEMES] if scope == DETECT else list(_KEY_SCHEMES)


def _operation(op: Operation, status_security: bool) -> dict[str, Any]:
    scope_text = {PUBLIC: "No key needed.",
                  DETECT: "Scope `detect` (a key is needed only with `AUTH_ENABLED=true`)."}.get(
        op.scope, f"Scope `{op.scope}`: a key is always needed.")
    out: dict[str, Any] = {
        "operationId": op.operation_id, "summary": op.summary, "tags": [op.tag],
        "description": " ".join(filter(None, (op.description, scope_text))),
        "x-hgr-scope": op.scope,
        "security": [{}, *_KEY_SCHEMES] if status_security else _security(op.scope),
        "responses": {**op.ok, **error_responses(op.errors)},
    }
    if op.parameters:
        out["parameters"] = op.parameters
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": op.body}
    return out


def openapi_schema(version: str) -> dict[str, Any]:
    _, components = msgspec.json.schema_components(COMPONENT_TYPES, ref_template=c.REST_SCHEMA_REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        # /status answers anyone, in full to a key with fleet:read: a key is optional there.
        paths.setdefault(op.path, {})[op.method] = _operation(op, status_security=op.path == "/status")
    return {
        "openapi": "3.1.0",
        "info": {"title": "hgr hub API", "version": version,
                 "description": "Finger counting and hand landmarks for images, and the fleet of edges. "
                                "Errors are `{\"error\": {\"code\", \"message\", \"request_id\"}}`; each operation "
                                "lists the codes it can answer. Any route may also answer 404 `not_found` (no "
                                "such path), 405 `method_not_allowed` and 431 `headers_too_large`. See docs/api.md."},
        "tags": [{"name": "detection", "description": "Images in, hands and finger counts out."},
                 {"name": "fleet", "description": "The edges reporting over MQTT, and their control."},
                 {"name": "operations", "description": "Probes, status, metrics, this documentation."}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "`Authorization: Bearer <key>`: an API key of `API_KEYS`."},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                           "description": "The same API key in `X-API-Key` (read when there is no Bearer token)."},
            },
        },
    }
