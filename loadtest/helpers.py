"""Small helpers shared by the load generators and the tests: the photo folder, free ports, waiting for a
server, stopping a process. Standard library only, so importing them costs nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("HGR_SHARED_DIR", ROOT.parent / "shared"))  # models and labelled photos
DEFAULT_PHOTOS = SHARED / "data" / "hands"


def free_port() -> int:
    """A TCP port nothing listens on right now (on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, deadline_s: float = 60.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if port_open(host, port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} did not open within {deadline_s}s")


def wait_ready(base_url: str, proc: subprocess.Popen[Any] | None = None, timeout: float = 180.0, *,
               path: str = "/ready", interval: float = 0.2) -> None:
    """Poll ``base_url + path`` until 200 (``/ready``: model loaded, workers up). RuntimeError when
    ``proc`` exits first, TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{base_url} exited with code {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(base_url + path, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(interval)
    raise TimeoutError(f"{base_url}{path} not ready within {timeout:.0f} s")


def stop_process(proc: subprocess.Popen[Any], timeout: float = 30.0, sig: int = signal.SIGTERM) -> None:
    """``sig`` (SIGTERM: graceful, sockets closed and workers reaped), then SIGKILL if the process is
    still there after ``timeout`` seconds. Nothing to do if it has already exited."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def loop_lag(lags_ms: list[float]) -> None:
    """Until cancelled: how late a 10 ms timer fires on this event loop, in ms, into ``lags_ms``. It is what
    any request, flush or ping on the loop would wait meanwhile."""
    while True:
        t = time.perf_counter()
        await asyncio.sleep(0.01)
        lags_ms.append((time.perf_counter() - t - 0.01) * 1000)
