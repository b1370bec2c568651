"""The hub's OpenAPI 3.1 document, written by hand (served at ``/openapi.json``; docs/api.md explains it).

``tests/test_openapi.py`` validates it against the OpenAPI 3.1 meta-schema and checks that every
route the hub serves is listed here.
"""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERR = _json(_ref("Error"), "error")
_RL_HEADERS = {
    "RateLimit-Limit": {"description": "Images allowed at once (requests + burst).", "schema": {"type": "integer"}},
    "RateLimit-Remaining": {"description": "Images still allowed now.", "schema": {"type": "integer"}},
    "RateLimit-Reset": {"description": "Seconds until the allowance is full again.", "schema": {"type": "integer"}},
}
_DETECT_ERRORS = {
    "400": _ERR, "401": _ERR, "403": _ERR, "413": _ERR, "415": _ERR, "422": _ERR,
    "429": {**_ERR, "headers": {**_RL_HEADERS, "Retry-After": {"schema": {"type": "integer"},
                                                              "description": "Seconds to wait."}}},
    "500": _ERR, "503": _ERR,
}
# {} = anonymous allowed when AUTH_ENABLED=false
_SECURITY: list[dict[str, list[str]]] = [{}, {"bearer": []}, {"apiKey": []}]

_FLOAT3 = {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3}
SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}, "request_id": {"type": "string"}}}}},
    "Options": {"type": "object", "additionalProperties": False, "properties": {
        "num_hands": {"type": "integer", "minimum": 1, "maximum": 4},
        "mirrored": {"type": "boolean", "description": "The image is a mirrored selfie."},
        "model": {"type": "string", "enum": ["full", "lite"]}}},
    "Hand": {"type": "object", "properties": {
        "handedness": {"type": "string", "enum": ["Left", "Right"]},
        "score": {"type": "number"},
        "landmarks": {"type": "array", "items": _FLOAT3, "minItems": 21, "maxItems": 21},
        "world_landmarks": {"type": ["array", "null"], "items": _FLOAT3},
        "bbox": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
        "fingers_up": {"type": "object", "additionalProperties": {"type": "boolean"}},
        "fingers": {"type": "integer", "minimum": 0, "maximum": 5},
        "gesture": {"type": "string"}}},
    "Result": {"type": "object", "required": ["hands", "total_fingers", "image_size", "timing", "cached",
                                              "processing_ms"], "properties": {
        "image_id": {"type": ["string", "integer"]},
        "filename": {"type": ["string", "null"]},
        "hands": {"type": "array", "items": _ref("Hand")},
        "total_fingers": {"type": "integer"},
        "image_size": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
        "timing": {"type": "object", "additionalProperties": {"type": "number"}},
        "cached": {"type": "boolean"},
        "processing_ms": {"type": "number"},
        "retry": {"type": "string", "enum": ["darker", "brighter"],
                  "description": "Present only when the hands were found on a darker or brighter copy of an "
                                 "image on which the model found none (EXPOSURE_RETRY)."}}},
    "ItemError": {"type": "object", "required": ["image_id", "error"], "properties": {
        "image_id": {"type": ["string", "integer"]}, "filename": {"type": ["string", "null"]},
        "error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}}}}},
    "BatchResult": {"type": "object", "required": ["results", "count"], "properties": {
        "results": {"type": "array", "items": {"oneOf": [_ref("Result"), _ref("ItemError")]}},
        "count": {"type": "integer"}, "succeeded": {"type": "integer"}, "failed": {"type": "integer"},
        "processing_ms": {"type": "number"}}},
    "DetectRequest": {"type": "object", "required": ["image_base64"], "properties": {
        "image_base64": {"type": "string", "description": "JPEG, PNG, WebP or BMP bytes, base64 "
                                                          "(a data: URL prefix is accepted)."},
        "image_id": {"type": ["string", "integer"], "description": "Echoed back."},
        "options": _ref("Options")}},
    "BatchRequest": {"type": "object", "required": ["images"], "properties": {
        "images": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["image_base64"], "properties": {
                "image_id": {"type": ["string", "integer"]}, "image_base64": {"type": "string"},
                "options": _ref("Options")}}},
        "options": _ref("Options")}},
    "Ready": {"type": "object", "required": ["status", "workers", "models", "redis"], "properties": {
        "status": {"type": "string", "enum": ["ready", "not_ready"]},
        "workers": {"type": "integer", "description": "Live inference processes."},
        "models": {"type": "array", "items": {"type": "string"}},
        "redis": {"type": ["boolean", "null"], "description": "The Redis link; null without Redis."},
        "error": {"type": "object", "description": "On 503: code `not_ready` and why."}}},
    "ThrottleRequest": {"type": "object", "required": ["max_fps"], "additionalProperties": False, "properties": {
        "max_fps": {"type": ["number", "null"], "minimum": 0, "maximum": 10_000,
                    "description": "Frames per second the stream may use; 0 stops it, null lifts the cap."},
        "duration_s": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 86_400,
                       "description": "The edge lifts the cap by itself after this long."}}},
}


def _detect_op(summary: str, body: dict[str, Any], ok: str,
               parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    op = {"summary": summary, "security": _SECURITY, "requestBody": {"required": True, "content": body},
          "responses": {"200": {**_json(_ref(ok), "results"), "headers": _RL_HEADERS}, **_DETECT_ERRORS}}
    return {"post": {**op, "parameters": parameters} if parameters else op}


# A raw image body (`Content-Type: image/jpeg|png|webp`) on /detect-fingers: the image itself, with the
# options and image_id in the query string (ignored with a JSON body).
_RAW_IMAGE = {kind: {"schema": {"type": "string", "contentMediaType": kind}}
              for kind in ("image/jpeg", "image/png", "image/webp")}
_RAW_QUERY: list[dict[str, Any]] = [
    {"name": "num_hands", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 4},
     "description": "Raw image bodies only: as `options.num_hands`."},
    {"name": "mirrored", "in": "query", "schema": {"type": "boolean"},
     "description": "Raw image bodies only: as `options.mirrored`."},
    {"name": "model", "in": "query", "schema": {"type": "string", "enum": ["full", "lite"]},
     "description": "Raw image bodies only: as `options.model`."},
    {"name": "image_id", "in": "query", "schema": {"type": "string"},
     "description": "Raw image bodies only: echoed back."},
]


def _get(summary: str, schema: dict[str, Any] | None = None, *, ready: bool = False,
         media: str = "application/json") -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": summary, "content": {media: {"schema": schema or {
        "type": "object"}}}}}
    if ready:
        responses["503"] = _json(_ref("Ready"), "not ready")
    return {"get": {"summary": summary, "responses": responses}}


def openapi_schema(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "hgr hub API", "version": version,
                 "description": "Finger counting and hand landmarks for images. See docs/api.md."},
        "paths": {
            "/detect-fingers": _detect_op("Detect hands and count fingers in one image (base64 in JSON, or the "
                                          "image itself as the body)",
                                          {"application/json": {"schema": _ref("DetectRequest")}, **_RAW_IMAGE},
                                          "Result", _RAW_QUERY),
            "/detect-fingers-batch": _detect_op("Several images in one request (one result each, in order)",
                                                {"application/json": {"schema": _ref("BatchRequest")}},
                                                "BatchResult"),
            "/detect-fingers-upload": _detect_op(
                "Multipart upload of one or more image files (field `file`)",
                {"multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                    "file": {"type": "array", "items": {"type": "string", "contentMediaType": "image/*"}},
                    "options": {"type": "string", "description": "Options as a JSON object string."}}}}},
                "BatchResult"),
            "/health": _get("Liveness: the process answers"),
            "/ready": _get("Readiness: the inference workers are up", _ref("Ready"), ready=True),
            "/status": _get("Version, uptime, model, pool, Redis, MQTT, cache and rate-limit state"),
            "/model/info": _get("Model variants and their ids"),
            "/metrics": _get("Prometheus metrics", {"type": "string"}, media="text/plain"),
            "/openapi.json": _get("This document"),
            "/fleet": _get("The fleet of edges: status, rates, latency (when fleet reporting is on)"),
            "/fleet/edges/{edge_id}": {"get": {
                "summary": "One edge's details", "parameters": [
                    {"name": "edge_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _json({"type": "object"}, "the edge"), "404": _ERR, "503": _ERR}}},
            "/fleet/edges/{edge_id}/streams/{stream}/throttle": {"post": {
                "summary": "Cap one stream of one edge (sent to the edge over MQTT; docs/mqtt.md)",
                "security": _SECURITY, "parameters": [
                    {"name": "edge_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "stream", "in": "path", "required": True, "schema": {"type": "string"},
                     "description": "The stream id of the edge's WebSocket hello and fleet events."}],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _ref("ThrottleRequest")}}},
                "responses": {"202": _json({"type": "object", "required": ["edge_id", "command"], "properties": {
                    "edge_id": {"type": "string"}, "command": {"type": "object"}}}, "the command sent"),
                    "400": _ERR, "401": _ERR, "403": _ERR, "404": _ERR, "413": _ERR, "422": _ERR, "503": _ERR}}},
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
    }
