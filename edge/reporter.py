"""The edge's fleet reporting: birth/offline status, periodic metrics, debounced events, control.

``EdgeReporter(settings, bus, node)`` talks to the hub through ``common.messaging.bus`` (topics and payloads
in ``common.messaging.topics`` and docs/mqtt.md):

- on every (re)connect a retained ``online`` *birth* (version, model, capabilities, a birth sequence
  number, the session id and the last metrics sequence number); the Will and a clean ``stop`` say
  ``offline``;
- every ``METRICS_INTERVAL`` s a metrics message built from ``node.stats()``, numbered per session so
  the hub can detect gaps; ``frames_by_key`` carries the frames *since the previous message*;
- ``on_frame`` (called by the edge for every result, on the event loop) feeds the per-stream event
  debouncer and, with ``MQTT_RESULTS``, publishes the result at QoS 0. It does dictionary work and at
  most a non-blocking ``bus.publish``: the frame path never waits for the broker;
- the per-camera state topics (``fingers``, ``hands``, ``gesture``) on change; ``available`` through
  ``edge.availability``: on a broker, each camera's own connection whose Will says ``offline``;
- ``…/control`` commands: ``throttle`` of a key (``node.set_throttle(key, max_fps)``) or of one stream
  (``node.set_stream_throttle(stream, max_fps)``), lifted after ``duration_s``; and ``rebirth``. Invalid
  commands, and throttles of streams this edge does not have, are counted in ``control_ignored``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, Literal, Protocol

from hgr.common.camera_spec import parse_cameras
from hgr.common.config import Settings
from hgr.common.contracts import (
    CameraReport,
    EdgePayload,
    Envelope,
    EventFields,
    EventPayload,
    MetricsBody,
    MetricsPayload,
    RebirthCommand,
    ResultMessage,
    StatusOffline,
    StatusOnline,
    ThrottleCommand,
)
from hgr.common.messaging.outbox import Message
from hgr.common.messaging.topics import (
    KINDS,
    SCHEMA_VERSION,
    PayloadError,
    camera_topic,
    conform,
    decode,
    edge_topic,
    encode,
)
from hgr.edge.availability import availability_for
from hgr.edge.ha_discovery import discovery_configs, discovery_filter
from hgr.edge.protocol import ENCODINGS
from hgr.edge.stream_events import EventTracker, HandState, state_fields

if TYPE_CHECKING:  # the bus module imports paho; it is loaded only when MQTT is configured
    from hgr.common.messaging.bus import MessageBus

log = logging.getLogger("hgr.edge.reporter")

PROTOCOLS = list(ENCODINGS)
TEXT = "text/plain"
JSON_TYPE = "application/json"  # the per-camera state topics: a value a home-automation rule uses as it is


def camera_values(state: HandState) -> dict[str, str]:
    """The per-camera state topics' payloads for a stable hand state: total fingers, hands, and the gesture
    (the hands' shared gesture, else the first hand's in ``state`` order; ``none`` without hands)."""
    total, hands = state
    gestures = [g for _, _, g in hands]
    return {"fingers": str(total), "hands": str(len(hands)), "gesture": gestures[0] if gestures else "none"}


class ReportingNode(Protocol):
    def stats(self) -> dict[str, Any]: ...

    def set_throttle(self, key_name: str, max_fps: float | None) -> bool: ...

    def set_stream_throttle(self, stream_id: str, max_fps: float | None) -> bool: ...


# What a throttle applies to: ("key", key name) or ("stream", stream id).
ThrottleTarget = tuple[str, str]


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def metrics_doc(stats: dict[str, Any], prev: dict[str, Any] | None, elapsed_s: float) -> MetricsBody:
    """The metrics message body from two consecutive ``node.stats()`` snapshots (pure)."""
    processed = int(_num(stats.get("frames_processed")))
    dropped: dict[str, int | float] = {str(k): int(_num(v)) for k, v in (stats.get("frames_dropped") or {}).items()}
    by_key_now = {str(k): int(_num(v)) for k, v in (stats.get("frames_by_key") or {}).items()}
    by_key_prev = (prev or {}).get("frames_by_key") or {}
    by_key: dict[str, int | float] = {}
    for key, n in by_key_now.items():
        delta = n - int(_num(by_key_prev.get(key, 0)))
        if delta < 0:  # the node's counter restarted: all of it is new
            delta = n
        if delta:
            by_key[key] = delta
    prev_processed = int(_num((prev or {}).get("frames_processed"))) if prev else 0
    fps = max(0, processed - prev_processed) / elapsed_s if prev and elapsed_s > 0 else 0.0
    body: MetricsBody = {
        "frames": {"received": int(_num(stats.get("frames_received"))), "processed": processed,
                   "dropped": sum(dropped.values())},
        "fps": round(fps, 2),
        "drops": dropped,
        "latency_ms": {p: round(_num((stats.get("latency_ms") or {}).get(p)), 3) for p in ("p50", "p95", "p99")},
        "connections": int(_num(stats.get("connections"))),
        "workers": stats.get("workers") or {},
        "errors": {str(k): int(_num(v)) for k, v in (stats.get("errors") or {}).items()},
        "frames_by_key": by_key,
        "interval_s": round(elapsed_s, 3),
    }
    if stats.get("cameras"):
        body["cameras"] = [camera_report(c) for c in stats["cameras"]]
    return body


def camera_report(camera: dict[str, Any]) -> CameraReport:
    """A camera's ``status()`` as the metrics message carries it (counters since the edge started)."""
    age = camera.get("last_frame_age_s")
    return {"name": str(camera.get("name")), "up": bool(camera.get("up")), "fps": _num(camera.get("fps")),
            "reconnects": int(_num(camera.get("reconnects"))),
            "last_frame_age_s": None if age is None else _num(age),
            "frames_read": int(_num(camera.get("frames_read"))),
            "frames_processed": int(_num(camera.get("frames_processed"))),
            "frames_dropped": int(_num(camera.get("frames_dropped")))}


class EdgeReporter:
    def __init__(self, settings: Settings, bus: MessageBus, node: ReportingNode) -> None:
        self.settings = settings
        self.bus = bus
        self.node = node
        self.edge_id = settings.resolved_edge_id()
        self.fmt = settings.mqtt_payload
        self.session = uuid.uuid4().hex[:16]  # one per process: tells a restart from a reconnect
        self.birth_seq = 0
        self.metrics_seq = 0
        self.event_seq = 0
        self.events = EventTracker(settings.event_debounce_ms / 1000.0)
        self.control_received: dict[str, int] = {}
        self.control_ignored: dict[str, int] = {}  # by reason: invalid, unknown_stream, unknown_key
        self._topics = {kind: edge_topic(settings.mqtt_topic_prefix, self.edge_id, kind)
                        for kind in KINDS}
        self._prev_stats: dict[str, Any] | None = None
        self._prev_at = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._lifts: dict[ThrottleTarget, asyncio.TimerHandle] = {}
        self._started = False
        # Per-camera state topics: what was last published for each configured camera and live named stream.
        self._configured = camera_names(settings.cameras)
        self._cameras: dict[str, dict[str, str]] = {name: {"available": "offline"} for name in self._configured}
        # Who writes `available`: one connection per camera with an `offline` Will (edge/availability.py)
        self.availability = availability_for(settings, bus, self.edge_id, self._configured)
        # HA_DISCOVERY: the configs this edge publishes now (a retained one of ours not among them is removed)
        self._discovery: dict[str, bytes] = {}
        if settings.ha_discovery:
            for name in self._configured:
                for topic, config in discovery_configs(settings.ha_discovery_prefix, settings.mqtt_topic_prefix,
                                                       self.edge_id, name, settings.app_version).items():
                    self._discovery[topic] = json.dumps(config, separators=(",", ":")).encode()

    # --- lifecycle ---
    async def start(self) -> None:
        content_type = encode({}, self.fmt)[1]

        def will(conn: int) -> bytes:  # names its connection: a late Will of an old one is ignored
            return encode(self._offline("will", conn), self.fmt)[0]

        self.bus.set_will(self._topics["status"], will, qos=1, retain=True, content_type=content_type)
        self.bus.add_connect_listener(self.publish_birth)
        self.bus.subscribe(self._topics["control"], self._on_control)
        await self.availability.start()
        if self.settings.ha_discovery:
            self.bus.subscribe(discovery_filter(self.settings.ha_discovery_prefix, self.edge_id),
                               self._on_discovery_config)
        self._prev_stats, self._prev_at = self._stats(), time.monotonic()
        await self.bus.start()
        self._started = True
        self._task = asyncio.create_task(self._metrics_loop(), name="edge-metrics")

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for handle in self._lifts.values():
            handle.cancel()
        now = time.monotonic()
        for stream_id in list(self.events.streams):
            self.on_stream_closed(stream_id, _now=now)
        for name in list(self._cameras):  # a clean stop: every camera says offline (a crash: their Wills)
            self.on_camera_available(name, False)
        await self.availability.stop()  # acknowledged before the status says offline (bounded)
        self._publish("status", self._offline("shutdown", self.bus.connects, time.time()), qos=1, retain=True)
        await self.bus.stop()

    # --- messages (contracts.EdgePayload) ---
    def _envelope(self) -> Envelope:
        return {"v": SCHEMA_VERSION, "edge_id": self.edge_id, "session": self.session}

    def _offline(self, reason: str, conn: int, ts: float | None = None) -> StatusOffline:
        offline = StatusOffline(v=SCHEMA_VERSION, edge_id=self.edge_id, session=self.session, status="offline",
                                reason=reason, conn=conn)
        if ts is not None:  # not in the Will: it is written at connect time
            offline["ts"] = ts
        return offline

    def _publish(self, kind: str, payload: EdgePayload, *, qos: int, retain: bool = False) -> None:
        data, content_type = encode(payload, self.fmt)
        self.bus.publish(self._topics[kind], data, qos=qos, retain=retain, content_type=content_type)

    def publish_birth(self) -> None:
        self.birth_seq += 1
        s = self.settings
        birth = StatusOnline(
            v=SCHEMA_VERSION, edge_id=self.edge_id, session=self.session,
            status="online", birth_seq=self.birth_seq, conn=self.bus.connects, metrics_seq=self.metrics_seq,
            ts=time.time(), version=s.app_version, model=s.model_variant, metrics_interval_s=s.metrics_interval,
            capabilities={"protocols": PROTOCOLS, "max_fps": s.max_fps, "max_connections": s.max_connections,
                          "workers": s.resolved_workers(), "results_topic": s.mqtt_results,
                          "payload": self.fmt, "control": ["throttle", "throttle_stream", "rebirth"]})
        if self._configured:
            birth["cameras"] = self._configured
        self._publish("status", birth, qos=1, retain=True)
        for name, values in list(self._cameras.items()):  # the retained state again (a broker may have lost it)
            self._set_camera(name, values, force=True)
        for topic, config in self._discovery.items():  # HA_DISCOVERY: after the state its entities read
            self.bus.publish(topic, config, qos=1, retain=True, content_type=JSON_TYPE)

    def _stats(self) -> dict[str, Any]:
        try:
            return self.node.stats()
        except Exception:
            log.exception("node.stats() failed")
            return {}

    def publish_metrics(self) -> None:
        stats, now = self._stats(), time.monotonic()
        body = metrics_doc(stats, self._prev_stats, now - self._prev_at)
        self._prev_stats, self._prev_at = stats, now
        self.metrics_seq += 1
        payload: MetricsPayload = {
            **self._envelope(), **body, "seq": self.metrics_seq, "ts": time.time(),
            "outbox": {"queued": len(self.bus.outbox), "dropped": sum(self.bus.outbox.dropped.values())}}
        self._publish("metrics", payload, qos=1)

    async def _metrics_loop(self) -> None:
        interval = self.settings.metrics_interval
        next_at = time.monotonic() + interval
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            if next_at < time.monotonic():  # fell behind (a stalled loop): don't burst to catch up
                next_at = time.monotonic() + interval
            try:
                self.publish_metrics()
            except Exception:
                log.exception("publishing metrics failed")

    # --- called by the edge on the frame path: cheap, never blocks ---
    def on_frame(self, stream_id: str, key_name: str | None, result: ResultMessage) -> None:
        try:
            if self.settings.mqtt_results:
                if self.bus.sends_now():
                    self._publish("results", {**self._envelope(), "stream": stream_id, "key": key_name,
                                              "ts": time.time(), "result": result}, qos=0)
                else:  # would be dropped unsent: count it without encoding every frame's landmarks
                    self.bus.outbox.drop(Message(self._topics["results"], b""))
            change = self.events.observe(stream_id, result, time.monotonic())
            if change is not None:
                phase, state = change
                self._publish_event(stream_id, key_name, phase, state_fields(state))
                if (name := result.get("camera")) is not None:
                    self._set_camera(name, camera_values(state))
        except Exception:  # reporting must never break a stream
            log.exception("on_frame reporting failed")

    def on_camera_available(self, name: str, online: bool) -> None:
        """A configured camera went up or down, or a named stream opened or closed: its ``available`` topic.
        A named stream's entry goes when it closes (the table holds live names only)."""
        try:
            self._set_camera(name, {"available": "online" if online else "offline"})
            if not online and name not in self._configured:
                self._cameras.pop(name, None)
        except Exception:
            log.exception("on_camera_available reporting failed")

    def _set_camera(self, name: str, values: dict[str, str], *, force: bool = False) -> None:
        """Publish (retained, QoS 1, plain text) each value that differs from the last one published;
        ``available`` goes to its one publisher, ``self.availability``."""
        known = self._cameras.setdefault(name, {})
        for leaf, value in values.items():
            if force or known.get(leaf) != value:
                known[leaf] = value
                if leaf == "available":
                    self.availability.set(name, value == "online", again=force)
                    continue
                self.bus.publish(camera_topic(self.settings.mqtt_topic_prefix, self.edge_id, name, leaf),
                                 value.encode(), qos=1, retain=True, content_type=TEXT)

    def _on_discovery_config(self, topic: str, payload: bytes, props: dict[str, Any]) -> None:
        """A retained discovery config under this edge's node id that it does not publish any more (a camera
        taken out of CAMERAS): removed, as Home Assistant removes an entity, by an empty retained config."""
        if payload and topic not in self._discovery:
            log.info("removing the Home Assistant discovery config %s", topic)
            self.bus.publish(topic, b"", qos=1, retain=True, content_type=None)

    def on_stream_closed(self, stream_id: str, *, _now: float | None = None) -> None:
        # The stream's throttle went with its session; its timer goes too (the table stays bounded).
        if lift := self._lifts.pop(("stream", stream_id), None):
            lift.cancel()
        try:
            ended = self.events.end(stream_id, time.monotonic() if _now is None else _now)
            if ended is not None:
                state, duration = ended
                self._publish_event(stream_id, None, "end", state_fields(state), round(duration, 3))
        except Exception:
            log.exception("on_stream_closed reporting failed")

    def _publish_event(self, stream_id: str, key_name: str | None, phase: Literal["new", "update", "end"],
                       fields: EventFields, duration_s: float | None = None) -> None:
        self.event_seq += 1
        event = EventPayload(v=SCHEMA_VERSION, edge_id=self.edge_id, session=self.session, seq=self.event_seq,
                             ts=time.time(), stream=stream_id, key=key_name, phase=phase,
                             total_fingers=fields["total_fingers"], hands=fields["hands"])
        if duration_s is not None:
            event["duration_s"] = duration_s
        self._publish("events", event, qos=1)

    # --- hub → edge ---
    def _on_control(self, topic: str, payload: bytes, props: dict[str, Any]) -> None:
        try:
            doc: dict[str, Any] = decode(payload, props.get("content_type"), self.settings.mqtt_max_payload)
            cmd = doc.get("cmd")
            if cmd == "rebirth":
                conform(doc, RebirthCommand)
                self.publish_birth()
            elif cmd == "throttle":
                if not self._throttle(conform(doc, ThrottleCommand)):
                    return
            else:
                raise PayloadError(f"unknown command {str(cmd)[:32]!r}")
            self.control_received[cmd] = self.control_received.get(cmd, 0) + 1
        except PayloadError as exc:
            self._ignore("invalid")
            log.warning("ignored control message: %s", exc)
        except Exception:  # a command must never take the edge down
            self._ignore("invalid")
            log.exception("control message failed")

    def _ignore(self, reason: str) -> None:
        self.control_ignored[reason] = self.control_ignored.get(reason, 0) + 1

    def _throttle(self, doc: ThrottleCommand) -> bool:
        """Apply a (checked) throttle command; False when its stream or key is not here."""
        target = throttle_target(doc)
        max_fps = doc.get("max_fps")
        duration = doc.get("duration_s", 0.0)
        if not self._apply(target, max_fps):
            self._ignore(f"unknown_{target[0]}")
            log.debug("throttle of unknown %s %s ignored", *target)
            return False
        if old := self._lifts.pop(target, None):
            old.cancel()
        if max_fps is not None and duration > 0:
            # Lifted here too, so a throttle cannot outlive its window even if the hub goes away.
            self._lifts[target] = asyncio.get_running_loop().call_later(duration, self._lift, target)
        log.info("throttle %s %s: max_fps=%s for %ss", *target, max_fps, duration or "∞")
        return True

    def _apply(self, target: ThrottleTarget, max_fps: float | None) -> bool:
        kind, name = target
        if kind == "stream":
            return self.node.set_stream_throttle(name, max_fps)
        return self.node.set_throttle(name, max_fps)

    def _lift(self, target: ThrottleTarget) -> None:
        self._lifts.pop(target, None)
        try:
            self._apply(target, None)
        except Exception:
            log.exception("lifting the throttle of %s %s failed", *target)


def camera_names(spec: str) -> list[str]:
    return [c.name for c in parse_cameras(spec)]


def throttle_target(doc: ThrottleCommand) -> ThrottleTarget:
    """What a throttle command names: exactly one of ``key`` (a key name) or ``stream`` (a stream id)."""
    if "stream" in doc and "key" in doc:
        raise PayloadError("throttle: give key or stream, not both")
    if "stream" in doc:
        return "stream", doc["stream"]
    if "key" in doc:
        return "key", doc["key"]
    raise PayloadError("throttle: give key or stream")
