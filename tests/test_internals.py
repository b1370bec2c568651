"""Every library internal hgr reaches into is there in the installed release (common/internals.py), and a
missing one is loud: a warning at start-up, the hub's /status, hgr_library_patch_active."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from prometheus_client import REGISTRY
from uvicorn.protocols.http import httptools_impl

from hgr.common import internals
from hgr.common.messaging.mqtt_client import buffered_client_class


@pytest.fixture(autouse=True)
def _fresh_check() -> Iterator[None]:
    internals.check_all.cache_clear()
    yield
    internals.check_all.cache_clear()


@pytest.mark.parametrize("patch", internals.PATCHES, ids=lambda p: p.name)
def test_the_installed_release_has_every_internal_the_patch_needs(patch: internals.Patch) -> None:
    gone = internals.missing(patch.name)
    assert gone == [], (f"{patch.library} no longer has {', '.join(gone)}: the patch `{patch.name}` falls back to "
                        f"the stock path and {patch.gives} is lost. Adapt the patch or the bound in pyproject.toml.")


def test_the_patched_classes_are_the_ones_in_use() -> None:
    assert buffered_client_class(mqtt) is not mqtt.Client
    from hgr.serve import header_timeout_protocol
    assert issubclass(header_timeout_protocol(5.0), httptools_impl.HttpToolsProtocol)


def _gauge(patch: str) -> float | None:
    return REGISTRY.get_sample_value("hgr_library_patch_active", {"patch": patch})


def test_a_missing_internal_is_a_start_up_warning_a_gauge_and_a_status_line(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delattr(httptools_impl.HttpToolsProtocol, "on_headers_complete")
    with caplog.at_level(logging.WARNING, logger="hgr.internals"):
        found = internals.warn_fallbacks()
    assert found["uvicorn_header_timeout"] == ["HttpToolsProtocol.on_headers_complete"]
    assert found["paho_buffered_reads"] == []
    warning = [r.getMessage() for r in caplog.records if "uvicorn_header_timeout" in r.getMessage()]
    assert len(warning) == 1
    assert "HttpToolsProtocol.on_headers_complete" in warning[0] and "HEADER_TIMEOUT" in warning[0]
    assert _gauge("uvicorn_header_timeout") == 0 and _gauge("paho_buffered_reads") == 1
    status = internals.status()
    assert status["uvicorn_header_timeout"] == "fallback: HttpToolsProtocol.on_headers_complete"
    assert status["starlette_form_errors"] == "active"


def test_paho_without_its_internals_gives_the_stock_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(mqtt.Client, "_sock_recv")
    assert internals.missing("paho_buffered_reads") == ["paho.mqtt.client.Client._sock_recv"]
    assert buffered_client_class(mqtt) is mqtt.Client


def test_a_library_that_fails_to_load_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> list[str]:
        raise ImportError("no module named starlette.formparsers")
    patch = next(p for p in internals.PATCHES if p.name == "starlette_form_errors")
    monkeypatch.setattr(internals, "PATCHES", tuple(
        internals.Patch(p.name, p.library, p.gives, broken) if p is patch else p for p in internals.PATCHES))
    assert internals.missing("starlette_form_errors") == [
        "starlette: ImportError: no module named starlette.formparsers"]


def test_a_uvicorn_without_the_hooks_serves_with_its_stock_protocols(monkeypatch: pytest.MonkeyPatch) -> None:
    from uvicorn.protocols.websockets import websockets_sansio_impl

    from hgr.common.config import load_settings
    from hgr.serve import uvicorn_options

    monkeypatch.delattr(websockets_sansio_impl.WebSocketsSansIOProtocol, "handle_cont")
    monkeypatch.delattr(httptools_impl.HttpToolsProtocol, "on_header")
    options = uvicorn_options(load_settings({}, env_file=None))
    assert options["ws"] == "websockets" and options["http"] == "h11"
    assert internals.status()["uvicorn_ws_guards"] == (
        "fallback: WebSocketsSansIOProtocol.handle_events calling handle_cont")
