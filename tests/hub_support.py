"""Helpers for the hub tests: a real uvicorn server around a Hub on a free port, in the test's loop."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.middleware import Middleware

from hgr.common.config import Settings, load_settings
from hgr.hub.app import Hub
from hgr.hub.fleet_logic import StatusMsg
from hgr.hub.middleware import EXCEPTION_HANDLERS, HubMiddleware
from tests.support import ROOT, free_port, need, serve_app, start_server, stop_process, wait_ready


def decisions(name: str) -> float:
    """hgr_rate_limit_decisions_total{decision=name} in this process's registry (0 before the first)."""
    return REGISTRY.get_sample_value("hgr_rate_limit_decisions_total", {"decision": name}) or 0.0


# A key for the operator's views (the full /status, GET /fleet): docs/security.md.
OPS_KEY = "ops-view-key-0123456789"
OPS_SPEC = f"ops:{OPS_KEY}:fleet:read"
OPS = {"X-API-Key": OPS_KEY}


def hub_settings(**overrides: Any) -> Settings:
    """Settings from nothing but the overrides (no .env, no environment), workers kept to one core."""
    return load_settings({}, env_file=None, **{"workers": 1, **overrides})


# EDGE_STALE_AFTER of a hub that holds an edge of ``seed_edge`` (see there): an hour, longer than any module's tests.
SEEDED_EDGE_STALE_AFTER = 3600.0


async def seed_edge(hub: Hub, edge_id: str) -> None:
    """``edge_id`` in ``hub``'s fleet as an online edge born now, for the routes that answer about an edge
    (``/fleet/edges/{edge_id}``, a stream's throttle). ``hub`` has a bus (its fleet) and was made with
    ``edge_stale_after=SEEDED_EDGE_STALE_AFTER`` (checked).

    Why both: the edge is heard from once and never again, and the hub's fleet sweep (about every second) forgets
    an edge heard from for less than EDGE_STALE_AFTER once it has been silent for EDGE_STALE_AFTER
    (``hub.fleet_store``), 45 s by default, less than a module's fixture lives. So the birth is stamped now (an
    older one would count as silent already) and the hub waits an hour."""
    assert hub.fleet is not None, "seed_edge: the hub has no fleet (make it with a bus)"
    assert hub.settings.edge_stale_after >= SEEDED_EDGE_STALE_AFTER, \
        "seed_edge: make the hub with edge_stale_after=SEEDED_EDGE_STALE_AFTER, or its sweep forgets the edge"
    await hub.fleet.store.apply_status(edge_id, StatusMsg(online=True, session="s1", reason="birth", birth_seq=1),
                                       time.time())


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
    yields (base url, log file) once every one is ready, and stops them all on the way out. They run this
    checkout's code (PYTHONPATH), whatever copy of hgr the interpreter has installed."""
    env = {**env, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)}
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


# ----------------------------------------------------------------------------------------- the shipped Redis
COMPOSE_HUB = ROOT / "docker-compose.hub.yml"
# What deploy/hub.env would hold for the shipped Redis (deploy/init-secrets.sh writes random ones).
SHIPPED_PASSWORDS = {"REDIS_PASSWORD": "cache-pw-0123456789abcdef",
                     "REDIS_LIMITS_PASSWORD": "limits-pw-0123456789abcdef"}


def interpolate(text: str, values: Mapping[str, str]) -> str:
    """Compose's ``${VAR:?message}`` (required: a missing one is an error) and ``${VAR:-default}`` in ``text``,
    filled from ``values`` the way ``docker compose --env-file`` fills them."""
    def one(m: re.Match[str]) -> str:
        name, operator, rest = m.groups()
        if name in values:
            return values[name]
        assert operator == ":-", f"{name} is required: {rest}"
        return rest
    return re.sub(r"\$\{(\w+)(:\?|:-)([^}]*)\}", one, text)


@dataclass
class ShippedRedis:
    """Redis services of docker-compose.hub.yml running here as the file writes them (``argv``, by service),
    and ``env``: the hub's Redis variables as the file sets them, pointed at them."""

    argv: dict[str, list[str]]
    urls: dict[str, str]
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, service: str) -> None:
        port = int(self.argv[service][self.argv[service].index("--port") + 1])
        self.procs[service] = start_server(self.argv[service], port)

    def kill(self, service: str) -> None:
        self.procs[service].kill()
        self.procs[service].wait()


def shipped_hub_environment() -> dict[str, str]:
    environment: dict[str, str] = yaml.safe_load(COMPOSE_HUB.read_text())["services"]["hub"]["environment"]
    return environment


@contextlib.contextmanager
def shipped_redis(services: Sequence[str] = ("redis", "redis-limits"), **knobs: str) -> Iterator[ShippedRedis]:
    """The compose file's ``services`` run with the local ``redis-server``: their ``command`` as written (its
    ``${…}`` filled from ``SHIPPED_PASSWORDS`` and ``knobs``, e.g. ``REDIS_MAXMEMORY="4mb"``, or the file's
    defaults), on a free loopback port each. ``env`` holds the hub's variables that name those services
    (``REDIS_URL``, ``RATE_LIMIT_REDIS_URL``), taken from the file's hub service with each service's host
    and port replaced by where it runs here: the shipped layout is the one tested."""
    need(bool(shutil.which("redis-server")), "redis-server is not installed")
    values = {**SHIPPED_PASSWORDS, **knobs}
    compose = yaml.safe_load(COMPOSE_HUB.read_text())["services"]
    ports = {service: free_port() for service in services}
    argv = {service: [interpolate(str(arg), values) for arg in compose[service]["command"]]
            + ["--port", str(port), "--bind", "127.0.0.1"] for service, port in ports.items()}
    env = {}
    for name, value in shipped_hub_environment().items():
        for service, port in ports.items():
            if f"@{service}:6379/" in value:
                env[name] = interpolate(value, values).replace(f"@{service}:6379/", f"@127.0.0.1:{port}/")
    urls = {service: next(url for url in env.values() if f":{port}/" in url) for service, port in ports.items()}
    stack = ShippedRedis(argv, urls, env)
    try:
        for service in services:
            stack.start(service)
        yield stack
    finally:
        for proc in stack.procs.values():
            proc.kill()
            proc.wait()
