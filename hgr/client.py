"""A Python client for hgr: the hub's REST API (sync ``Client``, async ``AsyncClient``) and an edge's
WebSocket stream (``stream``).

    from hgr.client import Client
    with Client("http://127.0.0.1:8000", api_key="…") as hgr:
        result = hgr.detect("hand.jpg")            # a path, bytes, a numpy image (RGB) or an http(s) URL
        print(result["total_fingers"], [h["gesture"] for h in result["hands"]])

Results are the service's own declared shapes (``hgr.common.contracts``). A 429 or 503 is retried with
exponential backoff, waiting at least what the answer's ``Retry-After`` says; any other error, or the last
retry's, raises ``HgrClientError`` with the catalogue's ``code`` (docs/api.md). docs/client.md has more.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeAlias

import httpx
import numpy as np

from hgr.common.contracts import DetectionResult, OptionsDoc, ResultMessage
from hgr.edge import protocol

Image: TypeAlias = "str | Path | bytes | np.ndarray[Any, Any]"
RETRY_STATUSES = (429, 503)


class HgrClientError(Exception):
    """An answer that is not a result: ``status`` (HTTP, or the WebSocket close code), ``code`` (the error
    catalogue's), ``message``, and ``retry_after`` seconds when the service said."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


@dataclass(frozen=True)
class Retry:
    """How 429/503 are retried: ``attempts`` in all, waits of ``base_s`` × 2ⁿ (with jitter) up to ``max_s``,
    never shorter than the answer's Retry-After."""

    attempts: int = 4
    base_s: float = 0.25
    max_s: float = 10.0

    def wait_s(self, attempt: int, retry_after: float | None) -> float:
        backoff = min(self.max_s, self.base_s * 2.0 ** attempt) * random.uniform(0.5, 1.0)
        return max(backoff, min(retry_after or 0.0, self.max_s * 6))


def image_bytes(image: Image) -> bytes:
    """What to send for ``image``: a file's or a URL's bytes, bytes as they are, a numpy array (RGB or
    grey, uint8) as JPEG."""
    if isinstance(image, bytes | bytearray | memoryview):
        return bytes(image)
    if isinstance(image, np.ndarray):
        return _jpeg(image)
    text = str(image)
    if text.startswith(("http://", "https://")):
        response = httpx.get(text, timeout=30, follow_redirects=True)
        response.raise_for_status()
        return response.content
    return Path(text).expanduser().read_bytes()


def _jpeg(array: np.ndarray[Any, Any]) -> bytes:
    import simplejpeg
    if array.ndim == 2:
        array = array[:, :, None]
    colorspace = "GRAY" if array.shape[2] == 1 else "RGB"
    data: bytes = simplejpeg.encode_jpeg(np.ascontiguousarray(array, dtype=np.uint8), quality=90,
                                         colorspace=colorspace)
    return data


def _body(image: bytes, options: OptionsDoc | None, image_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"image_base64": base64.b64encode(image).decode("ascii")}
    if options:
        body["options"] = dict(options)
    if image_id is not None:
        body["image_id"] = image_id
    return body


def _error(response: httpx.Response) -> HgrClientError:
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text[:200]
    header = response.headers.get("Retry-After")
    retry_after = float(header) if header and header.replace(".", "", 1).isdigit() else None
    return HgrClientError(response.status_code, code, message, retry_after)


def _headers(api_key: str | None) -> dict[str, str]:
    return {"X-API-Key": api_key} if api_key else {}


class Client:
    """The hub's REST API, synchronous. Use as a context manager, or call ``close()``."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None,
                 timeout: float = 60.0, retry: Retry = Retry()) -> None:
        self.retry = retry
        self.http = httpx.Client(base_url=base_url, headers=_headers(api_key), timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _post(self, path: str, **kwargs: Any) -> Any:
        for attempt in range(self.retry.attempts):
            response = self.http.post(path, **kwargs)
            if response.status_code == 200:
                return response.json()
            error = _error(response)
            if response.status_code not in RETRY_STATUSES or attempt == self.retry.attempts - 1:
                raise error
            time.sleep(self.retry.wait_s(attempt, error.retry_after))
        raise AssertionError("unreachable")

    def detect(self, image: Image, *, options: OptionsDoc | None = None) -> DetectionResult:
        """One image → its result (``POST /detect-fingers``)."""
        result: DetectionResult = self._post("/detect-fingers", json=_body(image_bytes(image), options))
        return result

    def detect_batch(self, images: Sequence[Image], *, options: OptionsDoc | None = None) -> list[dict[str, Any]]:
        """Several images in one request (``POST /detect-fingers-batch``): one entry per image, in order, a
        result or ``{"image_id", "error"}`` for that image alone."""
        body: dict[str, Any] = {"images": [_body(image_bytes(im), None, str(i)) for i, im in enumerate(images)]}
        if options:
            body["options"] = dict(options)
        results: list[dict[str, Any]] = self._post("/detect-fingers-batch", json=body)["results"]
        return results

    def upload(self, paths: Sequence[str | Path], *, options: OptionsDoc | None = None) -> list[dict[str, Any]]:
        """Files as a multipart form (``POST /detect-fingers-upload``), entries as for ``detect_batch``."""
        files = [("file", (Path(p).name, Path(p).read_bytes())) for p in paths]
        data = {"options": json.dumps(dict(options))} if options else None
        results: list[dict[str, Any]] = self._post("/detect-fingers-upload", files=files, data=data)["results"]
        return results


class AsyncClient:
    """The hub's REST API for asyncio. Use with ``async with``, or call ``await close()``."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None,
                 timeout: float = 60.0, retry: Retry = Retry()) -> None:
        self.retry = retry
        self.http = httpx.AsyncClient(base_url=base_url, headers=_headers(api_key), timeout=timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    async def _post(self, path: str, **kwargs: Any) -> Any:
        for attempt in range(self.retry.attempts):
            response = await self.http.post(path, **kwargs)
            if response.status_code == 200:
                return response.json()
            error = _error(response)
            if response.status_code not in RETRY_STATUSES or attempt == self.retry.attempts - 1:
                raise error
            await asyncio.sleep(self.retry.wait_s(attempt, error.retry_after))
        raise AssertionError("unreachable")

    async def detect(self, image: Image, *, options: OptionsDoc | None = None) -> DetectionResult:
        data = await asyncio.to_thread(image_bytes, image)
        result: DetectionResult = await self._post("/detect-fingers", json=_body(data, options))
        return result

    async def detect_batch(self, images: Sequence[Image], *,
                           options: OptionsDoc | None = None) -> list[dict[str, Any]]:
        data = [await asyncio.to_thread(image_bytes, im) for im in images]
        body: dict[str, Any] = {"images": [_body(d, None, str(i)) for i, d in enumerate(data)]}
        if options:
            body["options"] = dict(options)
        results: list[dict[str, Any]] = (await self._post("/detect-fingers-batch", json=body))["results"]
        return results

    async def upload(self, paths: Sequence[str | Path], *,
                     options: OptionsDoc | None = None) -> list[dict[str, Any]]:
        files = [("file", (Path(p).name, Path(p).read_bytes())) for p in paths]
        data = {"options": json.dumps(dict(options))} if options else None
        results: list[dict[str, Any]] = (await self._post("/detect-fingers-upload", files=files,
                                                          data=data))["results"]
        return results


async def _frames(source: Iterable[Image] | AsyncIterable[Image] | str | int) -> AsyncIterator[bytes]:
    """Frames as JPEG bytes from an iterable of images, or from a video file, URL or camera index read
    with OpenCV (the newest frame each time one is asked for)."""
    if isinstance(source, AsyncIterable):
        async for image in source:
            yield await asyncio.to_thread(image_bytes, image)
        return
    if isinstance(source, str | int):
        import cv2
        capture = cv2.VideoCapture(source)
        try:
            while True:
                ok, bgr = await asyncio.to_thread(capture.read)
                if not ok:
                    return
                yield _jpeg(bgr[:, :, ::-1])
        finally:
            capture.release()
        return
    for image in source:
        yield await asyncio.to_thread(image_bytes, image)


async def stream(url: str, source: Iterable[Image] | AsyncIterable[Image] | str | int, *,
                 api_key: str | None = None, options: OptionsDoc | None = None) -> AsyncIterator[ResultMessage]:
    """Stream ``source`` to an edge (``ws://host:8001/ws``) and yield each frame's result.

    Pacing as the protocol asks (docs/protocol.md, "Scheduling"): one frame in flight, the next sent when
    the previous result arrives, so the edge always runs the newest frame and nothing queues. An ``error``
    message for a frame raises ``HgrClientError``; so does a close with an error code."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async with connect(url, subprotocols=[protocol.MSGPACK],  # type: ignore[list-item]
                       additional_headers=_headers(api_key) or None, compression=None, max_size=None) as ws:
        try:
            hello = protocol.decode_server_message(await ws.recv())
            if hello.get("type") != "hello":
                raise HgrClientError(0, "bad_hello", f"expected hello, got {hello.get('type')}")
            seq = 0
            async for frame in _frames(source):
                seq += 1
                await ws.send(protocol.encode_frame(seq, frame, ts=time.time() * 1000,
                                                    opts=options if seq == 1 else None))
                message = protocol.decode_server_message(await ws.recv())
                if message.get("type") == "error":
                    raise HgrClientError(0, str(message.get("code")), str(message.get("message")))
                result: ResultMessage = message  # type: ignore[assignment]
                yield result
        except ConnectionClosed as closed:
            frame_ = closed.rcvd
            if frame_ is not None and frame_.code not in (1000, 1001):
                raise HgrClientError(frame_.code, "closed", frame_.reason) from None
