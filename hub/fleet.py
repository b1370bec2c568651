"""The hub's fleet service: MQTT ingest, flushing to the fleet store, staleness, gap → rebirth, the
fleet-wide key quota and the control commands to edges. Its REST routes are ``hub/routes_fleet.py``,
its Prometheus gauges ``hub/fleet_gauges.py``, its pure rules ``hub/fleet_logic.py``.

Ingest path (built for ≥ 10 000 messages/s per hub): the bus hands each message to a sync handler on
the event loop, which decodes and validates it and folds it into an in-memory ``EdgeBatch`` per edge;
every ``FLUSH_INTERVAL_S`` the batches go to the store in one Redis pipeline of Lua calls. Metrics and
events come through a *shared* subscription (each message to one hub of the group); status comes
through a plain subscription, so every hub sees every birth and Will, and a fresh hub gets the
retained status of the whole fleet (retained messages are never sent to shared subscriptions).

An edge's word is a claim (docs/security.md): its ``frames_by_key`` are cut down to what it can have
processed (``fleet_logic.credible_key_frames``: ``FLEET_EDGE_MAX_FPS``, ``FLEET_MAX_KEYS_PER_EDGE``) before
they count toward the fleet quota or a ``hgr_fleet_key_frames`` series, and a key's series goes once no
edge has named it for two quota windows. Statuses wait in one small queue per edge, served in turns
(an edge's Will before births), so one edge's flood of births coalesces into its own last few and
cannot push another edge's birth or Will out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from hgr.common import metrics
from hgr.common.config import Settings
from hgr.common.contracts import ControlCommand, EventPayload, MetricsPayload, ThrottleCommand
from hgr.common.messaging.topics import (
    Doc,
    PayloadError,
    decode,
    edge_topic,
    edges_filter,
    encode,
    parse_edge_topic,
)
from hgr.common.names import valid_edge_id
from hgr.hub.fleet_gauges import FleetGauges
from hgr.hub.fleet_logic import (
    EdgeAllowance,
    EdgeBatch,
    StatusMsg,
    credible_key_frames,
    edge_view,
    event_summary,
    fleet_totals,
    metrics_msg,
    over_quota,
    quota_window,
    read_status,
    stream_throttle_command,
    throttle_command,
)
from hgr.hub.fleet_store import FleetStore, IngestResult, MemoryFleetStore, RedisFleetStore
from hgr.hub.redis_conn import Client

if TYPE_CHECKING:  # the bus module imports paho; it is loaded only when MQTT is configured
    from hgr.common.messaging.bus import MessageBus

log = logging.getLogger("hgr.hub.fleet")


FLUSH_INTERVAL_S = 0.5
FLUSH_MAX_MESSAGES = 5000  # flush early under a burst so a batch (and a lost hub's loss) stays small
TOPIC_CACHE_MAX = 100_000
REBIRTH_EVERY_S = 30.0  # at most one rebirth request per edge this often, across hubs
STATUS_PER_EDGE = 4  # an edge's queued statuses kept (the newest): its final state needs only the last
STATUS_EDGES_MAX = 100_000  # edges with statuses queued at once
GAUGES_PER_TURN = 100  # edges' views and series set per loop turn in a gauge refresh (~3 ms)
GAUGES_PAUSE_PER_EDGE_S = 0.001  # ~10x a refresh's cost per edge: 20 000 edges are refreshed every 20 s
SWEEP_LOG_EDGES = 20  # edges marked stale in one sweep that get a log line each


class FleetService:
    def __init__(self, settings: Settings, bus: MessageBus, redis: Client | None = None) -> None:
        self.settings = settings
        self.bus = bus
        self.prefix = settings.mqtt_topic_prefix
        self.store: FleetStore = (RedisFleetStore(redis, settings.redis_key_prefix) if redis is not None
                                  else MemoryFleetStore())
        # A hole in an edge's sequence is "lost" only after this: messages of one edge are split across
        # hubs and flushed out of order.
        self.gap_grace_s = max(2.0, 10 * FLUSH_INTERVAL_S)
        self.ingested: Counter[str] = Counter()  # this hub's accepted messages by kind (invalid, dups too)
        self._batches: dict[str, EdgeBatch] = {}
        self._pending = 0
        # One short queue per edge, served in turns (``_status_loop``): see the module's docstring.
        self._status_pending: dict[str, deque[tuple[StatusMsg, float]]] = {}
        self._status_turns: deque[str] = deque()
        self._status_wake = asyncio.Event()
        self._allowances: dict[str, EdgeAllowance] = {}
        self._key_series: dict[str, int] = {}  # key name -> the last quota window its series was set in
        self.edge_max_fps = settings.fleet_edge_max_fps or settings.max_fps * settings.max_connections
        self._known: set[str] = set()  # edge ids this hub tracks (FLEET_MAX_EDGES), refreshed from the store
        self._refused_edges = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._flush_now = asyncio.Event()
        self.gauges = FleetGauges()
        self._gauges_lock = asyncio.Lock()
        self._topic_edges: dict[str, str | None] = {}  # topic → edge id (None: not an edge topic)
        self._started = False
        self.last_flush_error: str | None = None

    # --- lifecycle ---
    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        try:
            self._known = set(await self.store.edges())
        except Exception as exc:  # noqa: BLE001 - a store away at start: the first refresh fills it in
            log.warning("reading the fleet at start failed: %s", exc)
        self.bus.subscribe(edges_filter(self.prefix, "status"), self._on_status)
        self.bus.subscribe(edges_filter(self.prefix, "metrics"), self._on_metrics, shared=True)
        self.bus.subscribe(edges_filter(self.prefix, "events"), self._on_event, shared=True)
        await self.bus.start()
        self._tasks = [asyncio.create_task(self._flush_loop(), name="fleet-flush"),
                       asyncio.create_task(self._status_loop(), name="fleet-status"),
                       asyncio.create_task(self._sweep_loop(), name="fleet-sweep")]

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        await self.bus.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.flush()  # what this hub already took from the broker must not be lost

    def status(self) -> dict[str, Any]:
        return {"store": "redis" if isinstance(self.store, RedisFleetStore) else "memory",
                "connected": bool(self.bus.connected), "ingested": dict(self.ingested),
                "pending": self._pending, "last_flush_error": self.last_flush_error}

    # --- ingest (sync handlers on the loop: decode, validate, fold into the batch) ---
    def _edge_of(self, topic: str) -> str | None:
        try:
            return self._topic_edges[topic]
        except KeyError:
            pass
        parsed = parse_edge_topic(self.prefix, topic)
        if len(self._topic_edges) >= TOPIC_CACHE_MAX:  # topics are per edge: bounded, but be safe
            self._topic_edges.clear()
        edge_id = self._topic_edges[topic] = parsed[0] if parsed else None
        return edge_id

    def _admit(self, edge_id: str) -> bool:
        """Whether the hub tracks ``edge_id``: a known edge always; a new one while fewer than
        ``FLEET_MAX_EDGES`` are known (docs/security.md). A refusal is counted, its log line thinned."""
        if edge_id in self._known:
            return True
        if len(self._known) < self.settings.fleet_max_edges:
            self._known.add(edge_id)
            return True
        metrics.FLEET_CLAIMS_LIMITED.labels("edges").inc()
        self._refused_edges += 1
        if self._refused_edges <= 10 or self._refused_edges % 1000 == 0:
            log.warning("fleet full (FLEET_MAX_EDGES=%d): messages of edge %s dropped (%d so far)",
                        self.settings.fleet_max_edges, edge_id, self._refused_edges)
        return False

    def _reject(self, kind: str, topic: str, exc: Exception) -> None:
        self.ingested["invalid"] += 1
        metrics.FLEET_MESSAGES.labels("invalid").inc()
        if self.ingested["invalid"] <= 10 or self.ingested["invalid"] % 1000 == 0:
            log.warning("invalid %s message on %s: %s", kind, topic, exc)

    def _on_status(self, topic: str, payload: bytes, props: dict[str, Any]) -> None:
        edge_id = self._edge_of(topic)
        if edge_id is None or not payload or not self._admit(edge_id):  # empty retained payload: topic cleared
            return
        try:
            msg = read_status(decode(payload, props.get("content_type"), self.settings.mqtt_max_payload))
        except PayloadError as exc:
            self._reject("status", topic, exc)
            return
        self.ingested["status"] += 1
        metrics.FLEET_MESSAGES.labels("status").inc()
        queue = self._status_pending.get(edge_id)
        if queue is None:
            if len(self._status_pending) >= STATUS_EDGES_MAX:
                metrics.FLEET_CLAIMS_LIMITED.labels("status_edges").inc()
                self._reject("status", topic, RuntimeError("too many edges with statuses queued"))
                return
            queue = self._status_pending[edge_id] = deque(maxlen=STATUS_PER_EDGE)
            if msg.online:
                self._status_turns.append(edge_id)
            else:
                self._status_turns.appendleft(edge_id)  # a Will (or a clean offline) first
        elif len(queue) == STATUS_PER_EDGE:
            metrics.FLEET_CLAIMS_LIMITED.labels("status").inc()  # its oldest queued status goes
        queue.append((msg, time.time()))
        self._status_wake.set()

    def _on_metrics(self, topic: str, payload: bytes, props: dict[str, Any]) -> None:
        parsed = self._parse("metrics", topic, payload, props, MetricsPayload)
        if parsed is not None:
            self._batch(parsed[0]).add_metrics(metrics_msg(parsed[1]))
            self._count_pending()

    def _on_event(self, topic: str, payload: bytes, props: dict[str, Any]) -> None:
        parsed = self._parse("events", topic, payload, props, EventPayload)
        if parsed is not None:
            self._batch(parsed[0]).add_event(event_summary(parsed[1]))
            self.ingested["events"] += 1
            metrics.FLEET_MESSAGES.labels("events").inc()
            self._count_pending()

    def _parse(self, kind: str, topic: str, payload: bytes, props: dict[str, Any],
               tp: type[Doc]) -> tuple[str, Doc] | None:
        """(edge id, the message decoded as ``tp``), or None after counting the message as rejected."""
        edge_id = self._edge_of(topic)
        try:
            if edge_id is None:
                raise PayloadError("not an edge topic")
            if not self._admit(edge_id):
                return None
            return edge_id, decode(payload, props.get("content_type"), self.settings.mqtt_max_payload, tp)
        except PayloadError as exc:
            self._reject(kind, topic, exc)
            return None

    def _batch(self, edge_id: str) -> EdgeBatch:
        batch = self._batches.get(edge_id)
        if batch is None:  # not setdefault: no EdgeBatch built per message on the hot path
            batch = self._batches[edge_id] = EdgeBatch()
        return batch

    def _count_pending(self) -> None:
        self._pending += 1
        if self._pending >= FLUSH_MAX_MESSAGES:
            self._flush_now.set()

    # --- flushing to the store ---
    async def _flush_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._flush_now.wait(), FLUSH_INTERVAL_S)
            except TimeoutError:
                pass
            self._flush_now.clear()
            try:
                await self.flush()
            except Exception:  # the loop must outlive any one bad flush
                log.exception("fleet flush failed")

    async def flush(self) -> None:
        if not self._batches:
            return
        batches, self._batches, self._pending = self._batches, {}, 0
        for edge_id, batch in batches.items():
            if not batch.prepare():
                self._reject("metrics", edge_id, PayloadError("invalid fields in the newest metrics message"))
        now = time.time()
        try:
            results = await self.store.apply_batches(batches, now, self.gap_grace_s)
            self.last_flush_error = None
        except Exception as exc:  # noqa: BLE001 - Redis away: this batch is lost (and shows as gaps), the hub goes on
            self.last_flush_error = f"{type(exc).__name__}: {exc}"
            log.warning("fleet flush failed: %s", self.last_flush_error)
            return
        await self._after_flush(batches, results, now)

    async def _after_flush(self, batches: dict[str, EdgeBatch], results: dict[str, IngestResult],
                           now: float) -> None:
        key_frames: dict[str, int] = {}
        for edge_id, result in results.items():
            accepted = len(result.accepted)
            self.ingested["metrics"] += accepted
            self.ingested["duplicates"] += result.duplicates
            metrics.FLEET_MESSAGES.labels("metrics").inc(accepted)
            if result.duplicates:
                metrics.FLEET_MESSAGES.labels("duplicate").inc(result.duplicates)
            if result.lost:
                metrics.FLEET_GAPS.inc(result.lost)
                log.warning("edge %s: %d metrics message(s) missing", edge_id, result.lost)
                await self._request_rebirth(edge_id)
            claimed = batches[edge_id].key_frames(result.accepted)
            if not claimed:
                continue
            for key, n in self._credible(edge_id, claimed, now).items():
                key_frames[key] = key_frames.get(key, 0) + n
        if key_frames and self.settings.fleet_quota_frames > 0:
            await self._apply_quota(key_frames, now)

    def _credible(self, edge_id: str, claimed: dict[str, int], now: float) -> dict[str, int]:
        """An edge's claimed frames per key, cut down to what it can have processed (counted when cut)."""
        s = self.settings
        window, _ = quota_window(now, s.rate_limit_window)
        allowance, credible = credible_key_frames(self._allowances.get(edge_id), claimed, now, window,
                                                  self.edge_max_fps, 2 * s.metrics_interval,
                                                  s.fleet_max_keys_per_edge)
        self._allowances[edge_id] = allowance
        if len(self._allowances) > STATUS_EDGES_MAX:  # bounded like the fleet: the longest-known goes first
            del self._allowances[next(iter(self._allowances))]
        if credible.clamped_frames:
            metrics.FLEET_CLAIMS_LIMITED.labels("frames").inc()
        if credible.dropped_names:
            metrics.FLEET_CLAIMS_LIMITED.labels("key_names").inc(credible.dropped_names)
        if credible.clamped_frames or credible.dropped_names:
            log.warning("edge %s claimed more than it can have processed: %d frame(s) and %d key name(s) not "
                        "counted", edge_id, credible.clamped_frames, credible.dropped_names)
        return credible.frames

    async def _request_rebirth(self, edge_id: str) -> None:
        if await self.store.claim(f"rebirth:{edge_id}", REBIRTH_EVERY_S):
            self._command(edge_id, {"cmd": "rebirth", "reason": "sequence_gap"})

    async def _apply_quota(self, key_frames: dict[str, int], now: float) -> None:
        window_s = self.settings.rate_limit_window
        window, ends_at = quota_window(now, window_s)
        totals = await self.store.add_key_frames(window, key_frames, 2 * window_s)
        for key in [k for k, w in self._key_series.items() if w < window - 1]:  # named by no edge lately
            del self._key_series[key]
            try:
                metrics.FLEET_KEY_FRAMES.remove(key)
            except KeyError:
                pass
        for key, used in totals.items():
            metrics.FLEET_KEY_FRAMES.labels(key).set(used)
            self._key_series[key] = window
            if over_quota(used, self.settings.fleet_quota_frames) \
                    and await self.store.claim(f"throttle:{window}:{key}", window_s * 2):
                command = throttle_command(key, ends_at, now)
                online = [e for e, h in (await self.store.edges()).items() if h.get("status") == "online"]
                log.warning("key %s used %d frames (fleet quota %d per %ss): throttling %d edge(s) for %ss",
                            key, used, self.settings.fleet_quota_frames, window_s, len(online),
                            command["duration_s"])
                for edge_id in online:
                    self._command(edge_id, command)

    def throttle_stream(self, edge_id: str, stream_id: str, max_fps: float | None,
                        duration_s: float | None = None, reason: str = "operator") -> ThrottleCommand:
        """Ask one edge to cap one of its streams (the ``stream`` of its events); None lifts the cap.
        Fire and forget (QoS 1): an edge that no longer has the stream ignores it. Returns the command
        sent. Served as ``POST /fleet/edges/{edge_id}/streams/{stream}/throttle`` (hub/routes_fleet.py)."""
        if not valid_edge_id(edge_id):
            raise ValueError(f"invalid edge id {edge_id!r}")
        command = stream_throttle_command(stream_id, max_fps, duration_s, reason)
        self._command(edge_id, command)
        return command

    def _command(self, edge_id: str, command: ControlCommand) -> None:
        payload, content_type = encode(command, self.settings.mqtt_payload)
        self.bus.publish(edge_topic(self.prefix, edge_id, "control"), payload, qos=1, content_type=content_type)

    async def _status_loop(self) -> None:
        # One consumer, so an edge's status messages are applied in the order they arrived; edges take
        # turns, one status each.
        while True:
            if not self._status_turns:
                self._status_wake.clear()
                await self._status_wake.wait()
                continue
            edge_id = self._status_turns.popleft()
            queue = self._status_pending[edge_id]
            msg, now = queue.popleft()
            if queue:
                self._status_turns.append(edge_id)
            else:
                del self._status_pending[edge_id]
            try:
                applied = await self.store.apply_status(edge_id, msg, now)
                if applied:
                    log.info("edge %s %s (%s)", edge_id, "online" if msg.online else "offline", msg.reason)
            except Exception as exc:  # noqa: BLE001 - a store failure loses this status, not the hub
                log.warning("storing the status of %s failed: %s", edge_id, exc)

    # --- staleness, forgetting, Prometheus ---
    async def _sweep_loop(self) -> None:
        interval = min(1.0, self.settings.edge_stale_after / 4)
        refreshed, pause = 0.0, self.settings.fleet_gauges_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
                # The gauges read the whole fleet (about a core-second per 10 000 edges), so they keep their
                # own, slower pace: Prometheus scrapes every 15 s or so anyway. A large fleet's refreshes are
                # further apart (GAUGES_PAUSE_PER_EDGE_S), so they take about a tenth of the hub at most
                # (20 000 made-up edges on an open broker held it half the time at 5 s).
                if time.monotonic() - refreshed >= pause:
                    refreshed = time.monotonic()
                    edges = await self.refresh_gauges()
                    pause = max(self.settings.fleet_gauges_interval, GAUGES_PAUSE_PER_EDGE_S * edges)
            except Exception as exc:  # noqa: BLE001 - the sweep runs again next interval
                log.warning("fleet sweep failed: %s", exc)

    async def sweep(self) -> None:
        s = self.settings
        staled, forgotten = await self.store.sweep(time.time(), s.edge_stale_after, s.edge_forget_after)
        for edge_id in forgotten:
            self._allowances.pop(edge_id, None)
            self._known.discard(edge_id)
        if forgotten:
            log.info("forgot %d edge(s) (offline for EDGE_FORGET_AFTER, or heard from for less than "
                     "EDGE_STALE_AFTER and quiet since)", len(forgotten))
        # One line per edge while a few go quiet; a summary when thousands do at once (made-up ids on an
        # open broker would otherwise write thousands of lines on the loop in one sweep).
        for edge_id in staled[:SWEEP_LOG_EDGES]:
            log.warning("edge %s silent for %ss: marked offline", edge_id, s.edge_stale_after)
        if len(staled) > SWEEP_LOG_EDGES:
            log.warning("%d more edges silent for %ss: marked offline", len(staled) - SWEEP_LOG_EDGES,
                        s.edge_stale_after)

    async def refresh_gauges(self) -> int:
        """Set the per-edge gauges from the whole fleet; returns how many edges it has."""
        # One refresh at a time, read and update together: an older read must never land after a newer one.
        async with self._gauges_lock:
            edges, now = await self.store.edges(), time.time()
            # What every hub stored (other hubs forget edges too), and what this one is about to store.
            self._known = set(edges) | set(self._batches) | set(self._status_pending)
            # In turns on the loop: thousands of views and series updates at once would hold REST and ingest.
            await self.gauges.update_in_turns((edge_view(e, h, now) for e, h in edges.items()), GAUGES_PER_TURN)
            return len(edges)

    # --- the fleet as the REST view shows it ---
    async def fleet_view(self) -> dict[str, Any]:
        now = time.time()
        stored = await self.store.edges()

        def build() -> dict[str, Any]:
            edges = [edge_view(e, h, now) for e, h in stored.items()]
            return {"edges": edges, "totals": fleet_totals(edges), "ts": now}
        # Off the event loop, as the gauges: 10 000 edges' views are ~0.1 s of CPU that REST and ingest
        # would otherwise wait for.
        return await asyncio.to_thread(build)
