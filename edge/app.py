"""The edge node: its routes (/ws, /health, /ready, /metrics, the web demo at /) and their wiring.

``EdgeNode`` is what the all-in-one embeds next to the hub (sharing one ``InferencePool``);
``create_app`` builds a standalone edge with its own pool.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from hgr.common import metrics
from hgr.common.auth import DETECT, AuthError, KeyRing, key_from_headers
from hgr.common.camera_spec import NAME_RULE, valid_name
from hgr.common.config import Settings
from hgr.common.contracts import DetectionPool, HelloMessage, ResultMessage
from hgr.common.errors import spec
from hgr.common.inference.pool import InferencePool
from hgr.common.lifespan import lifespan
from hgr.common.options import default_options
from hgr.common.readiness import readiness
from hgr.edge import protocol
from hgr.edge.camera import Cameras, forget_series
from hgr.edge.session import Session
from hgr.edge.slot import FpsGate
from hgr.edge.stats import EdgeStats

if TYPE_CHECKING:  # the bus module imports paho; it is loaded only when MQTT is configured
    from hgr.common.messaging.bus import MessageBus

log = logging.getLogger("hgr.edge")


class FrameReporter(Protocol):
    """Fleet reporting as the node drives it (``edge.reporter.EdgeReporter``). ``on_frame`` and
    ``on_stream_closed`` run on the frame path: they must not block and must not raise."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def on_frame(self, stream_id: str, key_name: str | None, result: ResultMessage) -> None: ...

    def on_stream_closed(self, stream_id: str) -> None: ...

    def on_camera_available(self, name: str, online: bool) -> None: ...


def web_dir(settings: Settings) -> Path:
    return Path(settings.web_dir) if settings.web_dir else Path(__file__).resolve().parent.parent / "web"


def presented_key(websocket: WebSocket, negotiated: protocol.Negotiated) -> str | None:
    """The API key from ``Authorization: Bearer``, ``X-API-Key``, ``?token=`` or an ``hgr.key.<key>``
    subprotocol entry (the only way a browser can attach one to a WebSocket besides the URL)."""
    return key_from_headers(websocket.headers) or websocket.query_params.get("token") or negotiated.key


def origin_allowed(websocket: WebSocket, allowed: frozenset[str]) -> bool:
    """No ``Origin`` (not a browser), the page's host is the host the request went to (``Host``: the
    demo this edge serves, or a page behind the same proxy), or the origin is in ``WS_ALLOWED_ORIGINS``
    (``*``: any). Ports are not compared: a proxy's ``Host`` often drops them."""
    origin = websocket.headers.get("origin")
    if origin is None or "*" in allowed or origin.rstrip("/").lower() in allowed:
        return True
    host = urlsplit(origin).hostname
    return host is not None and host == urlsplit("//" + websocket.headers.get("host", "")).hostname


_KNOWN_CLOSE_CODES = {1000, 1001, 1003, 1005, 1006, 1007, 1008, 1009, 1011, 1012, 1013, 4409, 4422}


def close_label(code: int | None) -> str:
    """A metric label for a close code; clients may send any code 1000-4999, so bound the set."""
    code = code or 1005
    return str(code) if code in _KNOWN_CLOSE_CODES else "other"


class EdgeNode:
    def __init__(self, settings: Settings, pool: DetectionPool, *, bus: MessageBus | None = None) -> None:
        self.settings = settings
        self.pool = pool
        self.bus = bus
        self.reporter: FrameReporter | None = None
        self.defaults = default_options(settings)
        self.edge_id = settings.resolved_edge_id()
        self.keyring = KeyRing.from_spec(settings.api_keys) if settings.auth_enabled else None
        self.counts = EdgeStats()
        self.sessions: set[Session] = set()
        self._key_names = frozenset(k.name for k in self.keyring.keys) if self.keyring else frozenset()
        self._throttles: dict[str, FpsGate] = {}  # only for key names of the keyring: bounded
        self._per_key: dict[str | None, int] = {}  # open streams per key name
        self._origins = frozenset(o.strip().rstrip("/").lower() for o in settings.ws_allowed_origins.split(",")
                                  if o.strip())
        self._ids = itertools.count(1)
        self._stopping = False
        self.cameras = Cameras(self)  # CAMERAS: read by the edge itself (edge/camera.py)
        self.routes: list[BaseRoute] = [
            WebSocketRoute("/ws", self.websocket),
            Route("/health", self.health),
            Route("/ready", self.ready),
            Route("/metrics", self.metrics),
            Route("/status", self.status),
            Route("/cameras", self.cameras_status),  # the same list where a hub's /status takes the path (hgr up)
            self._web_route(),  # a mount at / catches everything: keep it last
        ]

    # --- lifecycle ---

    async def start(self) -> None:
        self._stopping = False
        if self.bus is not None and self.reporter is None:  # fleet reporting (edge/reporter.py)
            from hgr.edge.reporter import EdgeReporter
            self.reporter = reporter = EdgeReporter(self.settings, self.bus, self)
            await reporter.start()
        await self.cameras.start()
        log.info("edge node started", extra={"edge_id": self.edge_id, "auth": self.keyring is not None})

    async def stop(self) -> None:
        """Refuse new streams, answer the frames in inference, close every socket with 1001."""
        self._stopping = True
        await self.cameras.stop()
        await asyncio.gather(*(s.shutdown() for s in list(self.sessions)), return_exceptions=True)
        if self.reporter is not None:
            await self.reporter.stop()  # "offline" to the fleet, after the streams' "end" events

    # --- hooks for the fleet reporter ---

    def stats(self) -> dict[str, Any]:
        return {**self.counts.snapshot(), "connections": len(self.sessions), "workers": self.pool.stats(),
                "cameras": self.cameras.status()}

    def set_throttle(self, key_name: str, max_fps: float | None) -> bool:
        """Cap the frames of all of this key's streams on this edge (together) at ``max_fps``;
        frames above it are dropped with reason ``throttled``. None lifts the cap. False when this edge
        has no key of that name (without auth, no stream has a key): the command is for nothing here,
        and the table stays bounded by the keyring whatever names a publisher on the control topic sends."""
        if key_name not in self._key_names:
            return False
        if max_fps is None:
            self._throttles.pop(key_name, None)
        else:
            self._throttles[key_name] = FpsGate(max_fps)
        return True

    def set_stream_throttle(self, stream_id: str, max_fps: float | None) -> bool:
        """Cap one stream (the id of its ``hello`` and its fleet events) at ``max_fps``; frames above it
        are dropped with reason ``throttled``. None lifts the cap. False when no open stream has that id.
        The gate lives on the session, so it ends with its connection: nothing here to clean up."""
        # A scan, not an index: at most MAX_CONNECTIONS sessions, and control commands are rare.
        session = next((s for s in self.sessions if s.stream_id == stream_id), None)
        if session is None:
            return False
        session.throttle = None if max_fps is None else FpsGate(max_fps)
        return True

    def throttle_for(self, key_name: str | None) -> FpsGate | None:
        return self._throttles.get(key_name) if key_name is not None and self._throttles else None

    def report_frame(self, stream_id: str, key_name: str | None, message: ResultMessage) -> None:
        # EdgeReporter.on_frame guards itself: reporting never breaks a stream.
        if self.reporter is not None:
            self.reporter.on_frame(stream_id, key_name, message)

    # --- routes ---

    async def websocket(self, websocket: WebSocket) -> None:
        negotiated = protocol.negotiate(websocket.scope.get("subprotocols") or [])
        key_name = None
        if self.keyring is not None:
            try:
                entry = self.keyring.verify(presented_key(websocket, negotiated))
                if not entry.allows(DETECT):  # a fleet-only key does not stream (docs/security.md)
                    raise AuthError(f"key {entry.name!r} lacks the {DETECT!r} scope", code="forbidden")
                key_name = entry.name
            except AuthError as exc:
                await self._refuse(websocket, negotiated, exc.message, exc.code)
                return
        if not origin_allowed(websocket, self._origins):
            await self._refuse(websocket, negotiated, "this origin may not open streams on this edge "
                               "(WS_ALLOWED_ORIGINS)", error_code="origin_not_allowed")
            return
        if self._stopping or len(self.sessions) >= self.settings.max_connections:
            await self._refuse(websocket, negotiated, f"edge overloaded: {self.settings.max_connections} connections",
                               error_code="overloaded")
            return
        per_key = self.settings.max_connections_per_key
        if per_key and key_name is not None and self._per_key.get(key_name, 0) >= per_key:
            await self._refuse(websocket, negotiated, f"this key already holds {per_key} streams on this edge",
                               error_code="too_many_connections")
            return
        name = websocket.query_params.get("camera")  # a stable name for the stream (docs/protocol.md)
        if name is not None and (refusal := self.name_refusal(name, key_name=key_name)) is not None:
            await self._refuse(websocket, negotiated, *refusal)
            return
        stream_id = name or self._random_stream_id()
        session = Session(self, websocket, negotiated, key_name, stream_id)
        self.sessions.add(session)  # before any await, so the connection limits cannot be overshot
        self._per_key[key_name] = self._per_key.get(key_name, 0) + 1
        if name is not None:
            self.name_stream(session, name)
        metrics.WS_CONNECTIONS.set(len(self.sessions))
        try:
            await websocket.accept(subprotocol=negotiated.subprotocol)
            await session.run(self._hello(negotiated, stream_id))
        finally:
            self.sessions.discard(session)
            if (left := self._per_key.pop(key_name) - 1) > 0:
                self._per_key[key_name] = left
            metrics.WS_CONNECTIONS.set(len(self.sessions))
            metrics.WS_CLOSED.labels(close_label(session.close_code)).inc()
            self.pool.close_stream(session.stream_id)  # a stream named by its first frame changed its id
            if self.reporter is not None:  # guards itself, like on_frame
                self.reporter.on_stream_closed(session.stream_id)
            if session.camera is not None:
                forget_series(session.camera, metrics.CAMERA_UP, metrics.CAMERA_FRAMES_PROCESSED)
                self.camera_available(session.camera, False)

    def _random_stream_id(self) -> str:
        while True:  # a client may have named its stream like one of these: never hand out a taken id
            stream_id = f"{next(self._ids):x}-{secrets.token_hex(3)}"
            if stream_id not in self.cameras and all(s.stream_id != stream_id for s in self.sessions):
                return stream_id

    def name_refusal(self, name: str, session: Session | None = None, *,
                     key_name: str | None = None) -> tuple[str, str] | None:
        """Why a stream may not take ``name`` (reason, error code), or None: names follow the cameras' rule,
        are among those the stream's key may take, and are unique on the edge, among live streams and
        configured cameras alike. The key is ``session``'s, or ``key_name`` before the session exists."""
        if not valid_name(name):
            return f"stream name {name[:40]!r}: expected {NAME_RULE}", "bad_stream_name"
        if not self._may_name(session.key_name if session is not None else key_name, name):
            return f"stream name {name!r} is not one this API key may take", "stream_name_forbidden"
        if name in self.cameras or any(s.stream_id == name and s is not session for s in self.sessions):
            return f"stream name {name!r} is taken on this edge", "stream_name_taken"
        return None

    def _may_name(self, key_name: str | None, name: str) -> bool:
        """The key's ``camera:`` allowances (API_KEYS) hold; with no keyring every name is open."""
        if self.keyring is None or key_name is None:
            return True
        entry = self.keyring.by_name.get(key_name)
        return entry is not None and entry.may_name(name)

    def name_stream(self, session: Session, name: str) -> None:
        """Give ``session`` the (checked) ``name``: its stream id, its results' ``camera``, its metric series
        (removed when it closes, so the label takes at most MAX_CONNECTIONS names besides the cameras')."""
        session.stream_id = session.camera = name
        metrics.CAMERA_UP.labels(name).set(1)
        self.camera_available(name, True)

    def camera_available(self, name: str, online: bool) -> None:
        """A camera of CAMERAS went up or down, or a named stream opened or closed (its ``available`` topic)."""
        if self.reporter is not None:  # guards itself, like on_frame
            self.reporter.on_camera_available(name, online)

    async def _refuse(self, websocket: WebSocket, negotiated: protocol.Negotiated, reason: str,
                      error_code: str) -> None:
        """Close with the catalogue's close code for ``error_code`` (1008 auth, 1013 overloaded)."""
        # Accept first: refusing the handshake would give the client an HTTP 403 and no close code.
        code = spec(error_code).ws_close
        assert code is not None, f"{error_code} has no WebSocket close code in the catalogue"
        self.counts.error(error_code)
        metrics.WS_CLOSED.labels(close_label(code)).inc()
        try:
            await websocket.accept(subprotocol=negotiated.subprotocol)
            await websocket.close(code, reason[:120])
        except Exception as exc:  # noqa: BLE001 - the client left first
            log.debug("refused client already gone: %s", exc)

    def _hello(self, negotiated: protocol.Negotiated, stream_id: str) -> HelloMessage:
        s, d = self.settings, self.defaults
        message = protocol.hello(
            edge_id=self.edge_id, encoding=negotiated.encoding, version=s.app_version,
            limits={"max_frame_bytes": s.max_frame_bytes, "max_fps": s.max_fps,
                    "idle_timeout_s": s.idle_timeout, "max_connections": s.max_connections},
            models=sorted(self.pool.model_paths),
            defaults={"num_hands": d.num_hands, "mirrored": d.mirrored, "model": d.model})
        message["stream"] = stream_id
        return message

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "edge_id": self.edge_id})

    async def ready(self, request: Request) -> Response:
        stats = self.pool.stats()
        status, body = readiness(ready=bool(self.pool.ready), workers=stats["alive"], models=stats["models"],
                                 stopping=self._stopping)
        return JSONResponse(body, status_code=status)

    async def status(self, request: Request) -> Response:
        """The edge's own state: its id, streams, frame counters and its cameras (docs/cameras.md). Served
        without a key (docs/security.md), so no process ids and camera sources without credentials."""
        return JSONResponse({"edge_id": self.edge_id, "version": self.settings.app_version,
                             "connections": len(self.sessions), "stopping": self._stopping,
                             **{k: v for k, v in self.counts.snapshot().items() if k != "frames_by_key"},
                             "workers": {k: v for k, v in self.pool.stats().items() if k not in ("pids", "per_worker")},
                             "cameras": self.cameras.status()})

    async def cameras_status(self, request: Request) -> Response:
        return JSONResponse({"cameras": self.cameras.status()})

    async def metrics(self, request: Request) -> Response:
        body, content_type = await metrics.render_off_loop()
        return Response(body, media_type=content_type)

    def _web_route(self) -> BaseRoute:
        folder = web_dir(self.settings)
        if folder.is_dir():
            return Mount("/", app=StaticFiles(directory=folder, html=True), name="web")

        async def no_web(request: Request) -> Response:
            return PlainTextResponse(f"hgr edge {self.edge_id}: the web demo is not installed "
                                     f"({folder} not found). Stream frames to /ws.\n")
        return Route("/", no_web)


def create_app(settings: Settings) -> Starlette:
    """A standalone edge: its own pool (model found via common.inference.model), started and stopped with the app."""
    from hgr.common.inference.model import model_paths

    pool = InferencePool(settings, model_paths(settings), service="edge")
    from hgr.common.messaging.bus import make_bus
    node = EdgeNode(settings, pool, bus=make_bus(settings) if settings.mqtt_url else None)

    app = Starlette(routes=node.routes, lifespan=lifespan(pool, node))
    app.state.edge = node
    app.state.pool = pool
    return app
