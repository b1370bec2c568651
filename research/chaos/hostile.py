"""Hostile traffic: issue 13's repros, one crafted action per call, in turn."""

from __future__ import annotations

import asyncio
import base64
import itertools
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import cv2
import httpx
import numpy as np

from hgr.edge import protocol
from hgr.loadtest.ws_stream import open_stream
from research.chaos.record import Run
from research.chaos.stack import Stack


def _png(width: int, height: int) -> bytes:
    _, png = cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))
    return png.tobytes()


WIDE_PNG = _png(32_767, 8)


def status(r: httpx.Response) -> str:
    try:
        return f"{r.status_code} {r.json()['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return str(r.status_code)


async def bomb(size: int) -> AsyncIterator[bytes]:
    """Exactly ``size`` (≥ 4) bytes of ``[[],[],…,[]]``: millions of empty lists, the issue's hostile body."""
    chunk = b"[]," * 21_000
    yield b"["
    left = size - 4
    while left >= len(chunk):
        yield chunk
        left -= len(chunk)
    yield b"[]," * (left // 3) + b" " * (left % 3) + b"[]]"


async def one_string(size: int) -> AsyncIterator[bytes]:
    """Exactly ``size`` bytes of a well-formed batch whose one image is a ``size``-byte base64 string: read in
    full and parsed (the costliest body the JSON limits let through)."""
    head, tail = b'{"images": [{"image_base64": "', b'"}]}'
    left = size - len(head) - len(tail)
    yield head
    while left > 0:
        piece = min(left, 1 << 20)
        yield b"A" * piece
        left -= piece
    yield tail


class Hostile:
    """One crafted action per call, in turn; each returns what the server answered."""

    def __init__(self, stack: Stack, photo: bytes, bomb_bytes: int = 8 * 1024 * 1024) -> None:
        self.stack, self.photo, self.bomb_bytes = stack, photo, bomb_bytes
        self.held: list[socket.socket] = []  # slow-header sockets, closed by the server's HEADER_TIMEOUT
        self.actions: list[tuple[str, Callable[[httpx.AsyncClient], Awaitable[str]]]] = [
            ("wide_png", self.wide_png), ("json_bomb", self.json_bomb), ("surrogate", self.surrogate),
            ("cut_jpeg", self.cut_jpeg), ("ws_nested_nan", self.ws_nested_nan), ("ws_wide_png", self.ws_wide_png),
            ("slow_headers", self.slow_headers), ("wrong_type", self.wrong_type), ("get_post_route", self.get_post)]
        self._turn = itertools.cycle(self.actions)

    async def next(self, client: httpx.AsyncClient) -> tuple[str, str]:
        name, action = next(self._turn)
        try:
            return name, await action(client)
        except httpx.HTTPError as exc:
            return name, f"unreachable {type(exc).__name__}"
        except (OSError, TimeoutError) as exc:
            return name, f"unreachable {type(exc).__name__}"

    async def wide_png(self, client: httpx.AsyncClient) -> str:
        return status(await client.post(self.stack.hub_url + "/detect-fingers",
                                         json={"image_base64": base64.b64encode(WIDE_PNG).decode()}))

    async def json_bomb(self, client: httpx.AsyncClient) -> str:
        return status(await client.post(self.stack.hub_url + "/detect-fingers-batch", content=bomb(self.bomb_bytes),
                                         headers={"content-type": "application/json"}))

    async def surrogate(self, client: httpx.AsyncClient) -> str:
        body = f'{{"image_base64": "{base64.b64encode(self.photo).decode()}", "image_id": "\\ud800"}}'
        return status(await client.post(self.stack.hub_url + "/detect-fingers", content=body.encode(),
                                         headers={"content-type": "application/json"}))

    async def cut_jpeg(self, client: httpx.AsyncClient) -> str:
        cut = self.photo[: len(self.photo) // 2] + b"\xff\xd9"
        return status(await client.post(self.stack.hub_url + "/detect-fingers",
                                         json={"image_base64": base64.b64encode(cut).decode()}))

    async def wrong_type(self, client: httpx.AsyncClient) -> str:
        return status(await client.post(self.stack.hub_url + "/detect-fingers", content=b'{"image_base64": ""}',
                                         headers={"content-type": "text/plain"}))

    async def get_post(self, client: httpx.AsyncClient) -> str:
        return status(await client.get(self.stack.hub_url + "/detect-fingers-batch"))

    async def _ws(self, subprotocol: str, messages: list[bytes | str]) -> str:
        ws, _ = await open_stream(self.stack.edge_url.replace("http", "ws") + "/ws", subprotocols=[subprotocol])
        try:
            codes = []
            for message in messages:
                await ws.send(message)
                answer = protocol.decode_server_message(await asyncio.wait_for(ws.recv(), 30))
                codes.append(str(answer.get("code", answer["type"])))
            return "ws " + ",".join(codes)
        finally:
            await ws.close()

    async def ws_nested_nan(self, client: httpx.AsyncClient) -> str:
        return await self._ws(protocol.JSON, ["[" * 1500, '{"type": "frame", "seq": 1, "ts": NaN, "image": ""}'])

    async def ws_wide_png(self, client: httpx.AsyncClient) -> str:
        return await self._ws(protocol.MSGPACK, [WIDE_PNG])

    async def slow_headers(self, client: httpx.AsyncClient) -> str:
        sock = socket.create_connection(("127.0.0.1", self.stack.hub_port), timeout=2)
        sock.sendall(b"POST /detect-fingers HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        self.held = [s for s in self.held if s.fileno() != -1][-50:] + [sock]
        return "held"

    def close(self) -> None:
        for sock in self.held:
            sock.close()


async def hostile_client(hostile: Hostile, run: Run, stop: asyncio.Event, interval_s: float = 1.0) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        while not stop.is_set():
            started = time.monotonic()
            t = run.now()
            name, outcome = await hostile.next(client)
            run.hostile.append((t, name, outcome))
            await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))
