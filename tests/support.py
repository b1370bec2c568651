"""Helpers for tests (import with `from support import ...`): real-service checks, ports, processes,
waiting, in-process servers. Ports and process helpers live in loadtest.helpers (the load generators
use them too) and are re-exported here."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import tempfile
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
from hgr.loadtest.helpers import (  # noqa: F401 - re-exported for the tests
    SHARED,
    free_port,
    port_open,
    stop_process,
    wait_for_port,
    wait_ready,
)

IN_CI = os.environ.get("CI", "").lower() == "true"


def need(condition: bool, reason: str) -> None:
    """Skip locally, fail in CI, when a real dependency is missing."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


# --- processes ---

class ServerExited(RuntimeError):
    """The server process ended before its port opened (most often: the port was taken meanwhile)."""


def start_server(argv: list[str], port: int, deadline_s: float = 20) -> subprocess.Popen[bytes]:
    """Start a server process and wait for its port; kill it if the port never opens, and say at once,
    with what it printed, if it exits first (a free port can be taken as some connection's local port
    between choosing it and the server binding it)."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        end = time.monotonic() + deadline_s
        while not port_open("127.0.0.1", port, timeout=0.2):
            if proc.poll() is not None:
                out.seek(0)
                raise ServerExited(f"{argv[0]} on port {port} exited with {proc.returncode}: "
                                   f"{out.read().decode(errors='replace')[-2000:]}")
            if time.monotonic() > end:
                proc.kill()
                raise TimeoutError(f"127.0.0.1:{port} did not open within {deadline_s}s")
            time.sleep(0.05)
    return proc


def redis_argv(port: int | str) -> list[str]:
    """A throw-away redis-server on 127.0.0.1:``port``: nothing saved, nothing appended."""
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie still answers kill(0))."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:  # reaped in between
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # the name in (...) may contain spaces


def children(pid: int) -> list[int]:
    """The direct children of ``pid``, started by any of its threads (from /proc, like ``ps --ppid``)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that ended in between
            found += [int(child) for child in (task / "children").read_text().split()]
    return sorted(found)


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
    yet); ``ignore=()`` lets every exception through."""
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        try:
            last = check()
            if asyncio.iscoroutine(last):
                last = await last
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
