"""The detection endpoints: one image (base64 in JSON, or the raw image body), a batch of them, or
multipart file uploads.

Every request: identify the caller (auth) → read the body within limits → charge the rate limiter
one unit per image → run the images concurrently (the pool batches them across its workers; each
request keeps only a few images queued at a time, so concurrent requests interleave fairly) → answer
with the RateLimit-* headers.
A limited client cannot make us read and parse megabytes only to refuse them: the single-image
endpoint is charged before its body is read, and a batch or upload is admitted only if the key can
afford one image (``RateLimiter.admit``), then charged in full once its images are counted, before
any of them is decoded. Bodies are read by ``hub.bodies`` (size, time and JSON-shape limits
while they arrive; every JSON oddity a 4xx from ``common.jsonsafe``) and checked against their
declarations in ``common.contracts`` (``DetectRequest``, ``BatchRequest``, ``RestOptions``) by msgspec.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import msgspec
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hgr.common import jsonsafe
from hgr.common.config import Settings
from hgr.common.contracts import BatchEnvelope, BatchItem, DetectRequest, ImageId, RestOptions
from hgr.common.errors import HgrError, ImageTooLarge
from hgr.common.options import BadOptions, DetectOptions
from hgr.hub.access import Access
from hgr.hub.bodies import (
    RAW_IMAGE_TYPES,
    InvalidRequest,
    RequestTooLarge,
    UnsupportedMediaType,
    convert,
    decode_base64_image,
    detect_options,
    is_json,
    longest_json_string,
    media_type,
    query_options,
    read_form,
    read_image,
    read_json,
    single_image_body_limit,
)
from hgr.hub.callers import Caller
from hgr.hub.detection import Detection, Item
from hgr.hub.ratelimit import RateLimiter


class DetectHost(Protocol):
    """What these routes need from the hub (``hub.app.Hub``), stated here so the hub imports its
    routes and never the reverse."""

    @property
    def settings(self) -> Settings: ...
    @property
    def access(self) -> Access: ...
    @property
    def defaults(self) -> DetectOptions: ...
    @property
    def limiter(self) -> RateLimiter: ...
    @property
    def detection(self) -> Detection: ...


def routes(hub: DetectHost) -> list[Route]:
    s = hub.settings
    json_limits = jsonsafe.JsonLimits(s.max_json_depth, s.max_json_values, longest_json_string(s.max_image_size))
    single_limit = single_image_body_limit(s.max_image_size, s.max_request_size)

    async def charge(request: Request, caller: Caller, cost: int) -> dict[str, str]:
        request.state.images = cost
        return (await hub.limiter.check(caller.bucket, cost, caller.limit)).headers()

    async def charge_rest(request: Request, caller: Caller, cost: int, paid: int) -> dict[str, str]:
        """A request admitted before its body was read (``paid``: what admitting it charged)."""
        request.state.images = cost
        return (await hub.limiter.check_rest(caller.bucket, cost, paid, caller.limit)).headers()

    async def detect(request: Request) -> JSONResponse:
        received = time.monotonic()
        headers = await charge(request, await hub.access.caller(request), 1)
        kind = media_type(request)
        if kind in RAW_IMAGE_TYPES:  # the image itself; options and image_id in the query string
            opts, image_id = query_options(request.query_params, hub.defaults)  # 422 before reading the image
            data = await read_image(request, s.max_image_size, s.max_request_size, s.body_timeout)
            result = await hub.detection.run(data, opts, received)
            if image_id is not None:
                result = {"image_id": image_id, **result}
            return JSONResponse(result, headers=headers)
        if not is_json(kind):
            raise UnsupportedMediaType(f"send the body as Content-Type: application/json ({{\"image_base64\": …}}) "
                                       f"or the image itself as {', '.join(RAW_IMAGE_TYPES)} "
                                       f"(got {kind[:60] or 'none'!r})")
        body = convert(await read_json(request, single_limit, json_limits, s.body_timeout), DetectRequest,
                       "DetectRequest")
        data = decode_base64_image(body["image_base64"], s.max_image_size)
        opts = detect_options(body.get("options"), hub.defaults)
        result = await hub.detection.run(data, opts, received)
        if "image_id" in body:
            result = {"image_id": body["image_id"], **result}
        return JSONResponse(result, headers=headers)

    async def detect_batch(request: Request) -> JSONResponse:
        received = time.monotonic()
        caller = await hub.access.caller(request)  # 401/403 before reading a byte
        paid = await hub.limiter.admit(caller.bucket, caller.limit)  # 429 before reading a byte
        body = convert(await read_json(request, s.max_request_size, json_limits, s.body_timeout), BatchEnvelope,
                       "BatchRequest")
        images = body["images"]
        if len(images) > s.max_batch_images:
            raise RequestTooLarge(f"{len(images)} images; at most {s.max_batch_images} per request",
                                  code="too_many_images")
        batch_opts = detect_options(body.get("options"), hub.defaults)
        headers = await charge_rest(request, caller, len(images), paid)
        items: list[Item] = []
        for i, item in enumerate(images):
            image_id, data, opts = _batch_item(item, i, batch_opts, s.max_image_size)
            items.append((data, opts, {"image_id": image_id}))
        results = await hub.detection.run_all(items, received)
        return JSONResponse(_batch_body(results, received), headers=headers)

    async def detect_upload(request: Request) -> JSONResponse:
        received = time.monotonic()
        caller = await hub.access.caller(request)
        paid = await hub.limiter.admit(caller.bucket, caller.limit)
        form = await read_form(request, s.max_request_size, s.max_batch_images, s.body_timeout,
                               max_fields=s.max_form_fields, max_field_size=s.max_form_field_size)
        try:
            files = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
            if not files:
                raise InvalidRequest("no file: send one or more multipart fields named `file`")
            raw_opts = form.get("options")  # RestOptions as JSON text (UploadForm)
            opts = hub.defaults if not isinstance(raw_opts, str) else detect_options(
                convert(jsonsafe.loads(raw_opts, json_limits), RestOptions | None, "RestOptions",  # type: ignore[arg-type]
                        refused=BadOptions), hub.defaults)
            headers = await charge_rest(request, caller, len(files), paid)
            items: list[Item] = []
            for i, f in enumerate(files):
                data: bytes | HgrError
                if f.size is not None and f.size > s.max_image_size:
                    message = f"the file is {f.size} bytes; the limit is {s.max_image_size} bytes"
                    if len(files) == 1:  # one file answers as one image does (/detect-fingers): 413, error body
                        raise ImageTooLarge(message, headers=headers)
                    data = ImageTooLarge(message)
                else:
                    data = await f.read()
                items.append((data, opts, {"image_id": str(i), "filename": f.filename}))
            results = await hub.detection.run_all(items, received)
        finally:
            await form.close()
        return JSONResponse(_batch_body(results, received), headers=headers)

    return [
        Route("/detect-fingers", detect, methods=["POST"]),
        Route("/detect-fingers-batch", detect_batch, methods=["POST"]),
        Route("/detect-fingers-upload", detect_upload, methods=["POST"]),
    ]


def _batch_item(raw: Any, index: int, defaults: DetectOptions,
                max_bytes: int) -> tuple[str | int, bytes | HgrError, DetectOptions | HgrError]:
    """(image_id, bytes or the error, options or the error) of one batch entry (``BatchItem``); never raises.
    An entry that is not a ``BatchItem`` is answered as its own error, under its ``image_id`` if that one
    is valid, else its index."""
    try:
        item = convert(raw, BatchItem, "BatchItem")
    except HgrError as exc:
        try:
            image_id = msgspec.convert(raw["image_id"], ImageId)
        except (TypeError, KeyError, IndexError, msgspec.ValidationError):
            image_id = str(index)
        return image_id, exc, defaults
    image_id = item.get("image_id", str(index))
    opts = detect_options(item.get("options"), defaults)
    try:
        return image_id, decode_base64_image(item["image_base64"], max_bytes), opts
    except HgrError as exc:
        return image_id, exc, opts


def _batch_body(results: list[dict[str, Any]], received: float) -> dict[str, Any]:
    failed = sum(1 for r in results if "error" in r)
    return {"results": results, "count": len(results), "succeeded": len(results) - failed, "failed": failed,
            "processing_ms": round((time.monotonic() - received) * 1000, 3)}
