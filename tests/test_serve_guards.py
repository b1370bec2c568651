"""hgr.serve's guards hook into uvicorn's protocol classes (there is nothing to configure for them): if a
uvicorn release renames or stops calling a hook, these tests fail naming it, instead of the limits
silently vanishing. The limits themselves are tested against a real edge in
tests/test_scenario_edge_abuse.py."""

from __future__ import annotations

import inspect

import pytest

from hgr.common.config import load_settings
from hgr.serve import guarded_websocket_protocol, header_timeout_protocol, uvicorn_options


def test_uvicorn_websocket_protocol_still_dispatches_every_frame_to_the_hooks() -> None:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    dispatch = inspect.getsource(WebSocketsSansIOProtocol.handle_events)
    for hook in ("handle_ping", "handle_pong", "handle_text", "handle_bytes", "handle_cont"):
        assert callable(getattr(WebSocketsSansIOProtocol, hook, None)), f"uvicorn lost {hook}"
        assert f"self.{hook}(" in dispatch, f"uvicorn's handle_events no longer calls {hook}"
    for name in ("data_received", "connection_lost", "conn", "queue", "close_sent", "transport", "loop"):
        assert name in inspect.getsource(WebSocketsSansIOProtocol), f"uvicorn's protocol lost {name}"


def test_uvicorn_http_protocol_still_has_the_parser_hooks() -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    for hook in ("on_url", "on_header", "on_message_begin", "on_headers_complete", "send_400_response"):
        assert callable(getattr(HttpToolsProtocol, hook, None)), f"uvicorn lost HttpToolsProtocol.{hook}"
    # a callback's exception stops the parser, and uvicorn answers it through send_400_response
    assert "send_400_response" in inspect.getsource(HttpToolsProtocol.data_received)


def test_the_servers_use_both_guards() -> None:
    options = uvicorn_options(load_settings({}, env_file=None))
    assert isinstance(options["ws"], type) and options["ws"].__name__ == "GuardedWebSocketProtocol"
    assert isinstance(options["http"], type) and options["http"].__name__ == "HeaderTimeoutProtocol"


@pytest.mark.parametrize("which", ["websocket", "http"])
def test_the_guarded_classes_override_only_existing_methods(which: str) -> None:
    cls = guarded_websocket_protocol(10, 256) if which == "websocket" else header_timeout_protocol(10, 65536, 100)
    base = cls.__mro__[1]
    for name, value in vars(cls).items():
        if callable(value) and not name.startswith("_") and name not in ("data_received",):
            assert hasattr(base, name), f"{cls.__name__}.{name} overrides nothing in {base.__name__}"
