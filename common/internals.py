"""Library internals hgr leans on, each named and checked, so a release that removes one is seen.

Speed-ups, server guards and one error mapping reach past a library's public API. Each has a stock path to fall
back to, which works but loses what the patch gave: that fallback must never be silent. ``check_all()``
tells, per patch, which of the internals it needs are missing; the servers log a warning for each
fallback at start-up (``warn_fallbacks``), the hub's ``/status`` shows them (``internals``), and every
process exports ``hgr_library_patch_active{patch}``. ``tests/test_internals.py`` fails, naming the
internal, when an installed release lacks one, and pyproject.toml bounds these libraries below their
next minor release, so a new one arrives only through a lock refresh that runs those tests.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("hgr.internals")

# Read by common.messaging.mqtt_client.BufferedClient (class attributes, and instance attributes set by __init__).
PAHO_READ_METHODS = ("_packet_read", "_sock_recv", "_loop_rc_handle", "_send_puback", "_packet_queue",
                     "_packet_write", "_handle_publish", "_handle_on_message")
PAHO_READ_STATE = ("_sock", "_in_packet")
# Read by common.messaging.bus.MqttBus._take_unacked: paho's queue of sent, unacknowledged messages.
PAHO_UNACKED_STATE = ("_out_message_mutex", "_out_messages", "_inflight_messages")
# Overridden or read by hgr.serve.header_timeout_protocol (header timeout, size and count).
UVICORN_HTTP_METHODS = ("connection_made", "on_message_begin", "on_headers_complete", "connection_lost", "on_url",
                        "on_header", "data_received", "send_400_response")
UVICORN_HTTP_STATE = ("cycle", "transport", "loop")
# Overridden or read by hgr.serve.guarded_websocket_protocol (control-frame and fragment budgets, unread output);
# its frame hooks must still be what handle_events dispatches to.
UVICORN_WS_HOOKS = ("handle_ping", "handle_pong", "handle_text", "handle_bytes", "handle_cont")
UVICORN_WS_STATE = ("data_received", "connection_made", "connection_lost", "pause_writing", "resume_writing", "conn",
                    "queue", "close_sent", "transport", "loop")
# Matched by hub.bodies.read_form in the HTTPException texts starlette raises for a form over its limits.
STARLETTE_FORM_TEXTS = ("Too many files", "Too many fields", "exceeded maximum size")


@dataclass(frozen=True)
class Patch:
    name: str
    library: str  # the distribution, as in pyproject.toml
    gives: str  # what is lost on the stock path
    missing: Callable[[], list[str]]  # the internals the installed release lacks ([] = the patch is active)


def _paho_client() -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    return mqtt.Client(CallbackAPIVersion.VERSION2)


def _missing_paho_reads() -> list[str]:
    import paho.mqtt.client as mqtt
    client = _paho_client()
    return ([f"paho.mqtt.client.Client.{n}" for n in PAHO_READ_METHODS if not hasattr(mqtt.Client, n)]
            + [f"paho.mqtt.client.Client().{n}" for n in PAHO_READ_STATE if not hasattr(client, n)])


def _missing_paho_unacked() -> list[str]:
    client = _paho_client()
    return [f"paho.mqtt.client.Client().{n}" for n in PAHO_UNACKED_STATE if not hasattr(client, n)]


def _missing_uvicorn_http() -> list[str]:
    try:
        module = importlib.import_module("uvicorn.protocols.http.httptools_impl")
    except ImportError as exc:  # httptools absent, or the module moved
        return [f"uvicorn.protocols.http.httptools_impl ({exc})"]
    cls = getattr(module, "HttpToolsProtocol", None)
    if cls is None:
        return ["uvicorn.protocols.http.httptools_impl.HttpToolsProtocol"]
    init = inspect.getsource(cls.__init__)
    return ([f"HttpToolsProtocol.{n}" for n in UVICORN_HTTP_METHODS if not hasattr(cls, n)]
            + [f"HttpToolsProtocol().{n}" for n in UVICORN_HTTP_STATE if f"self.{n} " not in init
               and f"self.{n}:" not in init and not hasattr(cls, n)])


def _missing_uvicorn_ws() -> list[str]:
    try:
        module = importlib.import_module("uvicorn.protocols.websockets.websockets_sansio_impl")
    except ImportError as exc:  # an older uvicorn, or the module moved
        return [f"uvicorn.protocols.websockets.websockets_sansio_impl ({exc})"]
    cls = module.WebSocketsSansIOProtocol
    dispatch = inspect.getsource(cls.handle_events) if hasattr(cls, "handle_events") else ""
    source = inspect.getsource(cls)
    return ([f"WebSocketsSansIOProtocol.handle_events calling {h}" for h in UVICORN_WS_HOOKS
             if not callable(getattr(cls, h, None)) or f"self.{h}(" not in dispatch]
            + [f"WebSocketsSansIOProtocol.{n}" for n in UVICORN_WS_STATE if n not in source])


def _missing_starlette_texts() -> list[str]:
    source = inspect.getsource(importlib.import_module("starlette.formparsers"))
    return [f"starlette.formparsers text {text!r}" for text in STARLETTE_FORM_TEXTS if text not in source]


PATCHES = (
    Patch("paho_buffered_reads", "paho-mqtt",
          "the hub's MQTT ingest reads many packets per system call and acknowledges a burst at once",
          _missing_paho_reads),
    Patch("paho_unacked_requeue", "paho-mqtt",
          "messages unacknowledged at a disconnect wait in the outbox (in order, after the settle time) "
          "instead of paho resending them at once", _missing_paho_unacked),
    Patch("uvicorn_header_timeout", "uvicorn",
          "a connection whose request headers are not complete after HEADER_TIMEOUT is closed, and a head over "
          "MAX_HEADER_BYTES or MAX_HEADERS answered 431", _missing_uvicorn_http),
    Patch("uvicorn_ws_guards", "uvicorn",
          "WebSocket ping/pong floods (WS_MAX_CONTROL_RATE) and fragment floods (WS_MAX_FRAGMENTS) are closed 1008, "
          "and a client leaving more than WS_MAX_UNREAD unread for WS_UNREAD_TIMEOUT is dropped",
          _missing_uvicorn_ws),
    Patch("starlette_form_errors", "starlette",
          "an upload over MAX_UPLOAD_FILES, MAX_FORM_FIELDS or MAX_FORM_FIELD_SIZE answers 413 with its own "
          "code instead of 400 bad_multipart", _missing_starlette_texts),
)


def missing(name: str) -> list[str]:
    """The internals patch ``name`` needs that the installed release lacks (an import error counts)."""
    patch = next(p for p in PATCHES if p.name == name)
    try:
        return patch.missing()
    except Exception as exc:  # noqa: BLE001 - any failure to look means the patch cannot be trusted
        return [f"{patch.library}: {exc.__class__.__name__}: {exc}"]


@functools.cache  # the installed libraries do not change while a process runs
def check_all() -> dict[str, list[str]]:
    return {patch.name: missing(patch.name) for patch in PATCHES}


def status() -> dict[str, str]:
    """For ``/status``: each patch ``active``, or ``fallback: <what is missing>``."""
    return {name: "fallback: " + ", ".join(gone) if gone else "active" for name, gone in check_all().items()}


def warn_fallbacks() -> dict[str, list[str]]:
    """At start-up: a warning per patch on its stock path, and the gauge set for each."""
    from hgr.common import metrics
    found = check_all()
    for patch in PATCHES:
        gone = found[patch.name]
        metrics.LIBRARY_PATCH_ACTIVE.labels(patch.name).set(0 if gone else 1)
        if gone:
            log.warning("%s: running on the stock path (%s lacks %s): %s is lost", patch.name, patch.library,
                        ", ".join(gone), patch.gives)
    return found
