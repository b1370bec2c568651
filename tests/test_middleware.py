"""hub/middleware.py: request ids, the common error body for every error (ours, Starlette's, a bug's), and the
route label of the metrics."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from hgr.common import metrics
from hgr.common.errors import CATALOGUE
from hgr.hub.middleware import EXCEPTION_HANDLERS, HubMiddleware, route_label
from hgr.hub.ratelimit import RateLimited


def _hub_app(*routes: Route) -> Starlette:
    """``routes`` behind the hub's middleware and exception handlers."""
    return Starlette(routes=list(routes), exception_handlers=EXCEPTION_HANDLERS, middleware=[Middleware(HubMiddleware)])


async def _get(app: Starlette, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as client:
        return await client.get(path)


async def test_unexpected_exception_is_500_with_request_id(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(request: Request) -> Response:  # a bug in a route, not bad input
        raise RuntimeError("boom")

    r = await _get(_hub_app(Route("/broken", broken)), "/broken")
    assert r.status_code == 500
    error = r.json()["error"]
    assert error["code"] == "internal_error" and error["request_id"] == r.headers["x-request-id"]
    assert "boom" not in r.text
    assert any(rec.exc_info and "boom" in str(rec.exc_info[1]) for rec in caplog.records)


def _app() -> Starlette:
    async def refused(request: Request) -> Response:
        raise RateLimited("slow down", headers={"Retry-After": "7"})

    async def teapot(request: Request) -> Response:
        raise HTTPException(418, "short and stout")

    async def edge(request: Request) -> Response:
        return JSONResponse({"route": route_label(request.scope)})

    return _hub_app(Route("/refused", refused), Route("/teapot", teapot),
                    Route("/fleet/edges/{edge_id}", edge, methods=["GET"]))


async def test_every_error_gets_the_common_body_with_the_catalogue_status() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://hub") as client:
        limited = await client.get("/refused")
        missing = await client.get("/no-such-route")
        wrong_method = await client.post("/fleet/edges/cam-1")
        teapot = await client.get("/teapot")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
    assert limited.json()["error"] == {"code": "rate_limited", "message": "slow down",
                                       "request_id": limited.headers["x-request-id"]}
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    assert (wrong_method.status_code, wrong_method.json()["error"]["code"]) == (405, "method_not_allowed")
    # A status with no code of its own answers the generic code of its class, with that code's status.
    assert (teapot.status_code, teapot.json()["error"]["code"]) == (CATALOGUE["bad_request"].status, "bad_request")


async def test_an_error_quoting_an_unpaired_surrogate_still_answers_json() -> None:
    """The repro of issue 13: a message quoting client input with "\\ud800" made the handler itself fail."""
    async def quoting(request: Request) -> Response:
        raise RateLimited("unknown option(s): \ud800")

    r = await _get(_hub_app(Route("/quoting", quoting)), "/quoting")
    assert r.status_code == 429
    assert r.json()["error"]["message"] == "unknown option(s): \\ud800"
    assert r.json()["error"]["request_id"] == r.headers["x-request-id"]


@pytest.mark.parametrize("incoming,kept", [("trace-1.a:b_C", True), ("x" * 64, True), ("x" * 65, False),
                                           ("has space", False), ("", False), ("<script>", False)])
async def test_a_sane_request_id_is_echoed_anything_else_replaced(incoming: str, kept: bool) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://hub") as client:
        r = await client.get("/fleet/edges/cam-1", headers={"X-Request-ID": incoming} if incoming else {})
    rid = r.headers["x-request-id"]
    assert (rid == incoming) is kept and 1 <= len(rid) <= 64


def _requests(route: str, status: str) -> float:
    labels = {"service": "hub", "method": "GET", "route": route, "status": status}
    return sum(sample.value for metric in metrics.HTTP_REQUESTS.collect() for sample in metric.samples
               if sample.name.endswith("_total") and sample.labels == labels)


async def test_metrics_label_the_route_template_not_the_path() -> None:
    before = _requests("/fleet/edges/{edge_id}", "200"), _requests("unmatched", "404")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://hub") as client:
        r = await client.get("/fleet/edges/cam-42")
        await client.get("/fleet/nothing/here")
    assert r.json() == {"route": "/fleet/edges/{edge_id}"}
    assert _requests("/fleet/edges/{edge_id}", "200") - before[0] == 1
    assert _requests("unmatched", "404") - before[1] == 1


async def test_a_mount_is_one_label_and_its_404s_are_unmatched(tmp_path: Path) -> None:
    (tmp_path / "app.js").write_text("1")
    app = Starlette(routes=[Mount("/static", app=StaticFiles(directory=tmp_path), name="static")],
                    exception_handlers=EXCEPTION_HANDLERS, middleware=[Middleware(HubMiddleware)])

    def count(route: str, status: str) -> float:
        return float(metrics.HTTP_REQUESTS.labels("hub", "GET", route, status)._value.get())

    before = count("/static/{path}", "200"), count("unmatched", "404")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as client:
        assert (await client.get("/static/app.js")).status_code == 200
        assert (await client.get("/static/missing-1.js")).status_code == 404
        assert (await client.get("/static/missing-2.js")).status_code == 404
    assert (count("/static/{path}", "200"), count("unmatched", "404")) == (before[0] + 1, before[1] + 2)
