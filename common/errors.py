"""Errors that reach a client: one stable code, a human message, and the HTTP status it maps to.

Every layer (CLI, WebSocket, REST, MQTT) reports failures as ``{"code", "message"}`` built from these,
so a client can switch on ``code`` whatever transport it uses. ``CATALOGUE`` below is the one list of
codes: an exception class or handler takes its HTTP status and WebSocket treatment from there, and
docs/api.md's error table is tested against it (tests/test_errors.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """How one code reaches a client. ``status``: the HTTP status of a response carrying it (one per code).
    ``ws_message``: a WebSocket client gets it as an ``error`` message and the stream stays open.
    ``ws_close``: the edge closes the WebSocket with this close code instead (the message is the reason)."""

    status: int
    when: str
    ws_message: bool = False
    ws_close: int | None = None


# ---------------------------------------------------------------------------------------------------
# THE ERROR CATALOGUE: every code the service can answer, on any transport.
# Adding a code is ONE line here: `"my_code": ErrorCode(<http status>, "when it happens"[, ws_message=True
# | ws_close=<close code>]),` — then raise `HgrError("message", code="my_code")` (or a subclass with
# `code = "my_code"`; its status comes from this table, never from the class) and add the same row to the
# table in docs/api.md (`python -c "from hgr.common.errors import errors_table; print(errors_table())"`
# prints it; tests/test_errors.py fails until both agree). A code not listed here raises KeyError.
# Codes are public API: never rename or re-status one; add a new code instead.
# ---------------------------------------------------------------------------------------------------
CATALOGUE: dict[str, ErrorCode] = {
    # 400: the request, message or image cannot be read
    "bad_request": ErrorCode(400, "a request the HTTP layer cannot parse"),
    "bad_json": ErrorCode(400, "the body is empty or not valid JSON (NaN/Infinity and unpaired UTF-16 "
                          "surrogates included)"),
    "bad_base64": ErrorCode(400, "`image_base64` is not valid base64"),
    "bad_multipart": ErrorCode(400, "a malformed multipart upload"),
    "bad_message": ErrorCode(400, "WebSocket: not msgpack / not JSON / not a map / not an image", ws_message=True),
    "bad_frame": ErrorCode(400, "WebSocket: a frame field is missing or has the wrong type", ws_message=True),
    "empty_image": ErrorCode(400, "the image has no bytes", ws_message=True),
    "corrupt_image": ErrorCode(400, "the image bytes cannot be decoded", ws_message=True),
    "unreadable": ErrorCode(400, "`hgr detect` (CLI): the image file cannot be read"),
    # 408: too slow
    "request_timeout": ErrorCode(408, "the request body did not arrive within `BODY_TIMEOUT` seconds"),
    "not_reading": ErrorCode(408, "WebSocket: the client left the edge's output unread past `WS_MAX_UNREAD` for "
                             "`WS_UNREAD_TIMEOUT` seconds; the connection is dropped (the client, not reading, sees "
                             "a reset)", ws_close=1008),
    # 401/403: authentication (the edge completes the WebSocket handshake, then closes 1008)
    "unauthorized": ErrorCode(401, "no API key where one is needed (`AUTH_ENABLED`, the fleet routes, the full "
                              "`/status`)", ws_close=1008),
    "forbidden": ErrorCode(403, "an unknown API key, or a key without the scope the route needs "
                           "(docs/security.md)", ws_close=1008),
    "stream_name_forbidden": ErrorCode(403, "WebSocket: the stream's API key may not take that name (its "
                                       "`camera:` allowances in `API_KEYS`)", ws_close=4403),
    "origin_not_allowed": ErrorCode(403, "WebSocket: a browser page from an origin that is neither the edge's "
                                    "own nor in `WS_ALLOWED_ORIGINS`", ws_close=1008),
    # 404/405: no such thing
    "not_found": ErrorCode(404, "no such endpoint"),
    "edge_not_found": ErrorCode(404, "`/fleet/edges/{edge_id}...` of an edge the fleet does not know"),
    "method_not_allowed": ErrorCode(405, "the endpoint exists, the method does not"),
    # 413: over a size limit
    "request_too_large": ErrorCode(413, "the body is over `MAX_REQUEST_SIZE`"),
    "image_too_large": ErrorCode(413, "an image over `MAX_IMAGE_SIZE`", ws_message=True),
    "too_many_pixels": ErrorCode(413, "an image over `MAX_IMAGE_PIXELS`", ws_message=True),
    "too_many_images": ErrorCode(413, "a batch or upload over `MAX_BATCH_IMAGES`"),
    "form_too_large": ErrorCode(413, "an upload with more non-file fields than `MAX_FORM_FIELDS` or one over "
                                "`MAX_FORM_FIELD_SIZE`"),
    "image_side_too_large": ErrorCode(413, "an image whose width or height is over `MAX_IMAGE_SIDE`",
                                      ws_message=True),
    "json_too_complex": ErrorCode(413, "JSON nested deeper than `MAX_JSON_DEPTH` or with more than "
                                  "`MAX_JSON_VALUES` values", ws_message=True),
    # 431: the request's head is over a limit (answered by the HTTP server, before any route)
    "headers_too_large": ErrorCode(431, "a request line and headers over `MAX_HEADER_BYTES`, or more header fields "
                                   "than `MAX_HEADERS`; the connection is closed"),
    # 415: a format we do not take
    "unsupported_format": ErrorCode(415, "the image is not JPEG/PNG/WebP/BMP", ws_message=True),
    "unsupported_media_type": ErrorCode(415, "a JSON endpoint got a body that is not `application/json` "
                                        "(`/detect-fingers`: nor `image/jpeg`, `image/png`, `image/webp`), "
                                        "or the upload endpoint one that is not multipart"),
    # 422: well-formed but not acceptable
    "invalid_request": ErrorCode(422, "JSON that does not follow the endpoint's schema"),
    "bad_stream_name": ErrorCode(422, "WebSocket: a stream name (`?camera=` or `opts.camera`) that is not "
                                 "`[a-z0-9_-]{1,32}`, or a second, different name for a named stream", ws_close=4422),
    "bad_options": ErrorCode(422, "invalid `options`/`opts` (unknown key, value out of range)", ws_message=True),
    "model_unavailable": ErrorCode(422, "the options name a model variant this node does not have",
                                   ws_message=True),
    # 409: a conflict with what is there
    "stream_name_taken": ErrorCode(409, "WebSocket: another live stream or a configured camera of this edge has "
                                   "that name", ws_close=4409),
    # 429: over a rate limit
    "rate_limited": ErrorCode(429, "over the caller's rate limit (`Retry-After` says when to come back)"),
    "too_many_auth_failures": ErrorCode(429, "this client sent more unknown API keys than `AUTH_FAILURE_LIMIT` "
                                        "per `AUTH_FAILURE_WINDOW` (`Retry-After` says when to come back)"),
    "batch_exceeds_rate_limit": ErrorCode(429, "a batch bigger than the caller's whole allowance"),
    "too_many_connections": ErrorCode(429, "WebSocket: the key already holds `MAX_CONNECTIONS_PER_KEY` streams on "
                                      "this edge", ws_close=1013),
    "too_many_frames": ErrorCode(429, "WebSocket: more ping/pong frames than `WS_MAX_CONTROL_RATE` per second, or a "
                                 "message split into more than `WS_MAX_FRAGMENTS` frames", ws_close=1008),
    # 500: our fault
    "internal_error": ErrorCode(500, "a bug: the message quotes the request id, the traceback is in the log"),
    "config_error": ErrorCode(500, "a setting is invalid (start-up and `hgr config --check` only)"),
    # 503: not now
    "not_ready": ErrorCode(503, "the inference workers are not up (or the node is stopping)"),
    "model_load_failed": ErrorCode(503, "the node could not load its model (start-up only)"),
    "worker_restarted": ErrorCode(503, "the inference process died on this image; it is being restarted",
                                  ws_message=True),
    "unavailable": ErrorCode(503, "the inference pool is shutting down", ws_message=True),
    "overloaded": ErrorCode(503, "WebSocket: the edge already has `MAX_CONNECTIONS` streams (or is stopping)",
                            ws_close=1013),
    "rate_limiter_unavailable": ErrorCode(503, "the limits' Redis is down and `RATE_LIMIT_FAIL=closed`, or it is full"),
    "fleet_unavailable": ErrorCode(503, "the fleet store (Redis) is unreachable"),
}


def spec(code: str) -> ErrorCode:
    """The catalogue entry of ``code``; KeyError names the table when a code was never added to it."""
    try:
        return CATALOGUE[code]
    except KeyError:
        raise KeyError(f"error code {code!r} is not in hgr.common.errors.CATALOGUE; add it there") from None


def errors_table() -> str:
    """The Markdown table of docs/api.md's "Errors" section, generated from the catalogue."""
    rows = ["| code | HTTP | WebSocket | when |", "| --- | --- | --- | --- |"]
    for code, entry in sorted(CATALOGUE.items(), key=lambda item: (item[1].status, item[0])):
        rows.append(f"| `{code}` | {entry.status} | {ws_mapping(entry)} | {entry.when} |")
    return "\n".join(rows) + "\n"


def ws_mapping(entry: ErrorCode) -> str:
    if entry.ws_close is not None:
        return f"close {entry.ws_close}"
    return "`error` message" if entry.ws_message else "—"


class HgrError(Exception):
    """An error meant for the caller. ``code`` is stable API; ``message`` is for people; the status is
    the catalogue's for that code."""

    code: str = "internal_error"
    headers: dict[str, str] | None = None  # extra HTTP response headers (e.g. Retry-After)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        spec(cls.code)  # a class with an uncatalogued code fails at import, not when first raised
        if "status" in cls.__dict__:
            raise TypeError(f"{cls.__name__}: the status of {cls.code!r} comes from CATALOGUE, not the class")

    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers
        if code is not None:
            spec(code)
            self.code = code

    @property
    def status(self) -> int:
        return CATALOGUE[self.code].status

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class ImageError(HgrError):
    """The bytes are not an image we accept. ``code`` says which rule failed."""

    code = "corrupt_image"


class ImageTooLarge(ImageError):
    code = "image_too_large"


class TooManyPixels(ImageError):
    code = "too_many_pixels"


class ImageSideTooLarge(ImageError):
    code = "image_side_too_large"


class UnsupportedImage(ImageError):
    code = "unsupported_format"


class CorruptImage(ImageError):
    code = "corrupt_image"


class EmptyImage(ImageError):
    code = "empty_image"


class ModelUnavailable(HgrError):
    """The node cannot load its model (start-up): not the client's request for a variant it lacks,
    which is ``BadOptions`` with code ``model_unavailable`` (422)."""

    code = "model_load_failed"


class ConfigError(HgrError):
    code = "config_error"
