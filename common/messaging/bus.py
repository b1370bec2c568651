"""Publish/subscribe for fleet reporting: MQTT (paho-mqtt 2.x, MQTT v5) or an in-process stand-in.

``make_bus(settings)`` gives an ``MqttBus`` when ``MQTT_URL`` is set, else a ``LocalBus`` that the
all-in-one shares between its edge and hub, so reporting keeps the same topics and payloads with no
broker. Both have the same surface:

- ``publish(topic, payload, qos=, retain=, content_type=)`` never blocks and never raises: while
  disconnected the message waits in a bounded ``Outbox`` (flushed in order on reconnect).
- ``subscribe(filter, handler, shared=)``: ``handler(topic, payload, props)`` runs on the asyncio
  loop (sync or async); ``shared=True`` makes it an MQTT v5 shared subscription
  (``$share/MQTT_SHARE_GROUP/…``) so several hubs split the traffic.
- ``set_will`` before ``start``; ``add_connect_listener`` for work to redo on every (re)connect.

Threading: paho's network loop runs in its own thread (``loop_start``), with a paho client that reads
in bursts (``common.messaging.mqtt_client``). Its callbacks only append to
a deque and wake the asyncio loop with ``call_soon_threadsafe`` once per burst, so handlers, the
outbox and the ``connected`` flag are only ever touched on the event loop thread. The loop drains the
deque in slices of a few milliseconds, and the paho thread stops reading while the deque is full
(``INBOX_HIGH``), so a backlog arriving at once never holds the loop (REST, flushes) for long. ``stop``
joins paho's thread in a thread of its own (``in_own_thread``), not in the loop's default executor.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

from hgr.common import metrics
from hgr.common.config import Settings
from hgr.common.messaging.mqtt_client import buffered_client_class
from hgr.common.messaging.outbox import Message, Outbox
from hgr.common.messaging.topics import CONTENT_TYPES, KINDS, shared_filter, topic_matches

log = logging.getLogger("hgr.bus")

# A subscription handler: (topic, payload, properties such as content_type); sync or async.
Handler = Callable[[str, bytes, dict[str, Any]], Any]
T = TypeVar("T")


class MessageBus(Protocol):
    """Publish/subscribe as edge and hub use it (``LocalBus`` and ``MqttBus`` below fit it), so they need
    no concrete class."""

    @property
    def connected(self) -> bool: ...
    @property
    def connects(self) -> int: ...
    @property
    def outbox(self) -> Outbox: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def set_will(self, topic: str, payload: bytes | Callable[[int], bytes], qos: int = 1, retain: bool = True,
                 content_type: str | None = ...) -> None: ...

    def add_connect_listener(self, callback: Callable[[], Any]) -> None: ...

    def sends_now(self, retain: bool = False) -> bool: ...

    def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False,
                content_type: str | None = ...) -> None: ...

    def subscribe(self, topic_filter: str, handler: Handler, *, shared: bool = False) -> None: ...
JSON = CONTENT_TYPES["json"]
DRAIN_DELAY_S = 0.005
# The most loop time one drain of the inbox takes before it yields (and continues after DRAIN_PAUSE_S).
# Unbounded, a queued backlog (a hub back after a restart: 60 000 messages) held the loop for 3.5 s, and
# with it REST requests, flushes and pings; measured with `python -m research.mqtt_fleet` (loop_lag_ms).
DRAIN_SLICE_S = 0.001
# Between two slices of a backlog, the loop's own time: a backlog takes at most half of the loop. A request
# needs about ten loop turns, and each waited for a slice: drained back to back in 5 ms slices, a hub's
# /health p50 was 105 ms while made-up edges flooded it (research.abuse row 6); in 1 ms slices with 1 ms
# pauses, 9-12 ms (docs/benchmarks.md, "Row 6 again").
DRAIN_PAUSE_S = 0.001
# Messages waiting for the loop. Above INBOX_HIGH the paho thread stops reading (the broker holds the rest:
# TCP backpressure) until the loop has drained to INBOX_LOW. Without it, a backlog's reader thread took
# the GIL from the loop for seconds (a 10 ms timer ran 0.9 s late, a flush took 2.4 s) and the inbox held
# the whole backlog in memory.
INBOX_HIGH = 2000
INBOX_LOW = 500


def _kind(topic: str) -> str:
    kind = topic.rsplit("/", 1)[-1]
    return kind if kind in KINDS else "other"  # metric labels stay bounded


class Bus:
    """What edge and hub code relies on; see the module docstring."""

    def __init__(self, settings: Settings, *, service: str = "edge", gauges: bool = True) -> None:
        self.settings = settings
        self.service = service
        # Whether this bus sets the process's connection and outbox gauges. A helper connection (a camera's
        # availability link, edge/availability.py) says False: its state would overwrite the main one's.
        self.gauges = gauges
        self.connected = False
        self.outbox = Outbox(settings.mqtt_outbox_size,
                             on_drop=lambda m: metrics.MQTT_OUTBOX_DROPPED.labels(_kind(m.topic)).inc())
        # The Last Will: (topic, payload by connection number, qos, retain, content type).
        self._will: tuple[str, Callable[[int], bytes], int, bool, str | None] | None = None
        self.connects = 0  # connections made so far; the current one's number while connected
        self.handler_errors = 0
        self._starts = 0
        self._listeners: list[Callable[[], Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_error_log = 0.0
        # After a reconnect the outbox waits ``settle_s`` before flushing; until then new messages
        # queue behind it so the order holds (retained status goes straight out: it is state).
        self.settle_s = 0.0
        self._holding = False
        self._flush_handle: asyncio.TimerHandle | None = None

    # --- lifecycle (reference-counted: the all-in-one's edge and hub share one bus) ---
    async def start(self) -> None:
        self._starts += 1
        if self._starts == 1:
            self._loop = asyncio.get_running_loop()
            await self._start()

    async def stop(self) -> None:
        if self._starts == 0:
            return
        self._starts -= 1
        if self._starts == 0:
            await self._stop()

    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

    def set_will(self, topic: str, payload: bytes | Callable[[int], bytes], qos: int = 1, retain: bool = True,
                 content_type: str | None = JSON) -> None:
        """The Last Will. ``payload`` may be a function of the connection number, so each connection's
        Will names the connection it belongs to (and a late Will of an old one can be told apart)."""
        self._will = (topic, payload if callable(payload) else (lambda _conn: payload), qos, retain, content_type)

    def add_connect_listener(self, callback: Callable[[], Any]) -> None:
        """``callback()`` runs on the loop after every (re)connect, before the outbox is flushed."""
        self._listeners.append(callback)

    # --- publishing ---
    def sends_now(self, retain: bool = False) -> bool:
        """Whether a message published now goes straight to the broker (else it queues or, at QoS 0, drops)."""
        return self.connected and (not self._holding or retain)

    def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False,
                content_type: str | None = JSON) -> None:
        message = Message(topic, payload, qos, retain, content_type)
        try:
            if self.sends_now(retain):
                self._send(message)
            elif qos == 0 and not retain:
                self.outbox.drop(message)  # per-frame results are worthless later: never queued
            else:
                self.outbox.push(message)
                self._gauge_outbox()
        except Exception:  # noqa: BLE001 - publishing must never break the caller (the frame path)
            self._log_error("publish to %s failed", topic)

    def _send(self, message: Message) -> None:
        raise NotImplementedError

    def _gauge_outbox(self) -> None:
        if self.gauges:
            metrics.MQTT_OUTBOX.set(len(self.outbox))

    def _set_connected(self, connected: bool) -> None:
        self.connected = connected
        if self.gauges:
            metrics.MQTT_CONNECTED.labels(self.service).set(1 if connected else 0)
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not connected:
            self._holding = False
            return
        for listener in list(self._listeners):
            try:
                result = listener()
                if inspect.isawaitable(result):
                    asyncio.ensure_future(result)
            except Exception:
                log.exception("connect listener failed")
        if len(self.outbox) and self.settle_s > 0 and self._loop is not None:
            self._holding = True
            self._flush_handle = self._loop.call_later(self.settle_s, self._flush_outbox)
        else:
            self._flush_outbox()

    def _flush_outbox(self) -> None:
        self._flush_handle = None
        self._holding = False
        if not self.connected:
            return
        for message in self.outbox.pop_all():
            self._send(message)
        self._gauge_outbox()

    # --- subscribing ---
    def subscribe(self, topic_filter: str, handler: Handler, *, shared: bool = False) -> None:
        raise NotImplementedError

    def _run_handler(self, handler: Handler, topic: str, payload: bytes, props: dict[str, Any]) -> None:
        try:
            result = handler(topic, payload, props)
            if result is not None and inspect.isawaitable(result):  # the hot path's handlers are sync
                asyncio.ensure_future(result)
        except Exception:  # noqa: BLE001 - a bad message must not stop the others
            self.handler_errors += 1
            self._log_error("handler for %s failed", topic)

    def _log_error(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= 1.0:  # at most one traceback a second under a flood
            self._last_error_log = now
            log.warning(msg, *args, exc_info=True)  # noqa: LOG014 - only called from except blocks

    async def wait_connected(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not self.connected and time.monotonic() < end:
            await asyncio.sleep(0.02)
        return self.connected


class LocalBus(Bus):
    """In-process bus with MQTT semantics: wildcards, retained messages, shared subscriptions."""

    def __init__(self, settings: Settings, *, service: str = "edge") -> None:
        super().__init__(settings, service=service)
        self._subs: list[tuple[str, Handler, bool]] = []
        self._retained: dict[str, Message] = {}
        self._round_robin = 0

    async def _start(self) -> None:
        self.connects += 1
        self._set_connected(True)

    async def _stop(self) -> None:
        self.connected = False

    def subscribe(self, topic_filter: str, handler: Handler, *, shared: bool = False) -> None:
        self._subs.append((topic_filter, handler, shared))
        if not shared and self._loop is not None:
            for message in self._retained.values():  # like a broker: retained on subscribe
                if topic_matches(topic_filter, message.topic):
                    self._deliver(handler, message, retained=True)

    def _send(self, message: Message) -> None:
        if message.retain:
            if message.payload:
                self._retained[message.topic] = message
            else:
                self._retained.pop(message.topic, None)
        shared: list[Handler] = []
        for topic_filter, handler, is_shared in self._subs:
            if topic_matches(topic_filter, message.topic):
                if is_shared:
                    shared.append(handler)
                else:
                    self._deliver(handler, message)
        if shared:  # one member of the (single) share group gets it
            self._round_robin += 1
            self._deliver(shared[self._round_robin % len(shared)], message)
        metrics.MQTT_PUBLISHED.labels(_kind(message.topic)).inc()

    def _deliver(self, handler: Handler, message: Message, retained: bool = False) -> None:
        props = {"content_type": message.content_type, "retain": retained, "qos": message.qos}
        assert self._loop is not None
        # Later, never inside publish(): the publisher (the frame path) must not run hub code.
        self._loop.call_soon(self._run_handler, handler, message.topic, message.payload, props)


class MqttBus(Bus):
    def __init__(self, settings: Settings, *, service: str = "edge", client_id: str | None = None,
                 gauges: bool = True) -> None:
        super().__init__(settings, service=service, gauges=gauges)
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        url = urlsplit(settings.mqtt_url)
        self.tls = url.scheme == "mqtts"
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (8883 if self.tls else 1883)
        self.client_id = client_id or settings.mqtt_client_id or default_client_id(settings, service)
        # A hub keeps its session across restarts (and broker restarts, with persistence): its shared
        # subscription's messages wait for it instead of being lost. An edge needs no such session.
        self.session_expiry = settings.mqtt_session_expiry if service == "hub" else 0
        self.client = buffered_client_class(mqtt)(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                                  protocol=mqtt.MQTTv5)
        if url.username:
            self.client.username_pw_set(unquote(url.username),
                                        unquote(url.password) if url.password is not None else None)
        if self.tls:
            self.client.tls_set(ca_certs=settings.mqtt_ca_file or None,
                                certfile=settings.mqtt_client_cert or None,
                                keyfile=settings.mqtt_client_key or None)
        # paho's own reconnect loop, with exponential backoff between attempts. Hubs are few and must
        # be back (subscribed) before the edges flush their outboxes: they retry every ≤ 2 s.
        self.client.reconnect_delay_set(min_delay=1, max_delay=2 if service == "hub" else 30)
        self.settle_s = settings.mqtt_outbox_settle if service != "hub" else 0.0
        self.client.max_inflight_messages_set(200)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self._subs: list[tuple[str, int]] = []
        self.subacks = 0  # SUBACKs since the last CONNACK (written by paho's thread; an int, read on the loop)
        self.refused: str | None = None  # the broker's reason when it last refused our CONNECT
        self._inbox: deque[tuple[str, bytes, dict[str, Any]]] = deque()
        self._inbox_room = threading.Event()  # clear: the paho thread waits for the loop to drain
        self._inbox_room.set()
        self._closing = False  # set by stop: a reader waiting for room goes on
        self._routes: list[tuple[str, Handler]] = []
        self._route_cache: dict[str, list[Handler]] = {}
        # One on_message for all: paho's per-filter callbacks walk a topic trie for every message.
        self.client.on_message = self._on_message
        self._drain_scheduled = False
        self._last_info: Any = None
        self._props_cache: dict[str | None, Any] = {}

    def _props(self, content_type: str | None) -> Any:
        props = self._props_cache.get(content_type)
        if props is None:  # built once per content type: paho only reads them
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.PUBLISH)
            if content_type:
                props.ContentType = content_type
            self._props_cache[content_type] = props
        return props

    async def _start(self) -> None:
        self._closing = False
        self._arm_will()
        # Not awaited: an edge serves its clients whether or not the broker is reachable; paho's
        # thread keeps retrying with backoff.
        connect_props = None
        if self.session_expiry:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            connect_props = Properties(PacketTypes.CONNECT)
            connect_props.SessionExpiryInterval = self.session_expiry
        self.client.connect_async(self.host, self.port, keepalive=self.settings.mqtt_keepalive,
                                  clean_start=not self.session_expiry, properties=connect_props)
        self.client.loop_start()

    async def _stop(self) -> None:
        await self.flush(2.0)
        self._closing = True
        self._inbox_room.set()  # a reader waiting for room must not hold up loop_stop
        self.client.disconnect()  # a clean DISCONNECT: the broker discards the Will
        await in_own_thread(self.client.loop_stop)
        self._set_connected(False)

    async def flush(self, timeout: float) -> bool:
        """Wait (bounded) until the last QoS>0 message was acknowledged by the broker."""
        end = time.monotonic() + timeout
        while self._last_info is not None and not self._last_info.is_published():
            if time.monotonic() >= end or not self.connected:
                return False
            await asyncio.sleep(0.01)
        return True

    # --- paho thread → loop ---
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
            log.warning("MQTT connect to %s:%s refused: %s", self.host, self.port, reason_code)
            return
        self.refused = None
        self.subacks = 0
        # Without a kept session the broker forgot our subscriptions: renew them (harmless with one).
        for topic_filter, qos in self._subs:
            client.subscribe(topic_filter, qos=qos)
        self.connects += 1
        self._call(self._set_connected, True)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        self.subacks += 1

    async def wait_subscribed(self, timeout: float) -> bool:
        """Wait (bounded) until connected and the broker acknowledged every subscription (one SUBACK
        each), so messages published from now on reach this bus."""
        end = time.monotonic() + timeout
        while not (self.connected and self.subacks >= len(self._subs)):
            if time.monotonic() >= end:
                return False
            await asyncio.sleep(0.01)
        return True

    def _arm_will(self) -> None:
        """Set the Will paho sends with the next CONNECT (paho thread or before start)."""
        if self._will is None:
            return
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        topic, payload, qos, retain, content_type = self._will
        will_props = Properties(PacketTypes.WILLMESSAGE)
        if content_type:
            will_props.ContentType = content_type
        self.client.will_set(topic, payload(self.connects + 1), qos, retain, properties=will_props)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        try:
            self._arm_will()  # before paho reconnects: the next connection's Will
        except Exception:
            log.exception("setting the Will failed")
        self._call(self._connection_lost)

    def _connection_lost(self) -> None:
        self._set_connected(False)
        # paho would resend its unacknowledged messages right at the next CONNACK, before any hub is
        # back: take them into the outbox instead (in front: they are the oldest), so they wait for the
        # settle time and keep their order. A duplicate that the broker did get is dropped by the hub.
        # (On the loop, not in paho's callback: paho holds its callback lock there, and taking its
        # message lock under it could deadlock against a publish on the loop. paho waits ≥ 1 s to reconnect.)
        unacked = self._take_unacked()
        if unacked:
            self.outbox.requeue(unacked)
            self._gauge_outbox()

    def _take_unacked(self) -> list[Message]:
        client = self.client
        mutex, pending = getattr(client, "_out_message_mutex", None), getattr(client, "_out_messages", None)
        if mutex is None or pending is None:  # paho internals changed (internals.paho_unacked_requeue): paho resends
            return []
        with mutex:
            taken = [m for m in pending.values() if m.qos > 0]
            pending.clear()
            client._inflight_messages = 0
        return [Message(m.topic, m.payload, m.qos, m.retain,
                        getattr(m.properties, "ContentType", None) if m.properties is not None else None)
                for m in taken]

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # loop closed during shutdown
                pass

    def _set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            log.info("MQTT %s %s:%s as %s", "connected to" if connected else "disconnected from",
                     self.host, self.port, self.client_id)
        super()._set_connected(connected)

    def subscribe(self, topic_filter: str, handler: Handler, *, shared: bool = False, qos: int = 1) -> None:
        wire_filter = shared_filter(self.settings.mqtt_share_group, topic_filter) if shared else topic_filter
        self._routes.append((topic_filter, handler))  # matched on the plain filter
        self._route_cache.clear()
        self._subs.append((wire_filter, qos))
        if self.client.is_connected():
            self.client.subscribe(wire_filter, qos=qos)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        # paho thread: as little as possible. The loop is woken once per burst and drains a few ms
        # later, so at 10k messages/s it runs handlers in batches instead of waking per message.
        props = msg.properties
        self._inbox.append((msg.topic, msg.payload, {
            "content_type": getattr(props, "ContentType", None) if props is not None else None,
            "retain": msg.retain, "qos": msg.qos}))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._call(self._schedule_drain)
        if len(self._inbox) >= INBOX_HIGH:
            self._inbox_room.clear()
            # Checked again after clearing: the loop may have drained meanwhile (and set it before the clear).
            while len(self._inbox) >= INBOX_HIGH and not self._closing:
                self._inbox_room.wait(1.0)

    def _schedule_drain(self) -> None:
        assert self._loop is not None
        self._loop.call_later(DRAIN_DELAY_S, self._drain)

    def _handlers(self, topic: str) -> list[Handler]:
        handlers = self._route_cache.get(topic)
        if handlers is None:
            if len(self._route_cache) > 100_000:  # topics are per edge: bounded by the fleet, but be safe
                self._route_cache.clear()
            handlers = self._route_cache[topic] = [h for f, h in self._routes if topic_matches(f, topic)]
        return handlers

    def _drain(self) -> None:
        # Cleared first: a message the paho thread appends from now on schedules a drain of its own.
        self._drain_scheduled = False
        inbox = self._inbox
        end = time.perf_counter() + DRAIN_SLICE_S
        while inbox:
            topic, payload, props = inbox.popleft()
            for handler in self._handlers(topic):
                self._run_handler(handler, topic, payload, props)
            if time.perf_counter() > end and inbox:
                assert self._loop is not None
                self._drain_scheduled = True  # the rest after a pause for the loop's other work
                self._loop.call_later(DRAIN_PAUSE_S, self._drain)
                break
        if len(inbox) <= INBOX_LOW:
            self._inbox_room.set()

    def _send(self, message: Message) -> None:
        info = self.client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain,
                                   properties=self._props(message.content_type))
        if message.qos > 0:
            self._last_info = info
        metrics.MQTT_PUBLISHED.labels(_kind(message.topic)).inc()


async def in_own_thread(fn: Callable[[], T]) -> T:
    """``fn()`` in a thread of its own, awaited. Not the loop's default executor (``asyncio.to_thread``):
    the frame path uses that one (a camera's JPEG encoding), and joining paho's thread can take a second
    (its reconnect wait) or five (its connect timeout) while the broker is away."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not done.done():  # the awaiting task may have been cancelled meanwhile
            if ok:
                done.set_result(value)
            else:
                done.set_exception(value)

    def run() -> None:
        try:
            outcome: tuple[bool, Any] = (True, fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            outcome = (False, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop closed meanwhile: nobody is waiting
            pass

    threading.Thread(target=run, name=f"hgr-bus-{getattr(fn, '__name__', 'call')}", daemon=True).start()
    return await done


def make_bus(settings: Settings, *, service: str = "edge", client_id: str | None = None) -> Bus:
    """MQTT when ``MQTT_URL`` is set, else the in-process bus."""
    if settings.mqtt_url:
        return MqttBus(settings, service=service, client_id=client_id)
    return LocalBus(settings, service=service)


def default_client_id(settings: Settings, service: str) -> str:
    """Stable across restarts: an edge by its id, a hub by host and port (unique on one host)."""
    if service == "edge":
        return f"hgr-edge-{settings.resolved_edge_id()}"
    return f"hgr-{service}-{socket.gethostname()[:40]}-{settings.port}"
