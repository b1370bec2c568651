"""REST bodies and multipart uploads, fuzzed, in-process (httpx ASGI transport → HubMiddleware → routes →
the real worker). Properties: never a 5xx, every error is the JSON error body with a catalogued code and the
request id, every answer is strict JSON (no bare NaN), no worker restarts, memory bounded (fixture)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import event, given
from hypothesis import strategies as st

from hgr.common.errors import CATALOGUE
from tests.fuzz.conftest import Services, fuzz
from tests.fuzz.fuzz_inputs import b64, dumps_loose, image_bytes, json_values, odd_json_texts, odd_text

PATHS = ["/detect-fingers", "/detect-fingers-batch", "/detect-fingers-upload"]


def _strict(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"bare {name} in a response")
    return json.loads(text, parse_constant=refuse)


def check(r: httpx.Response) -> None:
    assert r.status_code < 500, r.text[:500]
    body = _strict(r.text)
    event(f"{r.status_code} {body['error']['code'] if r.status_code >= 400 else 'ok'}")
    if r.status_code >= 400:
        error = body["error"]
        assert error["code"] in CATALOGUE and CATALOGUE[error["code"]].status == r.status_code, body
        assert error["message"] and error["request_id"] == r.headers["x-request-id"]


# Mostly JSON, so most examples get past the 415 and reach the parser and the routes.
CONTENT_TYPES = st.sampled_from(["application/json"] * 6 + ["application/json; charset=utf-8", "text/plain",
                                 "application/problem+json", "", "multipart/form-data; boundary=x"])


@given(path=st.sampled_from(PATHS), text=odd_json_texts(), content_type=CONTENT_TYPES)
@fuzz(1.5)
def test_raw_json_texts(bounded: Services, path: str, text: str, content_type: str) -> None:
    body = text.encode("utf-8", "surrogatepass")
    headers = {"content-type": content_type} if content_type else {}
    check(bounded.run(lambda: bounded.client.post(path, content=body, headers=headers)))


@given(path=st.sampled_from(PATHS), body=st.binary(max_size=2048), content_type=CONTENT_TYPES)
@fuzz(0.75)
def test_raw_bytes(bounded: Services, path: str, body: bytes, content_type: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    check(bounded.run(lambda: bounded.client.post(path, content=body, headers=headers)))


@st.composite
def single_bodies(draw: st.DrawFn, photos: list[bytes]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if draw(st.booleans()):
        body["image_base64"] = draw(st.one_of(st.builds(b64, image_bytes(photos)), json_values))
    for key in ("image_id", "options"):
        if draw(st.booleans()):
            body[key] = draw(st.one_of(json_values, st.fixed_dictionaries(
                {}, optional={"num_hands": json_values, "mirrored": json_values, "model": json_values})))
    if draw(st.integers(0, 9)) == 0:
        body[draw(odd_text)] = draw(json_values)
    return body


@given(data=st.data())
@fuzz(1.0)
def test_structured_single_and_batch_bodies(bounded: Services, fuzz_photos: list[bytes], data: st.DataObject) -> None:
    one = data.draw(single_bodies(fuzz_photos))
    if data.draw(st.booleans()):
        path, doc = "/detect-fingers", one
    else:
        items = data.draw(st.lists(st.one_of(single_bodies(fuzz_photos), json_values), max_size=6))
        path, doc = "/detect-fingers-batch", {"images": items}
        if "options" in one:
            doc["options"] = one["options"]
    text = dumps_loose(doc)
    r = bounded.run(lambda: bounded.client.post(path, content=text.encode("utf-8", "surrogatepass"),
                                                headers={"content-type": "application/json"}))
    check(r)
    if r.status_code == 200 and path.endswith("batch"):
        assert r.json()["count"] == len(doc["images"])


@given(data=st.data())
@fuzz(0.75)
def test_multipart_uploads(bounded: Services, fuzz_photos: list[bytes], data: st.DataObject) -> None:
    files = [(data.draw(st.sampled_from(["file", "file", "other", "FILE"])),
              (data.draw(st.text(max_size=30)), data.draw(image_bytes(fuzz_photos)),
               data.draw(st.sampled_from(["image/jpeg", "application/octet-stream", "text/plain"]))))
             for _ in range(data.draw(st.integers(0, 5)))]
    fields: dict[str, str] = {}
    if data.draw(st.booleans()):
        fields["options"] = data.draw(st.one_of(odd_json_texts(), st.builds(dumps_loose, json_values)))
    if data.draw(st.integers(0, 5)) == 0:
        fields[data.draw(st.text(min_size=1, max_size=10))] = data.draw(st.text(max_size=50))
    # what can travel in a multipart field at all: UTF-8
    fields = {k: v.encode("utf-8", "surrogatepass").decode("utf-8", "replace") for k, v in fields.items()}
    headers = {} if files else {"content-type": "multipart/form-data; boundary=b"}
    check(bounded.run(lambda: bounded.client.post("/detect-fingers-upload", files=files or None,
                                                  data=fields or None, headers=headers)))
