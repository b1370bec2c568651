"""hub/bodies.py: untrusted bodies read within their limits, checked against their declarations (msgspec),
and base64 fields turned into image bytes."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from starlette.requests import Request

from hgr.common import jsonsafe
from hgr.common.contracts import DetectRequest, RestOptions
from hgr.common.errors import EmptyImage, HgrError, ImageTooLarge
from hgr.common.options import DetectOptions
from hgr.hub.bodies import (
    InvalidRequest,
    RequestTooLarge,
    UnsupportedMediaType,
    bounded,
    convert,
    decode_base64_image,
    detect_options,
    query_options,
    read_json,
    single_image_body_limit,
)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
LIMITS = jsonsafe.JsonLimits(32, 10_000)


def _request(chunks: list[bytes], headers: dict[str, str] | None = None) -> tuple[Request, list[int]]:
    """A request whose body arrives in ``chunks``; the list counts the chunks the app pulled."""
    pulled: list[int] = []

    async def receive() -> dict[str, Any]:
        pulled.append(1)
        i = len(pulled) - 1
        if i >= len(chunks):
            await asyncio.Event().wait()  # a client that never sends the rest
        return {"type": "http.request", "body": chunks[i], "more_body": i < len(chunks) - 1}

    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]}
    return Request(scope, receive), pulled


@pytest.mark.parametrize("value", [base64.b64encode(PNG).decode(),
                                   "data:image/png;base64," + base64.b64encode(PNG).decode(),
                                   base64.encodebytes(PNG).decode()])  # MIME line breaks
def test_base64_with_a_data_url_prefix_or_line_breaks_decodes(value: str) -> None:
    assert decode_base64_image(value, 1000) == PNG


@pytest.mark.parametrize("value,error,code", [
    (5, InvalidRequest, "invalid_request"), ("", EmptyImage, "empty_image"), ("   ", EmptyImage, "empty_image"),
    ("@@@@", HgrError, "bad_base64"), ("QUJD!", HgrError, "bad_base64"),
    ("A" * 2000, ImageTooLarge, "image_too_large"),  # refused from its length, before decoding
])
def test_bad_base64_fields_say_what_is_wrong(value: object, error: type[HgrError], code: str) -> None:
    with pytest.raises(error) as info:
        decode_base64_image(value, 1000, field="image_base64")
    assert info.value.code == code


def test_a_single_image_body_limit_is_the_base64_of_the_image_limit_plus_room() -> None:
    assert single_image_body_limit(3_000_000, 64 * 2**20) == 4_000_000 + 64 * 1024
    assert single_image_body_limit(3_000_000, 1_000_000) == 1_000_000  # never above the request limit


async def test_a_declared_oversize_body_is_refused_before_reading() -> None:
    request, pulled = _request([b"x" * 10], {"content-length": "5000"})
    with pytest.raises(RequestTooLarge):
        bounded(request, 4096)
    assert pulled == []


async def test_a_body_crossing_the_limit_is_cut_at_that_chunk() -> None:
    request, pulled = _request([b"x" * 3000, b"x" * 3000, b"x" * 3000])
    with pytest.raises(RequestTooLarge):
        await bounded(request, 4096).body()
    assert len(pulled) == 2  # the third chunk is never read


async def test_read_json_wants_json_within_the_limit() -> None:
    request, _ = _request([b'{"a": ', b"[1, 2]}"], {"content-type": "application/json; charset=utf-8"})
    assert await read_json(request, 1024, LIMITS) == {"a": [1, 2]}
    request, _ = _request([b"{}"], {"content-type": "text/plain"})
    with pytest.raises(UnsupportedMediaType):
        await read_json(request, 1024, LIMITS)
    request, _ = _request([b""], {"content-type": "application/json"})
    with pytest.raises(HgrError) as empty:
        await read_json(request, 1024, LIMITS)
    assert empty.value.code == "bad_json"


# --- bodies against their declarations (common.contracts' REST section, checked by msgspec) ---

DEFAULTS = DetectOptions(num_hands=2, mirrored=False, model="full")


@pytest.mark.parametrize("doc,code,fragment", [
    ([1, 2], "invalid_request", "Expected `object`, got `array`"),
    ({"image": "x"}, "invalid_request", "missing required field `image_base64`"),
    ({"image_base64": 5}, "invalid_request", "at `$.image_base64`"),
    ({"image_base64": "AAAA", "image_id": True}, "invalid_request", "at `$.image_id`"),
    ({"image_base64": "AAAA", "image_id": "x" * 257}, "invalid_request", "at `$.image_id`"),
    ({"image_base64": "AAAA", "options": {"colour": "red"}}, "bad_options", "unknown field `colour`"),
    ({"image_base64": "AAAA", "options": {"num_hands": 9}}, "bad_options", "<= 4 - at `$.options.num_hands`"),
    ({"image_base64": "AAAA", "options": {"model": "huge"}}, "bad_options", "at `$.options.model`"),
    ({"image_base64": "AAAA", "options": []}, "bad_options", "at `$.options`"),
])
def test_a_body_off_its_declaration_says_what_and_where(doc: object, code: str, fragment: str) -> None:
    with pytest.raises(HgrError) as refused:
        convert(doc, DetectRequest, "DetectRequest")
    assert refused.value.code == code and refused.value.status == 422
    assert fragment in refused.value.message and "DetectRequest" in refused.value.message


def test_a_valid_body_stays_a_dict_and_its_options_fill_in_the_defaults() -> None:
    body = convert({"image_base64": "AAAA", "image_id": 7, "extra": 1, "options": {"mirrored": True}}, DetectRequest,
                   "DetectRequest")
    assert body["image_id"] == 7 and "extra" not in body
    assert detect_options(body.get("options"), DEFAULTS) == DetectOptions(2, True, "full")
    assert detect_options(None, DEFAULTS) is DEFAULTS
    assert detect_options(convert({}, RestOptions, "RestOptions"), DEFAULTS) is DEFAULTS


def test_query_options_read_the_same_declaration_from_text() -> None:
    opts, image_id = query_options({"num_hands": "1", "mirrored": "true", "model": "lite", "image_id": "x"}, DEFAULTS)
    assert (opts, image_id) == (DetectOptions(1, True, "lite"), "x")
    assert query_options({}, DEFAULTS) == (DEFAULTS, None)
    for query in ({"num_hands": "9"}, {"mirrored": "maybe"}, {"colour": "red"}, {"num_hands": "two"}):
        with pytest.raises(HgrError) as refused:
            query_options(query, DEFAULTS)
        assert refused.value.code == "bad_options" and next(iter(query)) in refused.value.message
