"""Reading untrusted request bodies within limits, and turning their fields into image bytes.

The size limit is enforced *while* the body arrives: a declared ``Content-Length`` over the limit is
refused before reading anything, and a chunked or lying body is cut off at the first chunk that
crosses the limit (``bounded``). The rest is never read, so a 1 GB upload costs us at most
``MAX_REQUEST_SIZE`` (or less: a single-image body is bounded by the base64 size of ``MAX_IMAGE_SIZE``).
The whole body must also arrive within ``BODY_TIMEOUT`` (408 beyond), so a client trickling bytes holds
a connection for a bounded time.

A JSON body is measured while it arrives (``common.jsonsafe.Shape``: a 63 MB ``[[],[],…]`` is refused
after its first 30 KB, instead of costing 2 GB and seconds of event loop), then parsed in a thread when
large, and every decoded oddity becomes a 4xx there, in one place. What the document must then look
like is declared once, in ``common.contracts`` (the REST section), and checked by msgspec (``convert``):
the same declarations are the OpenAPI schema (``hub.openapi``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgspec
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message

from hgr.common import jsonsafe
from hgr.common.contracts import ImageId, RestOptions
from hgr.common.errors import EmptyImage, HgrError, ImageTooLarge
from hgr.common.options import BadOptions, DetectOptions

T = TypeVar("T")


class BadRequest(HgrError):
    code = "bad_request"


class RequestTooLarge(HgrError):
    code = "request_too_large"


class InvalidRequest(HgrError):
    """Well-formed JSON that does not follow the endpoint's schema."""

    code = "invalid_request"


class UnsupportedMediaType(HgrError):
    code = "unsupported_media_type"


class RequestTimeout(HgrError):
    code = "request_timeout"


# JSON bodies above this size are parsed in a thread: json.loads takes ~1 ms per MB of base64 on this
# hardware, and the event loop must keep answering /health and streams meanwhile.
OFF_LOOP_BYTES = 256 * 1024


def single_image_body_limit(max_image_size: int, max_request_size: int) -> int:
    """The most a one-image JSON body can need: the base64 of ``MAX_IMAGE_SIZE`` plus 64 KB of the rest."""
    return min(max_request_size, 4 * -(-max_image_size // 3) + 64 * 1024)


def longest_json_string(max_image_size: int) -> int:
    """The longest string a JSON body can need: an image of ``MAX_IMAGE_SIZE`` in base64, with room for a
    ``data:`` prefix and MIME line breaks (escaped ``\r\n`` every 76 characters). A longer string is
    refused while it arrives, so a 63 MB string is never held, let alone parsed."""
    return 4 * -(-max_image_size // 3) * 81 // 76 + 1024


def bounded(request: Request, limit: int, timeout: float | None = None,
            too_large: Callable[[str], HgrError] = RequestTooLarge) -> Request:
    """The same request, whose body can be read at most ``limit`` bytes far (``too_large``, by default
    RequestTooLarge, beyond) and, with ``timeout``, must have arrived in full within that many seconds
    (RequestTimeout beyond)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(f"the request body is {declared} bytes; the limit is {limit} bytes")
    received = 0
    receive = request.receive
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout

    async def bounded_receive() -> Message:
        nonlocal received
        try:
            async with asyncio.timeout_at(deadline):
                message = await receive()
        except TimeoutError:
            raise RequestTimeout(f"the request body did not arrive within {timeout:g} s") from None
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise too_large(f"the request body exceeds the limit of {limit} bytes")
        return message

    return Request(request.scope, bounded_receive)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_json(kind: str) -> bool:
    """``application/json`` or a ``…+json`` type: what the JSON endpoints read."""
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


# The media types `/detect-fingers` takes as a raw image body (the image itself, no JSON around it).
# The bytes decide the format (``common.inference.images``); the type only says "this body is an image".
RAW_IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")


async def read_image(request: Request, max_image_size: int, max_request_size: int,
                     timeout: float | None = None) -> bytes:
    """A raw image body (one of ``RAW_IMAGE_TYPES``): 413 ``image_too_large`` past ``MAX_IMAGE_SIZE``
    (``request_too_large`` past a smaller ``MAX_REQUEST_SIZE``), refused from ``Content-Length`` before
    reading or at the first chunk that crosses it; 408 past ``timeout``; 400 ``empty_image`` for no bytes."""
    too_large: Callable[[str], HgrError] = ImageTooLarge if max_image_size <= max_request_size else RequestTooLarge
    body = bytearray()
    async for chunk in bounded(request, min(max_image_size, max_request_size), timeout, too_large).stream():
        body += chunk
    if not body:
        raise EmptyImage("the request body is empty; send the image's bytes")
    return bytes(body)


def convert(doc: Any, kind: type[T], schema: str, *, strict: bool = True,
            refused: type[HgrError] | None = None) -> T:
    """``doc`` (a parsed JSON body, a form field, a query string) as ``kind``, a REST declaration of
    ``common.contracts``, checked by msgspec: every bound of the declaration, unknown fields where it
    refuses them. msgspec's own words (what was expected, and where: ``$.options.num_hands``) become the
    message, with the schema's name in /openapi.json. A wrong ``options`` is 422 ``bad_options``, anything
    else 422 ``invalid_request`` (``refused``: this code whatever the place). ``strict=False``: strings
    may stand for numbers and booleans (``?num_hands=1&mirrored=true``)."""
    try:
        return msgspec.convert(doc, kind, strict=strict)
    except msgspec.ValidationError as exc:
        message = f"{exc} (schema: {schema}, /openapi.json)"
        where = str(exc).rpartition(" - at `")[2].rstrip("`") if " - at `" in str(exc) else "$"
        if refused is None:
            refused = BadOptions if where == "$.options" or where.startswith(("$.options.", "$.options[")) \
                else InvalidRequest
        raise refused(message) from None


def detect_options(doc: RestOptions | None | msgspec.UnsetType, defaults: DetectOptions) -> DetectOptions:
    """The request's ``RestOptions`` over ``defaults`` (absent or null: the defaults)."""
    if not isinstance(doc, RestOptions):
        return defaults
    chosen = {name: value for name in doc.__struct_fields__ if (value := getattr(doc, name)) is not msgspec.UNSET}
    return dataclasses.replace(defaults, **chosen) if chosen else defaults


def query_options(params: Mapping[str, str], defaults: DetectOptions) -> tuple[DetectOptions, str | int | None]:
    """``(options, image_id)`` from a raw image request's query string (``?num_hands=1&mirrored=true
    &model=lite&image_id=x``): the same ``RestOptions`` declaration as the JSON body's ``options``, its
    values read from text (an unknown name or a bad value: 422 ``bad_options``)."""
    options = dict(params)
    raw_id = options.pop("image_id", None)
    image_id = None if raw_id is None else convert(raw_id, ImageId, "ImageId")  # type: ignore[arg-type]
    return detect_options(convert(options, RestOptions, "RestOptions", strict=False, refused=BadOptions),
                          defaults), image_id


async def read_json(request: Request, limit: int, json_limits: jsonsafe.JsonLimits,
                    timeout: float | None = None) -> Any:
    """The JSON document of the body: 415 unless ``application/json`` (or ``…+json``), 413 past ``limit``
    bytes or the JSON limits (checked chunk by chunk as the body arrives), 408 past ``timeout``, 400 for
    anything ``common.jsonsafe`` refuses. Large bodies are parsed off the event loop."""
    kind = media_type(request)
    if not is_json(kind):
        raise UnsupportedMediaType(f"send the body as Content-Type: application/json (got {kind[:60] or 'none'!r})")
    shape = jsonsafe.Shape(json_limits)
    body = bytearray()
    async for chunk in bounded(request, limit, timeout).stream():
        try:
            shape.feed(chunk)
        except jsonsafe.JsonStringTooLong:  # the only long strings we take are images
            raise ImageTooLarge(f"the body holds a string longer than {json_limits.max_string} bytes, more than "
                                f"an image of the size limit takes in base64") from None
        body += chunk
    if not body:
        raise jsonsafe.BadJson("the request body is empty; send a JSON object")
    if len(body) <= OFF_LOOP_BYTES:
        return jsonsafe.loads(body, json_limits, measured=True)
    return await asyncio.to_thread(jsonsafe.loads, body, json_limits, measured=True)


async def read_form(request: Request, limit: int, max_files: int, timeout: float | None = None, *,
                    max_fields: int, max_field_size: int) -> FormData:
    """Parse a multipart body, streamed (files spill to disk past 1 MB) and bounded: the whole body by
    ``limit``, the files by ``max_files``, the other fields (``options``) by ``max_fields`` and
    ``max_field_size`` bytes each, all while it arrives."""
    if media_type(request) != "multipart/form-data":
        raise UnsupportedMediaType("send multipart/form-data with one or more `file` fields")
    try:
        return await bounded(request, limit, timeout).form(max_files=max_files, max_fields=max_fields,
                                                           max_part_size=max_field_size)
    except HTTPException as exc:  # starlette turns multipart errors into HTTPException(400); its texts tell which
        detail = str(exc.detail)
        if "Too many files" in detail:
            raise RequestTooLarge(f"too many files; at most {max_files} per request", code="too_many_images") from None
        if "Too many fields" in detail:
            raise RequestTooLarge(f"too many fields besides the files; at most {max_fields} per request",
                                  code="form_too_large") from None
        if "exceeded maximum size" in detail:
            raise RequestTooLarge(f"a field besides the files is over {max_field_size} bytes",
                                  code="form_too_large") from None
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
