"""Running an app under uvicorn: the one way `hgr edge`, `hgr hub` and `hgr up` start a server.

Server options are the ones measured fastest for JPEG frames over WebSocket (docs/protocol.md):
websockets-sansio, uvloop, httptools, and no permessage-deflate (it cannot shrink JPEG and cost 50×
in throughput).

Slow clients (docs/deployment.md "Hardening"): uvicorn closes an idle keep-alive connection after
``KEEP_ALIVE_TIMEOUT`` but has no timeout for a request's headers, so ``HeaderTimeoutProtocol`` closes a
connection whose headers are not complete ``HEADER_TIMEOUT`` seconds after it opened (or after the first
byte of a further request). Nor does uvicorn's httptools protocol bound a request's head (an 80 MB header
or a million of them were read, the parser concatenating as they came): the same protocol answers
``431 headers_too_large`` past ``MAX_HEADER_BYTES`` or ``MAX_HEADERS`` and closes the connection. Bodies
have ``BODY_TIMEOUT`` (``hub.bodies``); WebSocket streams ``IDLE_TIMEOUT``, and a WebSocket client that
leaves more than ``WS_MAX_UNREAD`` of its output unread for ``WS_UNREAD_TIMEOUT`` seconds is dropped
(``GuardedWebSocketProtocol``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import uvicorn
from prometheus_client import start_http_server
from starlette.applications import Starlette

from hgr.common import internals, metrics, native_logs
from hgr.common.config import Settings
from hgr.common.errors import spec
from hgr.common.logs import setup_logging
from hgr.startup import SERVICE_PORTS, startup_settings

log = logging.getLogger("hgr.serve")


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    # A uvicorn without the internals a guard hooks into gets the stock protocol (common.internals logs it).
    found = internals.check_all()
    ws: str | type[asyncio.Protocol] = "websockets"  # no frame guard (put a proxy in front)
    if not found["uvicorn_ws_guards"]:
        ws = guarded_websocket_protocol(settings.ws_max_control_rate, settings.ws_max_fragments,
                                        settings.ws_max_unread, settings.ws_unread_timeout)
    http: str | type[asyncio.Protocol] = "h11"  # h11 bounds the head's size (a 400), not its time or count
    if importlib.util.find_spec("httptools") and not found["uvicorn_header_timeout"]:
        http = header_timeout_protocol(settings.header_timeout, settings.max_header_bytes, settings.max_headers)
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
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        # X-Forwarded-For is believed only from these (uvicorn's ProxyHeadersMiddleware); hub.callers then
        # takes the client address only if it is one (a forged header is any string, of any length).
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
    }


LINGER_S, LINGER_BYTES = 2.0, 1024 * 1024  # after a 431: how long, and how much more, is read and dropped


class Linger:
    """After refusing a client on ``transport``: end our side (EOF after the answer), then read and drop
    what the client still sends for at most ``LINGER_S`` seconds or ``LINGER_BYTES`` bytes, then close.
    Closing at once with unread data resets the connection, and the reset can destroy the answer (the 431,
    the close frame) before the client reads it."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.dropped = 0
        if transport.can_write_eof():
            transport.write_eof()
        self.timer = loop.call_later(LINGER_S, transport.close)

    def drop(self, data: bytes) -> None:
        self.dropped += len(data)
        if self.dropped > LINGER_BYTES:
            self.transport.close()

    def cancel(self) -> None:
        self.timer.cancel()


class HeadersTooLarge(Exception):
    """Raised from a parser callback to stop parsing a request whose head is over a limit."""


def headers_too_large_response() -> bytes:
    """The whole HTTP response for ``headers_too_large``: the catalogue's status and the common JSON error
    body (no request id: the request never reached the app), then the connection is closed."""
    code = "headers_too_large"
    body = json.dumps({"error": {"code": code, "message": "request headers too large"}}).encode()
    return (f"HTTP/1.1 {spec(code).status} Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


def header_timeout_protocol(seconds: float, max_bytes: int = 64 * 1024, max_headers: int = 100
                            ) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with a deadline on headers: a connection that has not completed a
    request's headers ``seconds`` after it opened, or after that request's first byte, is closed (a
    slowloris client otherwise holds its socket and buffer forever). And with bounds on a request's head:
    past ``max_bytes`` (the request line and every header name and value) or ``max_headers`` fields it is
    answered 431 and closed. Completed fields are counted exactly as the parser reports them; a field that
    never ends is caught by the bytes that arrived while the head was incomplete, so at most one read
    (≤ 256 KiB) beyond the limit is ever buffered."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _in_head = False  # between a request's first byte and the end of its headers
        _head_bytes = 0  # of this head: exact for completed fields, or what arrived while it was incomplete
        _exact_bytes = 0
        _head_fields = 0
        _over_limit = False
        _linger: Linger | None = None

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

        def _refuse(self) -> None:
            """431, then close. The rest of what the client sends is read and dropped for a moment (at most
            ``LINGER_S``, ``LINGER_BYTES``) before the socket closes: closing with unread data would reset
            the connection, and the reset can destroy the 431 before the client reads it."""
            self._disarm()
            if self._linger is not None or self.transport.is_closing():
                return
            self.transport.write(headers_too_large_response())
            self._linger = Linger(self.transport, self.loop)

        def data_received(self, data: bytes) -> None:
            if self._linger is not None:  # refused: dropped, and a client that goes on sending is cut off
                self._linger.drop(data)
                return
            counting = self._in_head  # the whole of this read belongs to the head if it stays incomplete
            super().data_received(data)
            if counting and self._in_head:
                self._head_bytes += len(data)
                if self._head_bytes > max_bytes:
                    self._refuse()

        def send_400_response(self, msg: str) -> None:
            if self._over_limit:  # the parser stopped because a callback below raised HeadersTooLarge
                self._refuse()
            else:
                super().send_400_response(msg)

        def on_url(self, url: bytes) -> None:
            self._count(len(url), 0)
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4, 1)
            super().on_header(name, value)

        def _count(self, size: int, fields: int) -> None:
            self._head_fields += fields
            self._exact_bytes += size
            if self._exact_bytes > max_bytes or self._head_fields > max_headers:
                self._over_limit = True  # uvicorn turns the parser's error into send_400_response, above
                raise HeadersTooLarge()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head, self._head_bytes, self._exact_bytes, self._head_fields = True, 0, 0, 0
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            self._in_head = False
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._linger is not None:
                self._linger.cancel()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol


WS_READ_SLICE = 16 * 1024  # bytes parsed before the frame budgets are checked again


def guarded_websocket_protocol(control_rate: float, max_fragments: int, max_unread: int = 256 * 1024,
                               unread_timeout: float = 10.0) -> type[asyncio.Protocol]:
    """uvicorn's websockets-sansio protocol, with frames that carry no message counted (issue 20 rows 7-8),
    and the output a client leaves unread bounded.

    uvicorn parses every frame and answers every ping, whether the client reads or not, and a message may
    come in any number of continuation frames: 400 000 pings never read held 46 MB of pongs, and a stream
    of 1-byte fragments kept the event loop parsing (a legitimate stream on the same edge fell to 4 % and
    0 % of its rate, /health to 1.8 s and 4.5 s). Here ping and pong frames draw on a token bucket
    (``control_rate`` per second, bursts of 5 s worth) and a message may have at most ``max_fragments``
    frames; a connection over either is failed with close 1008 (``too_many_frames``), its app told at
    once. A read is parsed ``WS_READ_SLICE`` bytes at a time, so the loop never parses more than one slice
    of a flood past the limit. The websockets library has no such limits to configure; the hooks are
    uvicorn's per-frame handlers (``handle_ping``, ``handle_pong``, ``handle_text``, ``handle_bytes``,
    ``handle_cont``), which tests/test_serve_guards.py checks are still called by ``handle_events``.

    Unread output: a client that never reads leaves the edge's results in the socket's kernel send buffer
    (autotuned up to ``net.ipv4.tcp_wmem``'s 4 MiB), then in the transport's buffer, where stock uvicorn
    keeps them, and a ``transport.close()`` then waits for that buffer to drain: for ever, if the client
    never reads (the keepalive's close and the session's own included). Here the kernel buffer is set to
    ``max_unread`` (``SO_SNDBUF`` gets half: Linux doubles it for its bookkeeping) and the transport's high
    water to 0, so any byte that does not fit in the kernel pauses writing (uvicorn's ``send`` waits, the
    session makes no more results) and arms a timer; a resume (the buffer drained) disarms it. A
    connection still paused ``unread_timeout`` seconds later is dropped (``transport.abort()``: nothing
    more can reach a client that does not read), its app told with close 1008 (``not_reading``)."""
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.frames import Frame

    burst = 5 * control_rate

    class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
        _tokens = burst
        _refilled_at = 0.0
        _fragments = 0
        _linger: Linger | None = None
        _unread_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            sock = transport.get_extra_info("socket")
            if sock is not None:  # a transport without one (tests' fakes) keeps the system's buffer
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, max(1, max_unread // 2))
            cast(asyncio.WriteTransport, transport).set_write_buffer_limits(high=0)

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._unread_timer is None:
                self._unread_timer = self.loop.call_later(unread_timeout, self._not_reading)

        def resume_writing(self) -> None:
            self._disarm_unread()
            super().resume_writing()

        def _disarm_unread(self) -> None:
            if self._unread_timer is not None:
                self._unread_timer.cancel()
                self._unread_timer = None

        def _not_reading(self) -> None:
            """Still paused ``unread_timeout`` after the kernel buffer filled: drop the connection. Also when it
            is already closing (a close frame queued behind what the client never read would hold the
            socket and its buffers until the client goes)."""
            self._unread_timer = None
            reason = f"output unread past {max_unread} bytes for {unread_timeout:g} s"
            metrics.ERRORS.labels("edge", "not_reading").inc()
            log.info("websocket dropped: %s", reason, extra={"client": self.client, "code": "not_reading"})
            if not self.close_sent:
                self.close_sent = True
                self.queue.put_nowait({"type": "websocket.disconnect", "code": spec("not_reading").ws_close or 1008,
                                       "reason": reason})
            self.transport.abort()

        def data_received(self, data: bytes) -> None:
            if self._linger is not None:  # failed: what the client still sends is dropped
                self._linger.drop(data)
                return
            for start in range(0, len(data), WS_READ_SLICE):
                super().data_received(data[start:start + WS_READ_SLICE])
                if self._linger is not None or self.transport.is_closing():
                    return

        def handle_ping(self) -> None:
            if self._control_frame():
                super().handle_ping()

        def handle_pong(self, event: Frame) -> None:
            if self._control_frame():
                super().handle_pong(event)

        def handle_text(self, event: Frame) -> None:
            self._fragments = 1
            super().handle_text(event)

        def handle_bytes(self, event: Frame) -> None:
            self._fragments = 1
            super().handle_bytes(event)

        def handle_cont(self, event: Frame) -> None:
            self._fragments += 1
            if self._fragments > max_fragments:
                self._fail(f"a message in more than {max_fragments} frames")
            elif self._linger is None:
                super().handle_cont(event)

        def _control_frame(self) -> bool:
            now = self.loop.time()
            self._tokens = min(burst, self._tokens + (now - self._refilled_at) * control_rate)
            self._refilled_at = now
            if self._tokens < 1:
                self._fail(f"more than {control_rate:g} ping/pong frames per second")
                return False
            self._tokens -= 1
            return self._linger is None

        def _fail(self, reason: str) -> None:
            """Close 1008 and tell the app now; the client's further frames are dropped unparsed."""
            if self._linger is not None or self.close_sent or self.transport.is_closing():
                return
            metrics.ERRORS.labels("edge", "too_many_frames").inc()
            log.info("websocket closed: %s", reason, extra={"client": self.client, "code": "too_many_frames"})
            self.conn.fail(spec("too_many_frames").ws_close or 1008, reason)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            self.queue.put_nowait({"type": "websocket.disconnect", "code": 1008, "reason": reason})
            self._linger = Linger(self.transport, self.loop)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_unread()
            if self._linger is not None:
                self._linger.cancel()
            super().connection_lost(exc)

    return GuardedWebSocketProtocol


# Exit statuses of `hgr up`, `hgr hub` and `hgr edge` when they cannot start (README "Command line").
EXIT_CONFIG = 2  # a setting, a file or the model (one line per problem; `hgr config --check` names the same)
EXIT_PORT = 3  # the port or METRICS_PORT cannot be listened on (busy, not permitted, HOST unknown)
GC_OLDEST_EVERY = 100  # a full collection is considered every 100th middle one (Python's default: 10th)


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


def steady_gc() -> None:
    """Keep the cyclic garbage collector's full passes rare and short in a server. A full pass walks every
    tracked object: a hub holding a fleet's edges and their series (hundreds of thousands of objects) took
    75-105 ms for each, about once a second while MQTT messages flooded in (research.abuse row 6: that was
    the hub's /health p99). What start-up built (modules, the app) lives as long as the process, so it is
    frozen out of every pass; and the oldest generation is looked at GC_OLDEST_EVERY times less often than
    Python's default (its youngest two keep their defaults: short-lived garbage goes as soon as before)."""
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, GC_OLDEST_EVERY)


def run(argv: Sequence[str], *, service: str, description: str,
        create_app: Callable[[Settings], Starlette], banner: Callable[[Settings, str, int], str],
        before_shutdown: Callable[[Starlette], Sequence[Callable[[], Awaitable[None]]]] = lambda app: ()) -> int:
    """Parse ``--host/--port`` (defaults: HOST and the service's port setting); run every start-up check
    (``hgr.startup``, as ``hgr config --check`` does: all problems at once, ConfigError, exit 2);
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
    steady_gc()
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
