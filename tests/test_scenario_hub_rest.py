"""The hub's REST API end to end: real uvicorn, real inference pool and model, real photos.

One inference pool (one worker, the `hub_pool` fixture) serves every hub in this module; each hub
differs only in its settings.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from PIL import Image

from hgr.common import internals
from hgr.common.inference.hands.runtime import choose_here
from hgr.common.inference.pool import InferencePool
from hgr.common.logs import JsonFormatter
from hgr.hub.app import Hub
from tests.hub_support import b64, hub_app, hub_settings, serve_hub

pytestmark = pytest.mark.asyncio(loop_scope="module")

ALICE, SMALL = "alice-secret-key-123", "small-secret-key-456"
KEYS = f"alice:{ALICE},small:{SMALL}:3/60"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def secured(hub_pool: InferencePool) -> AsyncIterator[str]:
    """Auth on, two keys (small: 3 images per minute), generous global limit."""
    settings = hub_settings(auth_enabled=True, api_keys=KEYS, rate_limit_requests=1000)
    async with serve_hub(settings, hub_pool) as (url, _):
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tight(hub_pool: InferencePool) -> AsyncIterator[str]:
    """Anonymous, small size limits, 3 images per batch, 2 form fields of at most 100 bytes."""
    settings = hub_settings(max_image_size=60_000, max_request_size=200_000, max_batch_images=3,
                            max_form_fields=2, max_form_field_size=100, rate_limit_requests=1000)
    async with serve_hub(settings, hub_pool) as (url, _):
        yield url


@pytest.fixture(scope="module")
def photos(hand_photos: list[tuple[Path, int]]) -> list[bytes]:
    # Photos with at least one finger up, so the model has a hand to find.
    return [p.read_bytes() for p, fingers in hand_photos if fingers >= 1][:4]


def auth(key: str = ALICE) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_result(r: dict[str, Any]) -> None:
    assert {"hands", "total_fingers", "image_size", "timing", "cached", "processing_ms"} <= set(r)
    assert r["total_fingers"] == sum(h["fingers"] for h in r["hands"])
    for hand in r["hands"]:
        assert hand["handedness"] in ("Left", "Right") and len(hand["landmarks"]) == 21
        assert 0 <= hand["fingers"] <= 5


async def test_detect_one_image_then_served_from_cache(secured: str, photos: list[bytes]) -> None:
    async with httpx.AsyncClient(base_url=secured, headers=auth(), timeout=120) as client:
        r = await client.post("/detect-fingers", json={"image_base64": b64(photos[0]), "image_id": "p1"})
        assert r.status_code == 200, r.text
        first = r.json()
        assert_result(first)
        assert first["image_id"] == "p1" and first["cached"] is False and first["hands"]
        assert int(r.headers["RateLimit-Remaining"]) < int(r.headers["RateLimit-Limit"])
        assert "RateLimit-Reset" in r.headers and r.headers["x-request-id"]
        again = (await client.post("/detect-fingers", json={"image_base64": b64(photos[0])})).json()
        assert again["cached"] is True
        assert again["hands"] == first["hands"] and again["timing"] == first["timing"]
        # other options are another cache entry, computed afresh
        mirrored = (await client.post("/detect-fingers", json={"image_base64": b64(photos[0]),
                                                               "options": {"mirrored": True}})).json()
        assert mirrored["cached"] is False
        assert [h["handedness"] for h in mirrored["hands"]] == [
            {"Left": "Right", "Right": "Left"}[h["handedness"]] for h in first["hands"]]
        status = (await client.get("/status")).json()
        assert status["cache"]["hits"] >= 1 and status["cache"]["store"] == "memory"
        assert status["internals"] == {p.name: "active" for p in internals.PATCHES}  # on the lock's releases


async def test_batch_answers_every_image_in_order_and_isolates_bad_ones(secured: str, photos: list[bytes]) -> None:
    images: list[Any] = [{"image_id": f"ok{i}", "image_base64": b64(p)} for i, p in enumerate(photos[:3])]
    images.insert(1, {"image_id": "garbage", "image_base64": "not base64 at all!!"})
    images.append({"image_id": "text", "image_base64": b64(b"hello, this is not an image")})
    images.append({"image_id": 7, "image_base64": b64(photos[0]), "options": {"num_hands": 9}})
    images.append("not an object")
    async with httpx.AsyncClient(base_url=secured, headers=auth(), timeout=120) as client:
        r = await client.post("/detect-fingers-batch", json={"images": images})
    assert r.status_code == 200, r.text
    body = r.json()
    results = body["results"]
    assert [x["image_id"] for x in results] == ["ok0", "garbage", "ok1", "ok2", "text", 7, "6"]
    for x in (results[0], results[2], results[3]):
        assert_result(x)
    assert results[1]["error"]["code"] == "bad_base64"
    assert results[4]["error"]["code"] == "unsupported_format"
    assert results[5]["error"]["code"] == "bad_options"
    assert results[6]["error"]["code"] == "invalid_request"
    assert body["count"] == 7 and body["failed"] == 4 and body["succeeded"] == 3
    assert r.headers["RateLimit-Remaining"]


async def test_upload_several_files(secured: str, photos: list[bytes]) -> None:
    files = [("file", ("a.jpg", photos[0], "image/jpeg")), ("file", ("b.jpg", photos[1], "image/jpeg")),
             ("file", ("notes.txt", b"just text", "text/plain"))]
    async with httpx.AsyncClient(base_url=secured, headers=auth(), timeout=120) as client:
        r = await client.post("/detect-fingers-upload", files=files, data={"options": '{"num_hands": 1}'})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["filename"] for x in results] == ["a.jpg", "b.jpg", "notes.txt"]
    assert_result(results[0])
    assert_result(results[1])
    assert all(len(x["hands"]) <= 1 for x in results[:2])
    assert results[2]["error"]["code"] == "unsupported_format"


async def test_auth_errors_and_named_key_limits(secured: str, photos: list[bytes]) -> None:
    body = {"image_base64": b64(photos[0])}
    async with httpx.AsyncClient(base_url=secured, timeout=120) as client:
        none = await client.post("/detect-fingers", json=body)
        assert none.status_code == 401 and none.json()["error"]["code"] == "unauthorized"
        wrong = await client.post("/detect-fingers", json=body, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden"
        # the small key: 3 images per 60 s; a batch of 2 costs 2
        batch = {"images": [body, body]}
        ok = await client.post("/detect-fingers-batch", json=batch, headers={"X-API-Key": SMALL})
        assert ok.status_code == 200 and ok.headers["RateLimit-Limit"] == "3"
        assert ok.headers["RateLimit-Remaining"] == "1"
        refused = await client.post("/detect-fingers-batch", json=batch, headers={"X-API-Key": SMALL})
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 40
        assert refused.headers["RateLimit-Remaining"] == "1"
        # alice's bucket is untouched by small's
        assert (await client.post("/detect-fingers", json=body, headers=auth())).status_code == 200


async def test_ops_endpoints(secured: str) -> None:
    async with httpx.AsyncClient(base_url=secured, timeout=30) as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
        ready = await client.get("/ready")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "workers": 1, "models": ["full"], "redis": None}
        assert set((await client.get("/status")).json()) == {"service", "version", "status", "degraded", "uptime_s"}
        status = (await client.get("/status", headers=auth())).json()  # the full view: fleet:read
        assert status["status"] == "ok" and status["version"] and status["uptime_s"] >= 0
        assert status["pool"]["alive"] == 1 and status["redis"] == {"configured": False}
        runs = choose_here("auto", "auto").name  # the defaults on this CPU (litert/fp32 without bf16)
        assert status["pool"]["inference"] == {"asked": runs, "running": {runs: 1}, "fallbacks": []}
        assert status["rate_limit"]["store"] == "memory" and status["auth"] == {"enabled": True, "keys": 2}
        assert ALICE not in json.dumps(status)
        info = (await client.get("/model/info")).json()
        assert info["default"] == "full" and info["variants"]["full"].startswith("hand_landmarker-")
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200 and "hand_gesture_requests_total" in metrics.text
        assert 'route="/detect-fingers"' in metrics.text


JSON_TYPE = {"content-type": "application/json"}


async def test_bad_input_errors(tight: str, photos: list[bytes]) -> None:
    small_photo = next(p for p in photos if len(p) < 45_000)
    async with httpx.AsyncClient(base_url=tight, timeout=60) as client:
        async def err(r: httpx.Response, status: int, code: str) -> None:
            assert r.status_code == status, r.text
            assert r.json()["error"]["code"] == code and r.json()["error"]["message"]
            assert r.json()["error"]["request_id"] == r.headers["x-request-id"]

        post = client.post
        await err(await post("/detect-fingers", content=b"{not json", headers=JSON_TYPE), 400, "bad_json")
        await err(await post("/detect-fingers", content=b'{"image_base64": "AAAA"}'), 415, "unsupported_media_type")
        await err(await post("/detect-fingers", content=b'{"image_base64": "AAAA"}',
                             headers={"content-type": "text/plain"}), 415, "unsupported_media_type")
        await err(await post("/detect-fingers", json={"image_base64": "@@@@"}), 400, "bad_base64")
        await err(await post("/detect-fingers", json={"image": "x"}), 422, "invalid_request")
        await err(await post("/detect-fingers", json=[1, 2]), 422, "invalid_request")
        await err(await post("/detect-fingers", json={"image_base64": 5}), 422, "invalid_request")
        await err(await post("/detect-fingers", json={"image_base64": "AAAA", "image_id": {"a": 1}}), 422,
                  "invalid_request")
        await err(await post("/detect-fingers", json={"image_base64": b64(small_photo),
                                                      "options": {"colour": "red"}}), 422, "bad_options")
        gif = io.BytesIO()
        Image.new("RGB", (8, 8)).save(gif, "GIF")
        await err(await post("/detect-fingers", json={"image_base64": b64(gif.getvalue())}), 415,
                  "unsupported_format")
    async with httpx.AsyncClient(base_url=tight, timeout=60) as client:
        post = client.post
        r = await post("/detect-fingers-batch", json={"images": [{"image_id": "x", "image_base64": "AAAA"}] * 4})
        await err(r, 413, "too_many_images")
        r = await post("/detect-fingers-batch", json={"images": []})
        await err(r, 422, "invalid_request")
        r = await post("/detect-fingers", content=b"x" * 300_000, headers={"content-type": "application/json"})
        await err(r, 413, "request_too_large")
        r = await post("/detect-fingers-upload", json={"a": 1})
        await err(r, 415, "unsupported_media_type")
        r = await post("/detect-fingers-upload", files=[("file", ("a.jpg", b"x", "image/jpeg"))] * 4)
        await err(r, 413, "too_many_images")
        r = await post("/detect-fingers-upload", files=[("other", ("a.jpg", b"x", "image/jpeg"))])
        await err(r, 422, "invalid_request")
        one_file = [("file", ("a.jpg", b"x", "image/jpeg"))]
        r = await post("/detect-fingers-upload", files=one_file, data={"options": "{}", "a": "1", "b": "2"})
        await err(r, 413, "form_too_large")
        assert "at most 2" in r.json()["error"]["message"]
        r = await post("/detect-fingers-upload", files=one_file, data={"options": '{"num_hands": 1}' + " " * 100})
        await err(r, 413, "form_too_large")
        assert "over 100 bytes" in r.json()["error"]["message"]
        # within both limits the form reaches the route, which answers the 1-byte file as an image
        r = await post("/detect-fingers-upload", files=one_file, data={"options": '{"num_hands": 1}', "a": "1"})
        assert r.status_code == 200 and r.json()["results"][0]["error"]["code"] == "unsupported_format", r.text
        r = await client.get("/nowhere")
        await err(r, 404, "not_found")
        r = await client.get("/detect-fingers")
        await err(r, 405, "method_not_allowed")


async def test_image_too_large_is_413_per_image(tight: str, photos: list[bytes]) -> None:
    big_photo = b"\xff\xd8" + bytes(100_000)  # over MAX_IMAGE_SIZE (60 kB), under MAX_REQUEST_SIZE
    async with httpx.AsyncClient(base_url=tight, timeout=60) as client:
        r = await client.post("/detect-fingers", json={"image_base64": b64(big_photo)})
        assert r.status_code == 413 and r.json()["error"]["code"] == "image_too_large"
        # One file answers as one image does: the status and the error body of /detect-fingers.
        r = await client.post("/detect-fingers-upload", files=[("file", ("big.jpg", big_photo, "image/jpeg"))])
        assert r.status_code == 413, r.text
        error = r.json()["error"]
        assert error["code"] == "image_too_large" and error["request_id"] == r.headers["X-Request-ID"]
        assert str(len(big_photo)) in error["message"] and r.headers["RateLimit-Limit"]
        # Several files: one result or error per file, as before.
        small = io.BytesIO()
        Image.new("RGB", (64, 48)).save(small, "PNG")
        r = await client.post("/detect-fingers-upload", files=[("file", ("big.jpg", big_photo, "image/jpeg")),
                                                              ("file", ("small.png", small.getvalue(), "image/png"))])
        assert r.status_code == 200, r.text
        big, fine = r.json()["results"]
        assert big["error"]["code"] == "image_too_large" and big["filename"] == "big.jpg"
        assert fine["filename"] == "small.png" and fine["hands"] == []


async def test_pixel_limit_is_413(secured: str) -> None:
    png = io.BytesIO()
    Image.new("L", (8000, 6000)).save(png, "PNG")  # 48 Mpx, compresses to a few dozen kB
    async with httpx.AsyncClient(base_url=secured, headers=auth(), timeout=60) as client:
        r = await client.post("/detect-fingers", json={"image_base64": b64(png.getvalue())})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_pixels"


async def test_body_limit_is_enforced_while_reading(tight: str) -> None:
    """A chunked body that never ends is refused once it crosses MAX_REQUEST_SIZE (200 kB here)."""
    host, port = tight.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /detect-fingers-batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"a" * 65536
    response = b""
    try:
        for _ in range(64):  # up to 4 MB offered; the body is never terminated
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            try:
                response = await asyncio.wait_for(reader.read(4096), 0.2)
            except TimeoutError:
                continue
            break
        if not response:
            response = await asyncio.wait_for(reader.read(4096), 30)
    except (ConnectionResetError, BrokenPipeError):
        response = response or await asyncio.wait_for(reader.read(4096), 30)
    finally:
        writer.close()
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert b"request_too_large" in response


async def test_declared_oversize_body_is_refused_unread(tight: str) -> None:
    host, port = tight.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"POST /detect-fingers-batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 10000000000\r\n\r\n{")
        response = await asyncio.wait_for(reader.read(4096), 30)
    finally:
        writer.close()
    assert response.startswith(b"HTTP/1.1 413") and b"request_too_large" in response


async def test_anonymous_callers_are_limited_per_ip(hub_pool: InferencePool) -> None:
    body = {"image_base64": "AAAA"}  # charged, then refused as a bad image: no inference needed
    async with (serve_hub(hub_settings(rate_limit_requests=6, rate_limit_window=60.0), hub_pool) as (url, _),
                httpx.AsyncClient(base_url=url, timeout=60) as client):
        statuses = [(await client.post("/detect-fingers", json=body)).status_code for _ in range(8)]
        last = await client.post("/detect-fingers", json=body)
    assert statuses == [415] * 6 + [429] * 2  # AAAA is three zero bytes: not an image
    assert last.status_code == 429 and int(last.headers["Retry-After"]) >= 1


async def test_request_id_round_trip_and_keys_stay_out_of_logs(secured: str, photos: list[bytes]) -> None:
    # Formatted as they are emitted (the request id lives in a context variable of the request).
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        await _requests_with_ids_and_keys(secured, photos)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    lines = out.getvalue().splitlines()
    access = [json.loads(line) for line in lines if '"msg": "request"' in line]
    assert any(a.get("request_id") == "trace-abc.123" and a["key_name"] == "alice" and a["status"] == 200
               for a in access)
    assert any(a["status"] == 403 and a["key_name"] is None for a in access)
    text = out.getvalue()
    assert ALICE not in text and "wrong-key-999" not in text and b64(photos[1])[:300] not in text


async def _requests_with_ids_and_keys(secured: str, photos: list[bytes]) -> None:
    async with httpx.AsyncClient(base_url=secured, timeout=60) as client:
        r = await client.post("/detect-fingers", json={"image_base64": b64(photos[1])},
                              headers={**auth(), "X-Request-ID": "trace-abc.123"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "trace-abc.123"
        bad = await client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
        assert bad.headers["x-request-id"] != "bad id with spaces"
        r = await client.post("/detect-fingers", json={"image_base64": b64(photos[1])},
                              headers={"X-API-Key": "wrong-key-999"})
        assert r.status_code == 403


async def test_not_ready_pool_is_503(model_path: str, photos: list[bytes]) -> None:
    settings = hub_settings()
    idle = InferencePool(settings, {"full": model_path}, service="hub", workers=1)  # never started
    hub = Hub(settings, idle)
    transport = httpx.ASGITransport(app=hub_app(hub))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        r = await client.post("/detect-fingers", json={"image_base64": b64(photos[2])})
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
        ready = await client.get("/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "not_ready"
        assert ready.json()["error"]["code"] == "not_ready" and ready.json()["workers"] == 0
        assert (await client.get("/status")).json()["degraded"] == ["workers"]


async def test_rest_load_generator_smoke(secured: str, photos: list[bytes]) -> None:
    from hgr.loadtest.rest import run_rest

    for kind in ("single", "batch", "upload"):
        report = await run_rest(secured, 3, 2, kind, photos, api_key=ALICE, batch_size=2)
        assert report["status"] == {"200": 3}, report
        assert report["images_per_s"] > 0 and report["latency_ms"]["p50"] is not None


async def test_a_big_batch_does_not_hold_up_a_single_image(secured: str, photos: list[bytes],
                                                          hub_pool: InferencePool) -> None:
    """With one worker, a single image sent while a 16-image batch runs waits behind at most a couple of
    the batch's images (per-request cap), so it is answered while the batch is still going."""
    from hgr.loadtest.rest import uniquify

    batch = {"images": [{"image_base64": b64(uniquify(photos[i % len(photos)], 9000 + i))} for i in range(16)]}
    single = {"image_base64": b64(uniquify(photos[0], 9999))}
    async with httpx.AsyncClient(base_url=secured, headers=auth(), timeout=300) as client:
        batch_task = asyncio.create_task(client.post("/detect-fingers-batch", json=batch))
        deadline = asyncio.get_running_loop().time() + 60
        while hub_pool.stats()["in_flight"] + hub_pool.stats()["queued"] == 0:  # the batch has reached the pool
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.005)
        r = await client.post("/detect-fingers", json=single)
        assert r.status_code == 200 and r.json()["cached"] is False
        assert not batch_task.done(), "the single image waited for the whole batch"
        assert (await batch_task).json()["succeeded"] == 16


async def test_raw_image_body_answers_as_the_base64_body(secured: str, hand_photos: list[tuple[Path, int]]) -> None:
    """`Content-Type: image/jpeg|png|webp`: the body is the image; the same result, cache, limits and
    errors as `{"image_base64": ...}` (issue #22: a 360 KB photo cannot go through a shell's argument)."""
    from hgr.loadtest.rest import uniquify

    path, fingers = next((p, n) for p, n in hand_photos if n == 5)
    photo = uniquify(path.read_bytes(), 4242)  # bytes no other test sent: not in the cache yet
    jpeg = {"content-type": "image/jpeg"}
    async with httpx.AsyncClient(base_url=secured, headers=auth(), timeout=120) as client:
        r = await client.post("/detect-fingers", params={"image_id": "raw-1"}, content=photo, headers=jpeg)
        assert r.status_code == 200, r.text
        raw = r.json()
        assert_result(raw)
        assert raw["total_fingers"] == fingers and raw["image_id"] == "raw-1" and raw["cached"] is False
        assert int(r.headers["RateLimit-Remaining"]) < int(r.headers["RateLimit-Limit"])
        # the same image as base64 is the same cache entry: one answer whichever way it came
        again = (await client.post("/detect-fingers", json={"image_base64": b64(photo)})).json()
        assert again["cached"] is True and again["hands"] == raw["hands"]
        # options in the query string, checked as the JSON body's are
        mirrored = (await client.post("/detect-fingers?mirrored=true&num_hands=1", content=photo,
                                      headers=jpeg)).json()
        assert mirrored["cached"] is False and len(mirrored["hands"]) == 1
        assert mirrored["hands"][0]["handedness"] == {"Left": "Right", "Right": "Left"}[raw["hands"][0]["handedness"]]
        png = io.BytesIO()
        Image.open(io.BytesIO(photo)).save(png, "PNG")
        as_png = await client.post("/detect-fingers", content=png.getvalue(), headers={"content-type": "image/png"})
        assert as_png.status_code == 200 and as_png.json()["total_fingers"] == fingers, as_png.text
        for query, message in (("num_hands=9", "num_hands"), ("colour=red", "colour")):
            r = await client.post(f"/detect-fingers?{query}", content=photo, headers=jpeg)
            assert r.status_code == 422 and r.json()["error"]["code"] == "bad_options", r.text
            assert message in r.json()["error"]["message"]
        for kind in ("image/gif", "application/octet-stream", "text/plain"):
            r = await client.post("/detect-fingers", content=photo, headers={"content-type": kind})
            assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type", r.text
            assert "image/jpeg" in r.json()["error"]["message"] and kind in r.json()["error"]["message"]
        r = await client.post("/detect-fingers", content=b"", headers=jpeg)
        assert r.status_code == 400 and r.json()["error"]["code"] == "empty_image"
        r = await client.post("/detect-fingers", content=b"GIF89a not a jpeg at all", headers=jpeg)
        assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_format"  # the bytes decide


async def test_raw_image_body_needs_a_key_when_auth_is_on(secured: str, photos: list[bytes]) -> None:
    async with httpx.AsyncClient(base_url=secured, timeout=60) as client:
        r = await client.post("/detect-fingers", content=photos[0], headers={"content-type": "image/jpeg"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


async def test_raw_image_over_the_size_limit_is_413(tight: str) -> None:
    big_photo = b"\xff\xd8" + bytes(100_000)  # over MAX_IMAGE_SIZE (60 kB)
    jpeg = {"content-type": "image/jpeg"}

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: cut off while it arrives
        for i in range(0, len(big_photo), 16_384):
            yield big_photo[i:i + 16_384]

    async with httpx.AsyncClient(base_url=tight, timeout=60) as client:
        declared = await client.post("/detect-fingers", content=big_photo, headers=jpeg)
        streamed = await client.post("/detect-fingers", content=chunks(), headers=jpeg)
    for r in (declared, streamed):
        assert r.status_code == 413 and r.json()["error"]["code"] == "image_too_large", r.text
        assert "60000" in r.json()["error"]["message"]
    assert "transfer-encoding" not in declared.request.headers
    assert streamed.request.headers["transfer-encoding"] == "chunked"


async def test_raw_image_bodies_are_rate_limited(hub_pool: InferencePool, photos: list[bytes]) -> None:
    jpeg = {"content-type": "image/jpeg"}
    async with (serve_hub(hub_settings(rate_limit_requests=3, rate_limit_window=60.0), hub_pool) as (url, _),
                httpx.AsyncClient(base_url=url, timeout=60) as client):
        answers = [await client.post("/detect-fingers", content=photos[1], headers=jpeg) for _ in range(5)]
    assert [r.status_code for r in answers] == [200] * 3 + [429] * 2
    assert [r.json()["cached"] for r in answers[:3]] == [False, True, True]
    assert answers[3].json()["error"]["code"] == "rate_limited" and int(answers[3].headers["Retry-After"]) >= 1
