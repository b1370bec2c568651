"""Cheap attacks on an edge, direct to its published port (issue 20, "Cheap attacks stay cheap"), against
a real `hgr edge` process: request heads over the limits (row 9); WebSocket control frames and
continuation fragments (rows 7 and 8); per-key connection caps and the Origin allowlist."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, cast

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from hgr.common.percentiles import percentiles
from hgr.edge import protocol
from hgr.loadtest.procs import sample_sum
from hgr.loadtest.ws_stream import open_stream, running_edge
from research.chaos.hostile import (
    FIRST_FRAGMENT,
    ONE_BYTE_FRAGMENT,
    ONE_HEADER,
    PING,
    close_seen,
    endless_head,
    flood,
    raw_ws,
    ws_frame,
)
from tests.support import eventually, http_get, recv_msg

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
    health: list[float] = []
    attacker = asyncio.create_task(endless_head(port, *ONE_HEADER))
    while not attacker.done():
        health.append(await _health_ms(port))
    sent, answer = await attacker
    assert answer == b"reset" or answer.startswith(b"HTTP/1.1 431 ") and b"headers_too_large" in answer, answer
    assert sent < 16 * 1024 * 1024, f"the edge read {sent} bytes of one header"
    assert health, "/health was asked while the header was sent"
    print(f"\nrow 9: header cut off after {sent / 1e6:.1f} MB sent; /health during it: n={len(health)} "
          f"{percentiles(health)} max={max(health):.1f} ms")


# --- WebSocket frames that carry no frame: pings and continuation fragments (rows 7 and 8) ---

async def _legit_results(url: str, frame: bytes, stop: asyncio.Event) -> int:
    """A well-behaved stream: one frame, wait for its answer, the next. Results until ``stop``."""
    ws, _ = await open_stream(url)
    results = 0
    try:
        while not stop.is_set():
            await ws.send(protocol.encode_frame(results, frame))
            assert (await recv_msg(ws, 120))["type"] == "result"
            results += 1
    finally:
        await ws.close()
    return results


async def _under_attack(port: int, frame: bytes, attack: Callable[[], Coroutine[Any, Any, Any]], window_s: float
                        ) -> tuple[float, float, list[float], Any]:
    """The legit stream's result rate alone, then during ``attack`` (both over ``window_s``), the /health
    latencies during the attack, and what the attack returned."""
    url = f"ws://127.0.0.1:{port}/ws"

    async def rate(during: Callable[[], Coroutine[Any, Any, Any]] | None) -> tuple[float, list[float], Any]:
        stop = asyncio.Event()
        legit = asyncio.create_task(_legit_results(url, frame, stop))
        await asyncio.sleep(0)
        start = time.monotonic()
        task = asyncio.create_task(during()) if during else None
        health: list[float] = []
        while time.monotonic() - start < window_s:
            health.append(await _health_ms(port))
        stop.set()
        results = await asyncio.wait_for(legit, 120)
        outcome = await asyncio.wait_for(task, 120) if task else None
        return results / (time.monotonic() - start), health, outcome

    alone, _, _ = await rate(None)
    attacked, health, outcome = await rate(attack)
    return alone, attacked, health, outcome


def _sample(port: int, name: str, **labels: str) -> float:
    _, body = http_get(f"http://127.0.0.1:{port}/metrics")
    return sample_sum(body.decode(), name, **labels)


def _errors(port: int, code: str) -> float:
    return _sample(port, "hand_gesture_errors_total", code=code)


async def _frame_flood_is_closed(row: str, port: int, frame: bytes, first: bytes, batch: bytes, total_frames: int,
                                 seconds: float) -> None:
    """Open a WebSocket by hand, write ``first`` then ``batch`` (10 000 frames) over and over, never
    reading, while a legit stream runs on the same edge; the flooder must be closed 1008
    (`too_many_frames`). Prints the legit stream's rate alone and during the flood, and /health."""
    before = _errors(port, "too_many_frames")

    async def attack() -> tuple[int, bool, int | None]:
        reader, writer = await raw_ws(port)
        writer.write(first)
        sent, cut_off = await flood(writer, batch, total=total_frames, per_batch=10_000, seconds=seconds)
        code = await close_seen(reader)
        writer.close()
        return sent, cut_off, code

    alone, attacked, health, (sent, cut_off, code) = await _under_attack(port, frame, attack, 4.0)
    print(f"\n{row}: legit stream {alone:.1f}/s alone, {attacked:.1f}/s during {sent} frames "
          f"({attacked / alone:.0%}); /health {percentiles(health)} max {max(health):.1f} ms; close {code}, "
          f"cut off: {cut_off}")
    # The close frame reaches a client that stops sending; one that goes on is cut off (a reset).
    assert code == 1008 or cut_off
    assert _errors(port, "too_many_frames") > before
    assert attacked > 0 and health


async def test_a_ping_flood_that_never_reads_is_closed_and_starves_nobody(port: int, frames: list[bytes]) -> None:
    """Row 7: 400 000 pings, never reading a pong: the edge held every pong (+46 MB) and a legit stream
    fell from ~85 to 6 results in 10 s. Now the flood is closed (1008, `too_many_frames`) after
    `WS_MAX_CONTROL_RATE`'s burst."""
    await _frame_flood_is_closed("row 7", port, frames[0], b"", PING * 10_000, 400_000, 30)


async def test_a_stream_of_one_byte_fragments_is_closed_and_starves_nobody(port: int, frames: list[bytes]) -> None:
    """Row 8: 1-byte continuation frames for 15 s took a legit stream from 128 to 31 results and /health
    to 4.8 s. Now the message is closed (1008, `too_many_frames`) at `WS_MAX_FRAGMENTS` frames."""
    await _frame_flood_is_closed("row 8", port, frames[0], FIRST_FRAGMENT, ONE_BYTE_FRAGMENT * 10_000, 10**9, 5)


# --- a client that never reads what the edge answers ---

@pytest.fixture(scope="module")
def unread_port(model_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    env = {"HGR_MODEL_PATH": model_path, "WORKERS": "1", "MAX_FPS": "1000", "WS_MAX_UNREAD": "8192",
           "WS_UNREAD_TIMEOUT": "0.5"}
    with ((tmp_path_factory.mktemp("log") / "edge.log").open("w") as log,
          running_edge(env, log_file=log) as (p, _)):
        yield p


async def test_a_client_that_never_reads_is_dropped_and_one_that_reads_is_not(unread_port: int,
                                                                                 frames: list[bytes]) -> None:
    """A client sending frames and never reading the answers: its output fills the edge's kernel buffer
    (WS_MAX_UNREAD), then waits; WS_UNREAD_TIMEOUT later the edge drops the connection (`not_reading`,
    close 1008 for the app). Before, only the keepalive ended it (40 s), and a close with output still
    buffered waited for the client for ever. A client that reads, with the same small buffer, is served."""
    port = unread_port
    before = _errors(port, "not_reading")
    closed_1008 = _sample(port, "hgr_websocket_closed_total", code="1008")
    # A small receive window (4 KiB): what the edge writes is stuck in its own buffers sooner.
    messages = [ws_frame(0x2, cast(bytes, protocol.encode_frame(seq, frame))) for seq, frame in enumerate(frames)]
    _, writer = await raw_ws(port, rcvbuf=4096)
    cast(asyncio.Transport, writer.transport).pause_reading()  # the client never reads
    sent, cut_off, end = 0, False, time.monotonic() + 60
    try:
        while sent < 200_000 and time.monotonic() < end:  # cut off within about a second
            writer.write(messages[sent % len(messages)])
            await writer.drain()
            sent += 1
    except (ConnectionError, OSError):
        cut_off = True
    finally:
        writer.close()
    assert cut_off, f"a client that never read was still connected after {sent} frames"
    await eventually(lambda: _errors(port, "not_reading") > before, 30, "the drop counted")
    await eventually(lambda: _sample(port, "hgr_websocket_closed_total", code="1008") > closed_1008, 30,
                     "the stream closed 1008")
    await eventually(lambda: _sample(port, "hgr_websocket_connections") == 0, 30, "no stream left open")
    ws, _ = await open_stream(f"ws://127.0.0.1:{port}/ws")
    try:
        for seq in range(20):
            await ws.send(protocol.encode_frame(seq, frames[seq % len(frames)]))
            answer = await recv_msg(ws, 120)
            assert (answer["type"], answer["seq"]) == ("result", seq)
    finally:
        await ws.close()
    assert _errors(port, "not_reading") == before + 1


# --- tenants and browsers: per-key connection caps, the Origin allowlist ---

@pytest.fixture(scope="module")
def authed_port(model_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    env = {"HGR_MODEL_PATH": model_path, "WORKERS": "1", "AUTH_ENABLED": "true",
           "API_KEYS": f"alpha:{KEY},beta:{OTHER_KEY}", "MAX_CONNECTIONS": "6", "MAX_CONNECTIONS_PER_KEY": "2",
           "WS_ALLOWED_ORIGINS": "https://app.example.com"}
    with ((tmp_path_factory.mktemp("log") / "edge.log").open("w") as log,
          running_edge(env, log_file=log) as (p, _)):
        yield p


async def _refused_with(url: str, headers: dict[str, str]) -> tuple[int | None, str]:
    """The close code and reason of a connection the edge completes and then closes at once."""
    ws = await connect(url, subprotocols=[protocol.MSGPACK], additional_headers=headers,  # type: ignore[list-item]
                       compression=None, open_timeout=30)
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), 30)
    return (info.value.rcvd.code, info.value.rcvd.reason) if info.value.rcvd else (None, "")


async def test_one_key_cannot_hold_every_connection(authed_port: int) -> None:
    """MAX_CONNECTIONS_PER_KEY=2 of MAX_CONNECTIONS=6: alpha's third stream is closed 1013
    (`too_many_connections`), beta still gets in, and alpha gets a slot back when one of its streams ends."""
    url = f"ws://127.0.0.1:{authed_port}/ws"
    alpha, beta = {"Authorization": f"Bearer {KEY}"}, {"Authorization": f"Bearer {OTHER_KEY}"}
    held = [(await open_stream(url, headers=alpha))[0] for _ in range(2)]
    try:
        code, reason = await _refused_with(url, alpha)
        assert code == 1013 and "2 streams" in reason
        other, hello = await open_stream(url, headers=beta)
        assert hello["type"] == "hello"
        await other.close()
        await held.pop().close()
        again = await eventually(lambda: open_stream(url, headers=alpha), 30, "a slot for alpha again",
                                 ignore=(ConnectionClosed,))
        held.append(again[0])
        assert again[1]["type"] == "hello"
    finally:
        for ws in held:
            await ws.close()


async def test_only_allowed_origins_open_streams(authed_port: int) -> None:
    url = f"ws://127.0.0.1:{authed_port}/ws"
    auth = {"Authorization": f"Bearer {KEY}"}
    code, reason = await _refused_with(url, {**auth, "Origin": "https://evil.example"})
    assert code == 1008 and "origin" in reason.lower()
    for origin in (None, "https://app.example.com", f"http://127.0.0.1:{authed_port}", "http://127.0.0.1"):
        ws, hello = await open_stream(url, headers={**auth, **({"Origin": origin} if origin else {})})
        assert hello["type"] == "hello", origin
        await ws.close()
    assert _errors(authed_port, "origin_not_allowed") == 1
