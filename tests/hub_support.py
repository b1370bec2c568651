"""Helpers for the hub tests: a real uvicorn server around a Hub on a free port, in the test's loop."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from support import free_port

from common.config import Settings, load_settings
from hub.app import Hub
from hub.middleware import EXCEPTION_HANDLERS, HubMiddleware


def hub_settings(**overrides: Any) -> Settings:
    """Settings from nothing but the overrides (no .env, no environment), workers kept to one core."""
    return load_settings({}, env_file=None, **{"workers": 1, **overrides})


def hub_app(hub: Hub) -> Starlette:
    return Starlette(routes=hub.routes, exception_handlers=EXCEPTION_HANDLERS,
                     middleware=[Middleware(HubMiddleware, settings=hub.settings)])


@contextlib.asynccontextmanager
async def serve_hub(settings: Settings, pool: Any) -> AsyncIterator[tuple[str, Hub]]:
    """A Hub on a real socket (uvicorn), sharing ``pool``; yields (base url, hub)."""
    hub = Hub(settings, pool)
    await hub.start()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(hub_app(hub), host="127.0.0.1", port=port, log_config=None,
                                           lifespan="off", http="httptools", loop="none"))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 30
    while not server.started:
        if task.done():
            task.result()
        assert time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", hub
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        await hub.stop()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
