"""Edge auth and per-connection limits, and fairness under flooding, on a one-worker edge in a subprocess."""

from __future__ import annotations

import asyncio
import signal
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from hgr.edge import protocol
from hgr.loadtest.procs import sample_sum
from hgr.loadtest.ws_stream import open_stream, running_edge
from tests.support import alive, children, eventually, http_get, recv_msg

pytestmark = pytest.mark.asyncio(loop_scope="module")

KEY, OTHER_KEY = "k-alpha-0123456789", "k-beta-9876543210"
MAX_CONNECTIONS = 4
IDLE_TIMEOUT = 3


@pytest.fixture(scope="module")
def url(model_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with ((tmp_path_factory.mktemp("log") / "edge.log").open("w") as log,
          running_edge({"HGR_MODEL_PATH": model_path, "WORKERS": "1", "AUTH_ENABLED": "true",
                        "API_KEYS": f"alpha:{KEY},beta:{OTHER_KEY}", "MAX_CONNECTIONS": str(MAX_CONNECTIONS),
                        "MAX_FPS": "1000", "IDLE_TIMEOUT": str(IDLE_TIMEOUT)}, log_file=log) as (port, _)):
        yield f"ws://127.0.0.1:{port}/ws"


def _frames_received(port: int) -> float:
    """The edge's ``hgr_frames_received_total`` (all encodings), read from its /metrics."""
    _, body = http_get(f"http://127.0.0.1:{port}/metrics")
    return sample_sum(body.decode(), "hgr_frames_received_total")


async def _close_code(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(ws.recv(), 30)
    return info.value.rcvd.code if info.value.rcvd else None


async def _works(ws: ClientConnection, frame: bytes) -> None:
    await ws.send(protocol.encode_frame(1, frame))
    assert (await recv_msg(ws))["type"] == "result"
    await ws.close()


async def test_key_in_authorization_header(url: str, frames: list[bytes]) -> None:
    ws, hello = await open_stream(url, headers={"Authorization": f"Bearer {KEY}"})
    assert hello["type"] == "hello"
    await _works(ws, frames[0])


async def test_key_in_query_string(url: str, frames: list[bytes]) -> None:
    ws, _ = await open_stream(url + "?token=" + urllib.parse.quote(OTHER_KEY))
    await _works(ws, frames[0])


async def test_key_in_subprotocol_list(url: str, frames: list[bytes]) -> None:
    ws, _ = await open_stream(url, subprotocols=[f"hgr.key.{KEY}", protocol.JSON])
    assert ws.subprotocol == protocol.JSON, "the encoding is answered, never the key entry"
    await ws.send(protocol.encode_frame(1, frames[0], encoding=protocol.JSON))
    assert (await recv_msg(ws))["type"] == "result"
    await ws.close()


@pytest.mark.parametrize("how", ["missing", "header", "query", "subprotocol"])
async def test_wrong_or_missing_key_closes_1008(url: str, how: str) -> None:
    options: dict[str, dict[str, Any]] = {"missing": {}, "header": {"headers": {"Authorization": "Bearer nope"}},
                                          "subprotocol": {"subprotocols": ["hgr.key.nope", protocol.MSGPACK]}}
    kwargs = options.get(how, {})
    target = url + "?token=nope" if how == "query" else url
    from websockets.asyncio.client import connect

    async with connect(target, additional_headers=kwargs.get("headers"), compression=None,
                       subprotocols=kwargs.get("subprotocols")) as ws:
        assert await _close_code(ws) == 1008


async def test_connection_limit_closes_1013(url: str) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    held = [(await open_stream(url, headers=auth))[0] for _ in range(MAX_CONNECTIONS)]
    from websockets.asyncio.client import connect

    async with connect(url, additional_headers=auth, compression=None) as extra:
        assert await _close_code(extra) == 1013
    await held[0].close()
    await held[0].wait_closed()
    # a slot is free again (the edge may take a moment to see the close)
    tried = []

    async def a_slot_is_free() -> bool:
        ws, hello = await open_stream(url, headers=auth)
        tried.append(ws)
        return hello.get("type") == "hello"

    await eventually(a_slot_is_free, 10, "a free slot after a stream closed")
    for other in held[1:] + tried:
        await other.close()


async def test_idle_stream_is_closed(url: str) -> None:
    ws, _ = await open_stream(url, headers={"Authorization": f"Bearer {KEY}"})
    assert await _close_code(ws) == 1000  # after IDLE_TIMEOUT seconds without a message


async def test_flooders_do_not_starve_a_well_behaved_stream(url: str, frames: list[bytes]) -> None:
    """One worker, two flooding streams and one that sends a frame only after the previous answer:
    the polite stream gets every frame answered, none dropped, and between its frame and its answer
    each flooder gets at most about one frame through (the one already in inference)."""
    auth = {"Authorization": f"Bearer {KEY}"}
    events: list[tuple[str, int]] = []  # arrival order across all three sockets
    stop = asyncio.Event()

    async def flooder(name: str) -> tuple[int, int, int]:
        ws, _ = await open_stream(url, headers=auth)
        sent, results, dropped = 0, 0, 0

        async def receive() -> None:
            nonlocal results, dropped
            async for raw in ws:
                msg = protocol.decode_server_message(raw)
                events.append((name, msg["seq"]))
                results += 1
                dropped += msg["dropped"]
                if stop.is_set() and msg["seq"] == sent - 1:
                    return

        receiver = asyncio.create_task(receive())
        while not stop.is_set():
            await ws.send(protocol.encode_frame(sent, frames[sent % len(frames)]))
            sent += 1
            await asyncio.sleep(0.002)
        await asyncio.wait_for(receiver, 120)
        await ws.close()
        return sent, results, dropped

    async def polite() -> list[dict[str, Any]]:
        ws, _ = await open_stream(url, headers=auth)
        answers = []
        for seq in range(15):
            events.append(("polite-send", seq))
            await ws.send(protocol.encode_frame(seq, frames[seq % len(frames)]))
            answers.append(await recv_msg(ws, 120))
            events.append(("polite", seq))
        await ws.close()
        return answers

    flooders = [asyncio.create_task(flooder(f"flood{i}")) for i in range(2)]
    await eventually(lambda: {name for name, _ in events} >= {"flood0", "flood1"}, 60, "both flooders answered")
    answers = await polite()
    stop.set()
    floods = await asyncio.gather(*flooders)

    assert [m["type"] for m in answers] == ["result"] * 15 and [m["dropped"] for m in answers] == [0] * 15
    for sent, results, dropped in floods:
        assert dropped > 0 and results + dropped == sent, "flooders are answered or counted, no backlog"
    # between each polite send and its answer, count the flooders' answers
    between: list[int] = []
    counting: int | None = None
    for name, _ in events:
        if name == "polite-send":
            counting = 0
        elif name == "polite":
            assert counting is not None  # a polite answer follows its send
            between.append(counting)
            counting = None
        elif counting is not None:
            counting += 1
    assert len(between) == 15
    # Fair share with one worker: each flooder has at most one frame ahead of the polite one (2 in
    # total); the socket reads of three connections may reorder by one more each way.
    assert sum(between) <= 15 * 3, between


async def test_sigterm_answers_in_flight_then_closes_1001_and_leaves_no_process(
        model_path: str, frames: list[bytes], tmp_path: Path) -> None:
    with ((tmp_path / "edge.log").open("w") as log,
          running_edge({"HGR_MODEL_PATH": model_path, "WORKERS": "1"}, log_file=log) as (port, proc)):
        child_pids = children(proc.pid)
        assert child_pids, "the worker process is a child of the edge"
        ws, _ = await open_stream(f"ws://127.0.0.1:{port}/ws")
        await ws.send(protocol.encode_frame(1, frames[0]))
        await eventually(lambda: _frames_received(port) >= 1, 30, "the frame at the edge")
        proc.terminate()
        answers = []
        with pytest.raises(ConnectionClosed) as info:
            while True:
                answers.append(protocol.decode_server_message(await asyncio.wait_for(ws.recv(), 60)))
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        assert [m["seq"] for m in answers] == [1] and answers[0]["type"] == "result"
        # uvicorn re-raises the captured SIGTERM after its graceful shutdown
        assert await asyncio.to_thread(proc.wait, 60) in (0, -signal.SIGTERM)
    assert "Traceback" not in (tmp_path / "edge.log").read_text()
    for pid in child_pids:
        assert not alive(pid)
