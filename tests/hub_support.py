"""Helpers for the hub tests: a real uvicorn server around a Hub on a free port, in the test's loop."""

from __future__ import annotations

import base64
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware

from hgr.common.config import Settings, load_settings
from hgr.hub.app import Hub
from hgr.hub.middleware import EXCEPTION_HANDLERS, HubMiddleware
from tests.support import free_port, serve_app, stop_process, wait_ready

# A key for the operator's views (the full /status, GET /fleet): docs/security.md.
OPS_KEY = "ops-view-key-0123456789"
OPS_SPEC = f"ops:{OPS_KEY}:fleet:read"
OPS = {"X-API-Key": OPS_KEY}


def hub_settings(**overrides: Any) -> Settings:
    """Settings from nothing but the overrides (no .env, no environment), workers kept to one core."""
    return load_settings({}, env_file=None, **{"workers": 1, **overrides})


def hub_app(hub: Hub) -> Starlette:
    return Starlette(routes=hub.routes, exception_handlers=EXCEPTION_HANDLERS,
                     middleware=[Middleware(HubMiddleware)])


@contextlib.asynccontextmanager
async def serve_hub(settings: Settings, pool: Any, bus: Any = None) -> AsyncIterator[tuple[str, Hub]]:
    """A Hub on a real socket (uvicorn), sharing ``pool`` (and with ``bus``, its fleet service); yields
    (base url, hub)."""
    hub = Hub(settings, pool, bus=bus)
    await hub.start()
    try:
        async with serve_app(hub_app(hub), stop_timeout=30, log_config=None, lifespan="off", http="httptools",
                             loop="none") as port:
            yield f"http://127.0.0.1:{port}", hub
    finally:
        await hub.stop()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@contextlib.contextmanager
def hub_processes(env: dict[str, str], count: int, folder: Path) -> Iterator[list[tuple[str, Path]]]:
    """``count`` `hgr hub` processes with ``env``, each on a free port with its stderr in ``folder``;
    yields (base url, log file) once every one is ready, and stops them all on the way out."""
    started: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        for i in range(count):
            port = free_port()
            log = folder / f"hub{i}.log"
            with log.open("wb") as err:
                proc = subprocess.Popen([sys.executable, "-m", "hgr", "hub", "--port", str(port)], env=env,
                                        stdout=subprocess.PIPE, stderr=err, cwd=folder)
            started.append((proc, f"http://127.0.0.1:{port}", log))
        for proc, url, _ in started:
            wait_ready(url, proc, 240, interval=0.25)
        yield [(url, log) for _, url, log in started]
    finally:
        for proc, _, _ in started:
            stop_process(proc, 30)
