"""Named WebSocket streams (docs/protocol.md "Named streams"): ?camera= or opts.camera, the name rule,
uniqueness on the edge (live streams and configured cameras), and where the name goes: results, the fleet
reporter's stream id, the hub's stream throttle, bounded metric series."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from websockets.exceptions import ConnectionClosed

from hgr.common import metrics
from hgr.common.config import load_settings
from hgr.common.inference.pool import InferencePool
from hgr.edge import protocol
from hgr.edge.app import EdgeNode
from hgr.loadtest.ws_stream import open_stream
from tests.support import Recorder, eventually, recv_msg, serve_edge

pytestmark = pytest.mark.asyncio(loop_scope="module")


Serve = Callable[..., Awaitable[tuple[EdgeNode, str, Recorder]]]


@pytest_asyncio.fixture(loop_scope="module")
async def serve(edge_pool: InferencePool) -> AsyncIterator[Serve]:
    async with contextlib.AsyncExitStack() as running:
        async def start(**overrides: Any) -> tuple[EdgeNode, str, Recorder]:
            settings = load_settings(environ={}, env_file=None, max_fps=1000.0, **overrides)
            node, url = await running.enter_async_context(serve_edge(settings, edge_pool))
            node.reporter = recorder = Recorder()
            return node, url, recorder
        yield start


def series(name: str) -> bool:
    return f'camera="{name}"'.encode() in metrics.render()[0]


async def closed_with(ws: Any) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(10):
            await recv_msg(ws, 30)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def refused(url: str) -> int:
    """The close code of a connection the edge refuses right after the handshake (before any hello)."""
    with pytest.raises(ConnectionClosed) as closed:
        ws, _ = await open_stream(url)
        await recv_msg(ws, 30)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def test_a_stream_named_in_the_url(serve: Serve, frames: list[bytes]) -> None:
    node, url, recorder = await serve()
    ws, hello = await open_stream(f"{url}?camera=kitchen")
    assert hello["stream"] == "kitchen"
    for seq in range(2):
        await ws.send(protocol.encode_frame(seq, frames[seq]))
        msg = await recv_msg(ws)
        assert msg["type"] == "result" and msg["camera"] == "kitchen"
    await eventually(lambda: len(recorder.frames) == 2, interval=0.01)
    assert [s for s, _, _ in recorder.frames] == ["kitchen", "kitchen"]  # events and MQTT results carry the name
    assert all(r["camera"] == "kitchen" for _, _, r in recorder.frames)
    assert node.set_stream_throttle("kitchen", 5.0), "the hub's stream throttle finds it by name"
    assert b'hgr_camera_frames_processed_total{camera="kitchen"} 2.0' in metrics.render()[0]
    assert b'hgr_camera_up{camera="kitchen"} 1.0' in metrics.render()[0]
    await ws.close()
    await eventually(lambda: recorder.closed == ["kitchen"], interval=0.01)
    assert not series("kitchen"), "a closed stream's series go: the label stays bounded"


async def test_unnamed_streams_keep_random_ids_and_no_camera_field(serve: Serve, frames: list[bytes]) -> None:
    _, url, recorder = await serve()
    ws, hello = await open_stream(url)
    await ws.send(protocol.encode_frame(0, frames[0]))
    msg = await recv_msg(ws)
    assert "camera" not in msg and "-" in hello["stream"]
    await eventually(lambda: [s for s, _, _ in recorder.frames] == [hello["stream"]], interval=0.01)
    await ws.close()


async def test_names_are_unique_on_the_edge_and_free_again_after_close(serve: Serve, frames: list[bytes],
                                                                      tmp_path: Any) -> None:
    # a configured camera holds its name too (its file is missing: it retries, the name stays its own)
    _, url, _ = await serve(cameras=f"porch=file://{tmp_path}/missing.mp4")
    first, _ = await open_stream(f"{url}?camera=door")
    assert await refused(f"{url}?camera=door") == 4409
    assert await refused(f"{url}?camera=porch") == 4409
    await first.close()
    again, hello = await open_stream(f"{url}?camera=door")
    assert hello["stream"] == "door"
    await again.close()


@pytest.mark.parametrize("name", ["Kitchen", "a/b", "x" * 33, "", "a+b"])
async def test_a_bad_name_in_the_url_closes_4422(serve: Serve, name: str) -> None:
    _, url, _ = await serve()
    assert await refused(f"{url}?camera={name}") == 4422


async def test_a_key_takes_only_the_names_its_allowances_match(serve: Serve, frames: list[bytes]) -> None:
    """Tenant boundary (docs/security.md "Stream names"): a key with ``camera:`` allowances cannot publish
    under another tenant's camera name, in the URL or in its first frame; a key without any names freely."""
    _, url, recorder = await serve(auth_enabled=True,
                                   api_keys="kitchen:k-kitchen:detect+camera:kitchen,porch:k-porch:camera:porch-*,"
                                            "free:k-free")
    kitchen, porch, free = ({"X-API-Key": k} for k in ("k-kitchen", "k-porch", "k-free"))
    with pytest.raises(ConnectionClosed) as closed:
        ws, _ = await open_stream(f"{url}?camera=porch-1", headers=kitchen)
        await recv_msg(ws, 30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    ws, _ = await open_stream(url, headers=kitchen)
    await ws.send(protocol.encode_frame(0, frames[0], opts={"camera": "porch-1"}))
    assert await closed_with(ws) == 4403
    assert recorder.frames == []  # nothing was published under the name it may not take
    own, _ = await open_stream(f"{url}?camera=kitchen", headers=kitchen)
    await own.send(protocol.encode_frame(0, frames[0]))
    assert (await recv_msg(own))["camera"] == "kitchen"
    side, _ = await open_stream(url, headers=porch)
    await side.send(protocol.encode_frame(0, frames[0], opts={"camera": "porch-1"}))
    assert (await recv_msg(side))["camera"] == "porch-1"
    anyone, _ = await open_stream(f"{url}?camera=garden", headers=free)
    await anyone.send(protocol.encode_frame(0, frames[0]))
    assert (await recv_msg(anyone))["camera"] == "garden"
    for ws in (own, side, anyone):
        await ws.close()


async def test_a_stream_named_by_its_first_frame(serve: Serve, frames: list[bytes]) -> None:
    _, url, recorder = await serve()
    ws, _ = await open_stream(url)
    await ws.send(protocol.encode_frame(0, frames[0], opts={"camera": "desk", "num_hands": 1}))
    msg = await recv_msg(ws)
    assert msg["type"] == "result" and msg["camera"] == "desk" and len(msg["hands"]) <= 1
    await ws.send(protocol.encode_frame(1, frames[1], opts={"camera": "desk"}))  # the same name again: fine
    assert (await recv_msg(ws))["camera"] == "desk"
    assert [s for s, _, _ in recorder.frames] == ["desk", "desk"]
    await ws.send(protocol.encode_frame(2, frames[2], opts={"camera": "other"}))
    assert await closed_with(ws) == 4422
    await eventually(lambda: recorder.closed == ["desk"], interval=0.01)


async def test_naming_after_the_first_frame_or_a_taken_name_closes(serve: Serve, frames: list[bytes]) -> None:
    _, url, _ = await serve()
    late, _ = await open_stream(url)
    await late.send(protocol.encode_frame(0, frames[0]))
    await recv_msg(late)
    await late.send(protocol.encode_frame(1, frames[1], opts={"camera": "late"}))
    assert await closed_with(late) == 4422
    holder, _ = await open_stream(f"{url}?camera=taken")
    thief, _ = await open_stream(url)
    await thief.send(protocol.encode_frame(0, frames[0], opts={"camera": "taken"}))
    assert await closed_with(thief) == 4409
    await holder.close()
