"""Reading untrusted request bodies within limits, and turning their fields into image bytes.

The size limit is enforced *while* the body arrives: a declared ``Content-Length`` over the limit is
refused before reading anything, and a chunked or lying body is cut off at the first chunk that
crosses the limit (``bounded``). The rest is never read, so a 1 GB upload costs us at most
``MAX_REQUEST_SIZE``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message

from hgr.common.errors import EmptyImage, HgrError, ImageTooLarge


class BadRequest(HgrError):
    code = "bad_request"


class RequestTooLarge(HgrError):
    code = "request_too_large"


class InvalidRequest(HgrError):
    """Well-formed JSON that does not follow the endpoint's schema."""

    code = "invalid_request"


class UnsupportedMediaType(HgrError):
    code = "unsupported_media_type"


def bounded(request: Request, limit: int) -> Request:
    """The same request, whose body can be read at most ``limit`` bytes far (RequestTooLarge beyond)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"the request body is {declared} bytes; the limit is {limit} bytes")
    received = 0
    receive = request.receive

    async def bounded_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise RequestTooLarge(f"the request body exceeds the limit of {limit} bytes")
        return message

    return Request(request.scope, bounded_receive)


async def read_json(request: Request, limit: int) -> Any:
    body = await bounded(request, limit).body()
    if not body:
        raise BadRequest("the request body is empty; send a JSON object", code="bad_json")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the body is not valid JSON ({exc.__class__.__name__})", code="bad_json") from None


async def read_form(request: Request, limit: int, max_files: int) -> FormData:
    """Parse a multipart body, streamed (files spill to disk past 1 MB) and bounded."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise UnsupportedMediaType("send multipart/form-data with one or more `file` fields")
    try:
        # max_part_size bounds the non-file fields (options); file parts are bounded by `limit`.
        return await bounded(request, limit).form(max_files=max_files, max_fields=16, max_part_size=64 * 1024)
    except HTTPException as exc:  # starlette turns multipart errors into HTTPException(400)
        detail = str(exc.detail)
        if "Too many files" in detail:
            raise RequestTooLarge(f"too many files; at most {max_files} per request", code="too_many_images") from None
        raise BadRequest(f"malformed multipart body: {detail}", code="bad_multipart") from None


_DATA_URL = re.compile(r"^data:image/[a-z0-9.+-]+;base64,", re.IGNORECASE)


def decode_base64_image(value: Any, max_bytes: int, field: str = "image_base64") -> bytes:
    """Strict base64 (a ``data:image/...;base64,`` prefix and line breaks are tolerated) → bytes."""
    if not isinstance(value, str):
        raise InvalidRequest(f"`{field}` must be a base64 string")
    value = _DATA_URL.sub("", value, count=1).strip()
    if not value:
        raise EmptyImage(f"`{field}` is empty")
    # Refuse before decoding: 4 base64 characters carry 3 bytes.
    if len(value) // 4 * 3 - 2 > max_bytes:
        raise ImageTooLarge(f"the image is about {len(value) // 4 * 3} bytes; the limit is {max_bytes} bytes")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        try:  # MIME-style base64 wraps lines; anything else outside the alphabet is an error
            data = base64.b64decode("".join(value.split()), validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"`{field}` is not valid base64", code="bad_base64") from None
    if len(data) > max_bytes:
        raise ImageTooLarge(f"the image is {len(data)} bytes; the limit is {max_bytes} bytes")
    return data
