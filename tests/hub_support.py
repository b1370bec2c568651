"""Helpers for the hub tests: a real uvicorn server around a Hub on a free port, in the test's loop."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from support import serve_app

from hgr.common.config import Settings, load_settings
from hgr.hub.app import Hub
from hgr.hub.middleware import EXCEPTION_HANDLERS, HubMiddleware


def hub_settings(**overrides: Any) -> Settings:
    """Settings from nothing but the overrides (no .env, no environment), workers kept to one core."""
    return load_settings({}, env_file=None, **{"workers": 1, **overrides})


def hub_app(hub: Hub) -> Starlette:
    return Starlette(routes=hub.routes, exception_handlers=EXCEPTION_HANDLERS,
                     middleware=[Middleware(HubMiddleware)])


@contextlib.asynccontextmanager
async def serve_hub(settings: Settings, pool: Any) -> AsyncIterator[tuple[str, Hub]]:
    """A Hub on a real socket (uvicorn), sharing ``pool``; yields (base url, hub)."""
    hub = Hub(settings, pool)
    await hub.start()
    try:
        async with serve_app(hub_app(hub), stop_timeout=30, log_config=None, lifespan="off", http="httptools",
                             loop="none") as port:
            yield f"http://127.0.0.1:{port}", hub
    finally:
        await hub.stop()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
