"""Running an app under uvicorn: the one way `hgr edge`, `hgr hub` and `hgr up` start a server.

Server options are the ones measured fastest for JPEG frames over WebSocket (docs/protocol.md):
websockets-sansio, uvloop, httptools, and no permessage-deflate (it cannot shrink JPEG and cost 50×
in throughput).

Slow clients (docs/deployment.md "Hardening"): uvicorn closes an idle keep-alive connection after
``KEEP_ALIVE_TIMEOUT`` but has no timeout for a request's headers, so ``HeaderTimeoutProtocol`` closes a
connection whose headers are not complete ``HEADER_TIMEOUT`` seconds after it opened (or after the first
byte of a further request). Bodies have ``BODY_TIMEOUT`` (``hub.bodies``); WebSocket streams
``IDLE_TIMEOUT``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import uvicorn
from prometheus_client import start_http_server
from starlette.applications import Starlette

from hgr.common import native_logs
from hgr.common.config import Settings
from hgr.common.logs import setup_logging
from hgr.common.startup import SERVICE_PORTS, startup_settings

log = logging.getLogger("hgr.serve")


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    ws = "websockets-sansio"
    if importlib.util.find_spec("uvicorn.protocols.websockets.websockets_sansio_impl") is None:  # older uvicorn
        ws = "websockets"
    http: str | type[asyncio.Protocol] = "h11"  # h11 bounds header size (16 KB) but has no header timeout
    if importlib.util.find_spec("httptools"):
        http = header_timeout_protocol(settings.header_timeout)
    return {
        "ws": ws,
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "http": http,
        "timeout_keep_alive": settings.keep_alive_timeout,
        "ws_per_message_deflate": False,
        # uvicorn closes a larger message with 1009 before buffering it; the session checks again.
        "ws_max_size": settings.max_frame_bytes,
        "lifespan": "on",
        "log_config": None,  # common.logs owns logging
        "access_log": False,  # the hub's middleware logs requests, scrubbed
        "server_header": False,
        "timeout_graceful_shutdown": 10,
    }


def header_timeout_protocol(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with a deadline on headers: a connection that has not completed a
    request's headers ``seconds`` after it opened, or after that request's first byte, is closed (a
    slowloris client otherwise holds its socket and buffer forever)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(seconds, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.cycle is not None and not self.cycle.response_complete:
                self._arm()  # a pipelined request dawdles behind one in progress: let that one finish first
            elif not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol


# Exit statuses of `hgr up`, `hgr hub` and `hgr edge` when they cannot start (README "Command line").
EXIT_CONFIG = 2  # a setting, a file or the model (one line per problem; `hgr config --check` names the same)
EXIT_PORT = 3  # the port or METRICS_PORT cannot be listened on (busy, not permitted, HOST unknown)


class PortUnavailable(Exception):
    """A port this server must listen on is not available; the message is the one line to show."""


def bind(host: str, port: int, what: str) -> list[socket.socket]:
    """Sockets bound to ``port`` on every address ``host`` resolves to (as asyncio's ``create_server`` would
    make them), taken now, before any worker starts, so a port another server listens on is known at once
    (PortUnavailable; ``what`` names the setting in its message). uvicorn starts listening on them once
    the app is up, so an open port still means a serving one (probes and tests rely on that). Two servers
    starting at the same instant can both bind (SO_REUSEADDR, neither listening yet); the second then
    fails when it starts to listen, as before."""
    sockets: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        reason = exc.strerror or str(exc)
        raise PortUnavailable(f"cannot listen on {host}:{port} ({what}): {reason}") from None
    return sockets


def start_metrics_listener(settings: Settings) -> None:
    """METRICS_PORT: the process's Prometheus registry (what ``/metrics`` serves) on a listener of its own,
    prometheus_client's threaded HTTP server, so a Prometheus set up to scrape a separate port (the
    deployment guide's 8001) works. ``/metrics`` stays on the main port as well (the start-up check has
    made sure the two differ). PortUnavailable when it cannot listen."""
    try:
        start_http_server(settings.metrics_port, addr=settings.host)
    except OSError as exc:
        raise PortUnavailable(f"cannot listen on {settings.host}:{settings.metrics_port} (METRICS_PORT): "
                              f"{exc.strerror or exc}") from None


class GracefulServer(uvicorn.Server):
    """uvicorn closes every open WebSocket with 1012 *before* the app's lifespan shutdown runs, which
    would cut off frames in inference. This server runs ``before_shutdown`` hooks first (for the edge:
    ``EdgeNode.stop`` — answer the frames in inference, then close with 1001), then shuts down as usual."""

    def __init__(self, config: uvicorn.Config, before_shutdown: Sequence[Callable[[], Awaitable[None]]]) -> None:
        super().__init__(config)
        self.before_shutdown = list(before_shutdown)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for hook in self.before_shutdown:
            try:
                await asyncio.wait_for(hook(), 30)
            except Exception:  # shutting down regardless
                log.exception("shutdown hook failed")
        await super().shutdown(sockets)


def say(settings: Settings, line: str) -> None:
    """A line for the person who started the server: a log record in JSON mode (every line of a JSON log
    is an object), plain text otherwise."""
    if settings.log_format == "json":
        log.info(line)
    else:
        print(line, flush=True)


def run(argv: Sequence[str], *, service: str, description: str,
        create_app: Callable[[Settings], Starlette], banner: Callable[[Settings, str, int], str],
        before_shutdown: Callable[[Starlette], Sequence[Callable[[], Awaitable[None]]]] = lambda app: ()) -> int:
    """Parse ``--host/--port`` (defaults: HOST and the service's port setting); run every start-up check
    (``common.startup``, as ``hgr config --check`` does: all problems at once, ConfigError, exit 2);
    configure logging; bind the port and listen on METRICS_PORT (one line and exit 3 when one is taken);
    only then build the app (the model, the workers), print the banner and serve until SIGINT/SIGTERM."""
    port_setting = SERVICE_PORTS[service]
    parser = argparse.ArgumentParser(prog=f"hgr {service}", description=description)
    parser.add_argument("--host", default=None, help="bind address (default: HOST)")
    parser.add_argument("--port", type=int, default=None, help=f"port (default: {port_setting.upper()})")
    args = parser.parse_args(list(argv))
    overrides = {k: v for k, v in (("host", args.host), (port_setting, args.port)) if v is not None}
    settings, warnings = startup_settings(service, **overrides)
    setup_logging(settings)
    for warning in warnings:
        log.warning("configuration: %s", warning)
    sockets: list[socket.socket] = []
    try:
        sockets = bind(settings.host, getattr(settings, port_setting),
                         f"--port or {port_setting.upper()}" if args.port is None else "--port")
        if settings.metrics_port:
            start_metrics_listener(settings)
    except PortUnavailable as exc:
        for sock in sockets:
            sock.close()
        print(f"hgr: {exc}", file=sys.stderr, flush=True)
        return EXIT_PORT
    if settings.log_format == "json":  # every line JSON from here on, native libraries' and workers' included
        native_logs.capture()
    app = create_app(settings)
    port = sockets[0].getsockname()[1]  # the port taken (PORT=0: the one the system chose)
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    say(settings, banner(settings, shown, port))
    if settings.metrics_port:
        say(settings, f"metrics also on http://{shown}:{settings.metrics_port}/metrics (METRICS_PORT)")
    config = uvicorn.Config(app, host=settings.host, port=port, **uvicorn_options(settings))
    try:
        GracefulServer(config, before_shutdown=before_shutdown(app)).run(sockets=sockets)
    except KeyboardInterrupt:
        # uvicorn re-raises Ctrl-C once its graceful shutdown is done. Die of SIGINT as the shell expects,
        # without a traceback for a normal stop.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return 0
