"""Hostile traffic: issue 13's repros, one crafted action per call, in turn (the chaos run); and issue 20's
cheap floods (rows 6-9), each a function the abuse benchmark (research/abuse.py) and the scenario tests
(tests/test_scenario_edge_abuse.py, tests/test_scenario_fleet_claims.py) run."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

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


# --- issue 20's floods: frames and bytes that carry no work, sent until the server cuts the sender off ---

def ws_frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """One client WebSocket frame, masked (with a zero key: the payload goes as is)."""
    n = len(payload)
    size = (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big") if n < 65536
            else bytes([0x80 | 127]) + n.to_bytes(8, "big"))
    return bytes([(0x80 if fin else 0) | opcode]) + size + b"\0\0\0\0" + payload


PING = ws_frame(0x9)  # row 7: a ping whose pong is never read
FIRST_FRAGMENT = ws_frame(0x2, b"\x00", fin=False)  # row 8: a binary message's first frame...
ONE_BYTE_FRAGMENT = ws_frame(0x0, b"\x00", fin=False)  # ...and its 1-byte continuations, never the last


async def raw_ws(port: int, host: str = "127.0.0.1", timeout_s: float = 30, *, rcvbuf: int | None = None
                 ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket on an edge opened by hand (so the client can write any frame); the 101 is read, nothing
    after it. ConnectionError when the server answers anything else. ``rcvbuf``: the socket's receive
    buffer (SO_RCVBUF, set before connecting: it bounds the window the server may fill)."""
    sock = socket.socket()
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), timeout_s)
    except BaseException:
        sock.close()
        raise
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16))
    writer.write(b"GET /ws HTTP/1.1\r\nHost: edge\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: hgr.msgpack.v1\r\nSec-WebSocket-Key: "
                 + key + b"\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
    if not head.startswith(b"HTTP/1.1 101 "):
        writer.close()
        raise ConnectionError(f"no WebSocket: {head[:100]!r}")
    return reader, writer


async def flood(writer: asyncio.StreamWriter, batch: bytes, *, total: int, per_batch: int,
                seconds: float) -> tuple[int, bool]:
    """Write ``batch`` (``per_batch`` units: frames, or bytes) as fast as the server takes it, never reading,
    until ``total`` units are sent, ``seconds`` have passed or the server cuts the connection off; the units
    sent and whether it was cut off."""
    sent, end = 0, time.monotonic() + seconds
    try:
        while sent < total and time.monotonic() < end:
            writer.write(batch)
            await writer.drain()
            sent += per_batch
    except (ConnectionError, OSError):
        return sent, True
    return sent, False


async def close_seen(reader: asyncio.StreamReader, timeout_s: float = 30) -> int | None:
    """Read what the server sent (the flooder never did) up to the end, for at most ``timeout_s``; the
    close frame's code, if any."""
    data, end = b"", time.monotonic() + timeout_s
    try:
        while chunk := await asyncio.wait_for(reader.read(1 << 20), max(0.0, end - time.monotonic())):
            data += chunk
    except (ConnectionError, OSError, TimeoutError):
        pass
    code, at = None, 0
    while at + 2 <= len(data):  # server frames are unmasked
        opcode, length, at = data[at] & 0x0F, data[at + 1] & 0x7F, at + 2
        if length == 126:
            length, at = int.from_bytes(data[at:at + 2], "big"), at + 2
        elif length == 127:
            length, at = int.from_bytes(data[at:at + 8], "big"), at + 8
        if opcode == 0x8 and length >= 2 and at + 2 <= len(data):
            code = int.from_bytes(data[at:at + 2], "big")
        at += length
    return code


# Row 9: a request head that never ends, as one header or as a million.
ONE_HEADER = (b"GET /health HTTP/1.1\r\nHost: edge\r\nX-Big: ", b"a" * 65536, 80 * 1024 * 1024)
MANY_HEADERS = (b"GET /health HTTP/1.1\r\nHost: edge\r\n", b"X-H: v\r\n" * 8192, 1_000_000 * len(b"X-H: v\r\n"))


async def endless_head(port: int, start: bytes, chunk: bytes, limit: int, *, seconds: float = 600,
                       host: str = "127.0.0.1", timeout_s: float = 30) -> tuple[int, bytes]:
    """``start``, then ``chunk`` over and over, as fast as the server reads, until ``limit`` bytes, ``seconds``
    or the server cuts the sender off; then the server's answer: (bytes sent, its first 4 KiB, or ``b"reset"``
    when the connection was reset)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    writer.write(start)
    sent, _ = await flood(writer, chunk, total=limit, per_batch=len(chunk), seconds=seconds)
    try:
        answer = await asyncio.wait_for(reader.read(4096), timeout_s)
    except (ConnectionError, OSError):
        answer = b"reset"  # the server cut off a client that went on sending after its answer
    except TimeoutError:
        answer = b""
    writer.close()
    return sent, answer


def _varint(n: int) -> bytes:
    """MQTT's remaining length: 7 bits a byte, the high bit saying more follows."""
    out = bytearray()
    while True:
        n, byte = n >> 7, n & 0x7F
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _mqtt_string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


class RawPublisher:
    """An MQTT 3.1.1 client that only publishes, at QoS 1, each packet built by hand and written as is: a
    flood costs its sender little more than the bytes (paho spends tens of µs a message, too slow for
    the issue's 50 000 made-up edges in 1.9 s). The broker's PUBACKs are read and counted."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.published = self.acked = 0
        self._acks = asyncio.Event()
        self._reading = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, host: str, port: int, client_id: str, timeout_s: float = 30) -> RawPublisher:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        body = _mqtt_string("MQTT") + bytes([4, 0x02]) + (60).to_bytes(2, "big") + _mqtt_string(client_id)
        writer.write(bytes([0x10]) + _varint(len(body)) + body)  # CONNECT: MQTT 3.1.1, clean session
        connack = await asyncio.wait_for(reader.readexactly(4), timeout_s)
        if connack[0] != 0x20 or connack[3] != 0:
            writer.close()
            raise ConnectionError(f"the broker refused the connection: {connack!r}")
        return cls(reader, writer)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """QoS 0 or 1 (a QoS 1 packet id may repeat: the broker keeps no state of incoming QoS 1 ids)."""
        self.published += 1
        packet_id = (self.published % 65535 + 1).to_bytes(2, "big") if qos else b""
        body = _mqtt_string(topic) + packet_id + payload
        self.writer.write(bytes([0x30 | qos << 1]) + _varint(len(body)) + body)

    async def drain(self) -> None:
        await self.writer.drain()

    async def _read(self) -> None:
        buffered = b""
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
            while chunk := await self.reader.read(1 << 16):
                buffered += chunk
                while len(buffered) >= 2 and len(buffered) >= 2 + buffered[1]:  # PUBACKs: 2 bytes of body
                    if buffered[0] >> 4 == 4:
                        self.acked += 1
                    buffered = buffered[2 + buffered[1]:]
                self._acks.set()

    async def wait_acked(self, count: int, timeout_s: float) -> bool:
        """Until ``count`` PUBACKs arrived (True) or ``timeout_s`` passed (False)."""
        end = time.monotonic() + timeout_s
        while self.acked < count and (left := end - time.monotonic()) > 0 and not self._reading.done():
            self._acks.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acks.wait(), left)
        return self.acked >= count

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            self.writer.write(bytes([0xE0, 0]))  # DISCONNECT
            await self.writer.drain()
        self.writer.close()
        self._reading.cancel()
        await asyncio.gather(self._reading, return_exceptions=True)


class Publisher(Protocol):
    """What ``fake_edge`` publishes through: a ``RawPublisher`` (the benchmark's rate) or a paho client."""

    def publish(self, topic: str, payload: bytes, qos: int = ...) -> object: ...


def fake_edge(publisher: Publisher, prefix: str, edge_id: str, *, qos: int = 1) -> None:
    """Row 6: on a broker without ACL anyone may publish as any edge: a birth and a metrics message of
    a made-up ``edge_id``."""
    topic = f"{prefix}/edges/{edge_id}"
    publisher.publish(f"{topic}/status", b'{"status": "online", "session": "f", "birth_seq": 1}', qos=qos)
    publisher.publish(f"{topic}/metrics", b'{"session": "f", "seq": 1}', qos=qos)
