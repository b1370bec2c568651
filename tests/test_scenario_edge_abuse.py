"""Cheap attacks on an edge, direct to its published port (issue 20, "Cheap attacks stay cheap"), against
a real `hgr edge` process: request heads over the limits (row 9)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hgr.common.percentiles import percentiles
from hgr.loadtest.ws_stream import running_edge

pytestmark = pytest.mark.asyncio(loop_scope="module")

KEY, OTHER_KEY = "k-abuse-alpha-0123456789", "k-abuse-beta-9876543210"


@pytest.fixture(scope="module")
def port(model_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with ((tmp_path_factory.mktemp("log") / "edge.log").open("w") as log,
          running_edge({"HGR_MODEL_PATH": model_path, "WORKERS": "1", "MAX_FPS": "1000"}, log_file=log) as (p, _)):
        yield p


async def _exchange(port: int, head: bytes, *, closes: bool = False) -> tuple[int, dict[str, Any]]:
    """Send ``head`` (a request without its final blank line, which is added) on a fresh connection; the
    status and the JSON body ({} for another type). ``closes``: check that the server then closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b"\r\n")
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 30)
        headers: dict[str, str] = {}
        while (line := await asyncio.wait_for(reader.readline(), 30)) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 30)
        if closes:
            assert headers.get("connection") == "close" and await asyncio.wait_for(reader.read(1), 30) == b""
        return int(status_line.split()[1]), json.loads(body) if "json" in headers["content-type"] else {}
    finally:
        writer.close()


async def _health_ms(port: int) -> float:
    start = time.perf_counter()
    status, body = await _exchange(port, b"GET /health HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n")
    assert status == 200 and body["status"] == "ok"
    return (time.perf_counter() - start) * 1000


async def test_an_80_kb_header_and_1000_headers_are_431(port: int) -> None:
    """Row 9: both were answered 200 (an 80 MB header and a million headers too)."""
    ok = await _exchange(port, b"GET /health HTTP/1.1\r\nHost: edge\r\nX-Fine: " + b"a" * 8000 + b"\r\n"
                         + b"".join(b"X-H%d: v\r\n" % i for i in range(90)))
    assert ok[0] == 200  # a large but normal head is served
    # a body is not part of the head, even when it arrives in the same reads as the headers
    with_body = await _exchange(port, b"POST /health HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 1048576\r\n\r\n" + b"1" * (1048576 - 2))
    assert with_body[0] == 405, with_body
    big = await _exchange(port, b"GET /health HTTP/1.1\r\nHost: edge\r\nX-Big: " + b"a" * 80_000 + b"\r\n",
                          closes=True)
    many = await _exchange(port, b"GET /health HTTP/1.1\r\nHost: edge\r\n"
                           + b"".join(b"X-H%d: v\r\n" % i for i in range(1000)), closes=True)
    for status, body in (big, many):
        assert (status, body["error"]["code"]) == (431, "headers_too_large")


async def test_a_header_that_never_ends_is_cut_off_and_health_is_served_meanwhile(port: int) -> None:
    """An 80 MB header, sent as fast as the edge reads: the edge stops reading after about
    MAX_HEADER_BYTES and one read (what the kernel buffers besides is all the client gets rid of)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    chunk = b"a" * 65536
    sent, answer = 0, b""
    health: list[float] = []

    async def attack() -> None:
        nonlocal sent, answer
        writer.write(b"GET /health HTTP/1.1\r\nHost: edge\r\nX-Big: ")
        try:
            while sent < 80 * 1024 * 1024:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        except (ConnectionError, OSError):
            pass
        try:
            answer = await asyncio.wait_for(reader.read(4096), 30)
        except (ConnectionError, OSError):
            answer = b"reset"  # the edge cut off a client that went on sending after its 431

    attacker = asyncio.create_task(attack())
    while not attacker.done():
        health.append(await _health_ms(port))
    await attacker
    writer.close()
    assert answer == b"reset" or answer.startswith(b"HTTP/1.1 431 ") and b"headers_too_large" in answer, answer
    assert sent < 16 * 1024 * 1024, f"the edge read {sent} bytes of one header"
    assert health, "/health was asked while the header was sent"
    print(f"\nrow 9: header cut off after {sent / 1e6:.1f} MB sent; /health during it: n={len(health)} "
          f"{percentiles(health)} max={max(health):.1f} ms")
