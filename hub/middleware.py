"""HTTP plumbing every route shares, as one pure ASGI middleware (usable by the hub and the all-in-one).

Per request: a request id (the client's ``X-Request-ID`` if sane, else a fresh one) set in
``common.logs.request_id_var`` and echoed back; ``hand_gesture_requests_total`` / ``hand_gesture_request_duration``
labelled by route template (never the raw path); one structured access-log line; and errors as JSON
``{"error": {"code", "message", "request_id"}}``: an ``HgrError`` with its status, anything else a
500 ``internal_error`` whose traceback goes to the log, never to the client.

Starlette's own 404/405 and ``HTTPException`` need ``EXCEPTION_HANDLERS`` on the app as well.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hgr.common import metrics
from hgr.common.errors import CATALOGUE, HgrError
from hgr.common.logs import request_id_var

log = logging.getLogger("hgr.http")
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# The code of a response some other layer (Starlette's HTTPException, a bare status) made: the generic
# code of that status in the catalogue.
_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 413: "request_too_large", 415: "unsupported_media_type",
                 422: "invalid_request", 429: "rate_limited", 500: "internal_error", 503: "not_ready"}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    # A message quoting client input must still encode: an unpaired surrogate once made this very
    # handler fail (a plain-text 500 without request id). common.jsonsafe refuses them at the door; this
    # keeps any other path from doing it again.
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    body = {"error": {"code": code, "message": message}}
    rid = request_id_var.get()
    if rid:
        body["error"]["request_id"] = rid
    return JSONResponse(body, status_code=status, headers=headers)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    # A status without a code of its own is answered as the generic code of its class (400 or 500), with
    # that code's status: one status per code, whatever raised it.
    code = _STATUS_CODES.get(exc.status_code) or ("bad_request" if exc.status_code < 500 else "internal_error")
    return error_response(CATALOGUE[code].status, code, str(exc.detail), dict(exc.headers or {}))


EXCEPTION_HANDLERS = {HTTPException: _http_exception}


def route_label(scope: Scope, status: int | None = None) -> str:
    """The matched route's template (``/fleet/edges/{edge_id}``), rebuilt from the path and its params.

    Never the raw path, which a client chooses (a label per path would grow ``/metrics`` without bound):
    no route is ``unmatched``, and so is a path under a mount (the web demo's static files at ``/`` in
    `hgr up`) that the mount answers 404; any other answer of a mount is ``<mount>/{path}``."""
    if "endpoint" not in scope:
        return "unmatched"
    if "app_root_path" in scope:  # set by a Mount (and only by one) for the app it hands the request to
        if status == 404:
            return "unmatched"
        return f"{scope.get('root_path', '')[len(scope['app_root_path']):]}/{{path}}"
    path: str = scope.get("route_path") or scope["path"]
    for name, value in (scope.get("path_params") or {}).items():
        path = path.replace(f"/{value}", f"/{{{name}}}", 1)
    return path


class HubMiddleware:
    """``app.add_middleware(HubMiddleware)``: request ids, the common error body, HTTP metrics, access log."""

    service = "hub"  # the metrics' service label

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _SANE_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(rid)
        start = time.perf_counter()
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started, status = True, message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            status = 499  # nginx's "client closed request"; nothing to send
        except HgrError as exc:
            status = exc.status
            scope.setdefault("state", {})["error_code"] = exc.code
            if not started:
                await error_response(exc.status, exc.code, exc.message, exc.headers)(
                    scope, receive, send_wrapper)
        except Exception:
            log.exception("unhandled error", extra={"method": scope["method"], "route": route_label(scope)})
            status = 500
            if not started:
                await error_response(500, "internal_error", f"internal error; quote request id {rid}")(
                    scope, receive, send_wrapper)
        finally:
            self._record(scope, status, time.perf_counter() - start)
            request_id_var.reset(token)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        route = route_label(scope, status)
        metrics.HTTP_REQUESTS.labels(self.service, scope["method"], route, str(status)).inc()
        metrics.HTTP_DURATION.labels(self.service, scope["method"], route, str(status)).observe(elapsed)
        state: dict[str, Any] = scope.get("state") or {}
        if status >= 400:
            metrics.ERRORS.labels(self.service, state.get("error_code") or _STATUS_CODES.get(status, str(status))).inc()
        if route in ("/metrics", "/health", "/ready") and status < 400:
            return  # probes every few seconds would drown the log
        log.info("request", extra={"method": scope["method"], "route": route, "status": status,
                                   "duration_ms": round(elapsed * 1000, 2), "key_name": state.get("key_name"),
                                   "images": state.get("images")})
