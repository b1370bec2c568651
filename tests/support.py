"""Helpers for tests (import with `from support import ...`): real-service checks, ports, processes,
waiting, in-process servers. Ports, processes and private servers live in hgr.loadtest.procs (``hgr bench``
and the research runs use them too) and are re-exported here."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from hgr.common.contracts import ResultMessage
from hgr.edge import protocol
from hgr.loadtest.procs import (  # noqa: F401 - re-exported for the tests
    ServerExited,
    alive,
    children,
    cpu_seconds,
    free_port,
    port_open,
    redis_argv,
    rss_mb,
    start_mosquitto,
    start_redis,
    start_server,
    stop_process,
    wait_for_port,
    wait_ready,
    worker_pids,
)

ROOT = Path(__file__).resolve().parent.parent
# Models and the full labelled photo set, beside the checkout (a checkout's layout: the package never looks here).
SHARED = Path(os.environ.get("HGR_SHARED_DIR", ROOT.parent / "shared"))

IN_CI = os.environ.get("CI", "").lower() == "true"


def need(condition: bool, reason: str) -> None:
    """Skip locally, fail in CI, when a real dependency is missing."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


# --- HTTP ---

def http_get(url: str, timeout: float = 30, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """(status, body) of a GET; an HTTP error status is returned, not raised."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# --- waiting ---

async def eventually(check: Callable[[], Any] | Callable[[], Awaitable[Any]], deadline_s: float = 30.0,
                     what: str = "condition", *, interval: float = 0.1,
                     ignore: tuple[type[BaseException], ...] = (Exception,)) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy and return that; fail with
    ``what`` after the deadline. Exceptions in ``ignore`` count as "not yet" (e.g. a server not up
    yet); ``ignore=()`` lets every exception through. An async check that never answers is cancelled at
    the deadline: the deadline bounds the whole wait, not only the time between checks."""
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        try:
            last = check()
            if asyncio.iscoroutine(last):
                try:
                    last = await asyncio.wait_for(last, max(0.0, end - time.monotonic()))
                except TimeoutError:
                    raise AssertionError(f"timed out waiting for {what}: a check did not answer within "
                                         f"{deadline_s} s") from None
            if last:
                return last
        except ignore as exc:
            last = exc
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def poll(check: Callable[[], Any], deadline_s: float = 30.0, what: str = "condition", *, interval: float = 0.1,
         ignore: tuple[type[BaseException], ...] = (Exception,)) -> Any:
    """``eventually`` for synchronous code."""
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        try:
            last = check()
            if last:
                return last
        except ignore as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


# --- in-process servers ---

@contextlib.asynccontextmanager
async def serve_app(app: Any, *, start_timeout: float = 30.0, stop_timeout: float | None = None,
                    **options: Any) -> AsyncIterator[int]:
    """``app`` behind a real uvicorn on a free 127.0.0.1 port, in the running loop; yields the port.
    ``options`` are uvicorn.Config keywords; the server must be up within ``start_timeout`` seconds."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **options))
    task = asyncio.create_task(server.serve())
    try:
        deadline = time.monotonic() + start_timeout
        while not server.started:
            if task.done():
                task.result()
                raise AssertionError("uvicorn exited before it started")
            assert time.monotonic() < deadline, "uvicorn did not start"
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, stop_timeout)


@contextlib.asynccontextmanager
async def serve_edge(settings: Any, pool: Any, **node_options: Any) -> AsyncIterator[tuple[Any, str]]:
    """An EdgeNode on ``pool`` behind ``serve_app``; yields (node, ws url). On the way out the node
    stops first (its streams get their 1001 close), then the server."""
    from starlette.applications import Starlette

    from hgr.edge.app import EdgeNode
    from hgr.serve import uvicorn_options

    node = EdgeNode(settings, pool, **node_options)
    await node.start()
    async with serve_app(Starlette(routes=node.routes), **{**uvicorn_options(settings), "lifespan": "off"}) as port:
        try:
            yield node, f"ws://127.0.0.1:{port}/ws"
        finally:
            await node.stop()


# --- the edge's fleet reporter ---

class Recorder:
    """A fleet reporter stand-in that just remembers what it was told."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, str | None, ResultMessage]] = []
        self.closed: list[str] = []
        self.available: list[tuple[str, bool]] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def on_frame(self, stream_id: str, key_name: str | None, result: ResultMessage) -> None:
        self.frames.append((stream_id, key_name, result))

    def on_stream_closed(self, stream_id: str) -> None:
        self.closed.append(stream_id)

    def on_camera_available(self, name: str, online: bool) -> None:
        self.available.append((name, online))


# --- WebSocket ---

async def recv_msg(ws: Any, timeout: float = 60) -> dict[str, Any]:
    """The next server message on an edge WebSocket, decoded."""
    return protocol.decode_server_message(await asyncio.wait_for(ws.recv(), timeout))
