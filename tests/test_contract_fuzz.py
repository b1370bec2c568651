"""Contract fuzzing: schemathesis generates requests from /openapi.json for every operation and sends them to
a real hub (uvicorn on a socket, a real inference pool and model, the in-process bus so the fleet routes are
served, one edge in the fleet so an edge's routes can answer 200/202, an API key holding every scope).
Every answer must be no 5xx and conform to the document: a documented status, content type, headers, and
a body that validates against the operation's response schema. Bounded (``MAX_EXAMPLES`` per operation) to
stay around a minute on a 2-core machine."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis import checks
from starlette.applications import Starlette
from starlette.middleware import Middleware

from hgr.common.inference.pool import InferencePool
from hgr.common.lifespan import lifespan
from hgr.common.messaging.bus import LocalBus
from hgr.hub.app import Hub
from hgr.hub.middleware import EXCEPTION_HANDLERS, HubMiddleware
from hgr.hub.openapi import OPERATIONS, openapi_schema
from tests.hub_support import SEEDED_EDGE_STALE_AFTER, hub_settings, seed_edge
from tests.support import free_port, poll

MAX_EXAMPLES = 12
KEY = "fuzz-every-scope-0123456789"
HEADERS = {"X-API-Key": KEY}
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_headers_conformance, checks.response_schema_conformance]

schema = schemathesis.openapi.from_dict(openapi_schema("fuzz"))
BEFORE: dict[tuple[str, str, str], float] = {}  # the request counter when the fuzzed hub was ready


class SeededFleet:
    """A lifespan part: one online edge ``cam-1`` (the document's example edge id) in the fleet store."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def start(self) -> None:
        await seed_edge(self.hub, "cam-1")

    async def stop(self) -> None:
        return None


@pytest.fixture(scope="module")
def hub_url(model_path: str) -> Iterator[str]:
    """The hub in a thread of its own (uvicorn's own loop), so schemathesis' blocking calls reach it."""
    s = hub_settings(auth_enabled=True, api_keys=f"fuzz:{KEY}:detect+fleet:admin", rate_limit_requests=100_000,
                     max_batch_images=4, max_request_size=2_000_000, max_image_size=1_000_000,
                     edge_stale_after=SEEDED_EDGE_STALE_AFTER)
    pool = InferencePool(s, {"full": model_path}, service="hub", workers=1)
    hub = Hub(s, pool, bus=LocalBus(s, service="hub"))
    app = Starlette(routes=hub.routes, lifespan=lifespan(pool, hub, SeededFleet(hub)),
                    exception_handlers=EXCEPTION_HANDLERS, middleware=[Middleware(HubMiddleware)])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), name="fuzzed-hub", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    poll(lambda: httpx.get(f"{url}/ready", timeout=5).status_code == 200, 180, "the hub ready")
    BEFORE.update(request_counts(url))
    yield url
    server.should_exit = True
    thread.join(60)
    assert not thread.is_alive(), "the fuzzed hub did not stop"


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_answer_conforms_to_the_document(case: Any, hub_url: str) -> None:
    case.call_and_validate(base_url=hub_url, headers=HEADERS, checks=CHECKS, timeout=60)


def test_the_fuzz_reached_every_operation_and_no_answer_was_a_5xx(hub_url: str) -> None:
    """Runs after the generated cases (file order): the hub's own request counter (since the fixture started
    it: the registry is the process's, other modules' hubs count there too) says every documented operation
    was called, and none answered 5xx."""
    calls = {labels: value - BEFORE.get(labels, 0.0) for labels, value in request_counts(hub_url).items()}
    assert not {labels: n for labels, n in calls.items() if labels[2].startswith("5") and n}, calls
    by_route: dict[tuple[str, str], float] = {}
    for (method, route, _), n in calls.items():
        by_route[(method.lower(), route)] = by_route.get((method.lower(), route), 0.0) + n
    for op in OPERATIONS:
        assert by_route.get((op.method, op.path), 0) >= 3, f"{op.method} {op.path} was hardly called: {by_route}"


def request_counts(url: str) -> dict[tuple[str, str, str], float]:
    """``hand_gesture_requests_total`` of the hub's /metrics: (method, route, status) -> count."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    counts: dict[tuple[str, str, str], float] = {}
    for labels, value in re.findall(r"^hand_gesture_requests_total\{(.*)\} ([0-9.e+]+)$", text, re.MULTILINE):
        named = dict(re.findall(r'(\w+)="([^"]*)"', labels))  # (.*): route templates hold braces
        key = (named["method"], named["route"], named["status"])
        counts[key] = counts.get(key, 0.0) + float(value)
    return counts
