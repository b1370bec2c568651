"""Each camera's ``available`` topic, on an MQTT connection of its own whose Will says ``offline``.

MQTT gives a connection one Will, and the edge's main connection's is its ``status``. So that a camera's
``{prefix}/edges/{edge_id}/cameras/{name}/available`` turns ``offline`` when the edge dies (killed, crashed,
cut off) and not only when it stops cleanly, every camera of CAMERAS that is up and every named stream that
is open holds one more connection, a ``Link``:

- it connects with the Will ``offline`` (retained, QoS 1) on that topic and publishes ``online`` (retained,
  QoS 1) on every (re)connect;
- when the camera goes down, the stream closes or the edge stops cleanly it publishes ``offline``, waits
  (at most 2 s) for the broker's acknowledgement and disconnects cleanly: the broker drops the Will;
- it is the topic's one publisher: the reporter's main connection does not write ``available`` then.

A link is the project's client, an ``MqttBus``: ``MQTT_URL``'s host and credentials (the edge's user, so the
broker's rights for the edge's own topics apply), the TLS files, ``MQTT_KEEPALIVE`` (when the broker sends
a dead edge's Wills), the edge's reconnect backoff (1 s doubling to 30 s) and its own paho thread. Its
client id is ``{the edge's client id}/cameras/{name}``: unique per edge and camera, and never another
edge's main id (an edge id has no ``/``). It leaves the process's ``hgr_mqtt_connected`` and outbox gauges
to the main connection (``gauges=False``) and keeps no outbox: a value it cannot send now is sent by its
next connection, which says the current one; ``hgr_mqtt_camera_links{state}`` counts the links.

Bounded: at most ``len(CAMERAS) + MAX_CONNECTIONS`` links are held at once (named streams are WebSocket
connections); past it a name waits for a closing link's slot. Nothing slow runs on the event loop: a link
is built in a thread of its own (loading the TLS trust store takes ~0.1 s), connects and retries in paho's
thread (``connect_async``; starting that thread is the ~1.5 ms the loop pays) and is joined in a thread
of its own. A broker that refuses or drops a link touches only that link: frames, the other cameras and
the main connection go on.

One task per name (``_settle``) brings its link in line with the wanted state, one step at a time: two links
of one name never overlap (they share a client id), and changes that come while a link is still opening or
closing are coalesced to the latest (the topic ends at the latest value). A configured camera starts
``offline``: a link says so once at start-up, unless the camera came up first.

Without a broker (the all-in-one's in-process bus) nothing outlives the edge: ``OnBus`` publishes the topic
on that bus, as the reporter did before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from hgr.common import metrics
from hgr.common.config import Settings
from hgr.common.messaging.topics import camera_topic

if TYPE_CHECKING:  # the bus module imports paho; it is loaded only when MQTT is configured
    from hgr.common.messaging.bus import MessageBus, MqttBus

log = logging.getLogger("hgr.edge.availability")

ONLINE, OFFLINE = b"online", b"offline"
TEXT = "text/plain"
# A clean stop waits this long for every link's acknowledged `offline` and clean disconnect (they run
# together; one takes ≤ 2 s for the acknowledgement plus the join of paho's thread), then goes on.
STOP_S = 5.0


class Availability(Protocol):
    """Who writes the ``available`` topics (the reporter calls it on the event loop; it never blocks)."""

    async def start(self) -> None: ...

    def set(self, name: str, online: bool, *, again: bool = False) -> None:
        """``name`` is up (``online``) or down. ``again``: the main connection reconnected and the reporter
        publishes its state once more (for a publisher on that connection)."""

    async def stop(self) -> None: ...


class OnBus:
    """The ``available`` topics on the reporter's own bus (the in-process bus: no broker, no crash to outlive)."""

    def __init__(self, bus: MessageBus, topic: Callable[[str], str]) -> None:
        self.bus, self.topic = bus, topic

    async def start(self) -> None:
        pass

    def set(self, name: str, online: bool, *, again: bool = False) -> None:
        self.bus.publish(self.topic(name), ONLINE if online else OFFLINE, qos=1, retain=True, content_type=TEXT)

    async def stop(self) -> None:
        pass


class Link:
    """One camera's connection: Will ``offline``; says its value on every (re)connect and when it changes."""

    def __init__(self, bus: MqttBus, topic: str, online: bool, on_said: Callable[[], None]) -> None:
        self.bus, self.topic, self.online = bus, topic, online
        self.said = False  # a value went out on a live connection
        self._on_said = on_said
        bus.set_will(topic, OFFLINE, qos=1, retain=True, content_type=TEXT)
        bus.add_connect_listener(self._connected)

    def _connected(self) -> None:
        # What the lost connection had not got acknowledged (the bus took it back into its outbox) is a past
        # value: dropped, so it cannot land after the current one, which goes instead.
        self.bus.outbox.pop_all()
        self._say()

    def say(self, online: bool) -> None:
        if online != self.online:
            self.online = online
            self._say()

    def _say(self) -> None:
        if self.bus.sends_now(retain=True):  # else the next connection says the value then current
            self.bus.publish(self.topic, ONLINE if self.online else OFFLINE, qos=1, retain=True, content_type=TEXT)
            self.said = True
            self._on_said()


class _Name:
    """One name's wanted state, its link and the task that settles them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.want = False
        self.owed = False  # `offline` not said yet by this process (a configured camera at start-up)
        self.link: Link | None = None
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class CameraLinks:
    """The ``available`` topics on one ``Link`` per camera that is up (see the module docstring)."""

    def __init__(self, settings: Settings, *, client_id: str, edge_id: str, configured: list[str]) -> None:
        self.settings = settings
        self.client_id = client_id
        self.edge_id = edge_id
        self.configured = list(configured)
        self.limit = len(self.configured) + settings.max_connections
        self._slots = asyncio.Semaphore(self.limit)
        self._names: dict[str, _Name] = {}
        self._stopping = False

    def topic(self, name: str) -> str:
        return camera_topic(self.settings.mqtt_topic_prefix, self.edge_id, name, "available")

    def link_client_id(self, name: str) -> str:
        return f"{self.client_id}/cameras/{name}"

    @property
    def held(self) -> int:
        return sum(1 for n in self._names.values() if n.link is not None)

    @property
    def connected(self) -> int:
        return sum(1 for n in self._names.values() if n.link is not None and n.link.bus.connected)

    async def start(self) -> None:
        self._stopping = False
        gauge = metrics.MQTT_CAMERA_LINKS
        gauge.labels("connected").set_function(lambda: self.connected)
        gauge.labels("connecting").set_function(lambda: self.held - self.connected)
        for name in self.configured:  # a configured camera starts offline (unless it is up first)
            (self._names.get(name) or self._name(name)).owed = True

    def set(self, name: str, online: bool, *, again: bool = False) -> None:
        if again or self._stopping:  # a link says its value on its own connections
            return
        entry = self._names.get(name)
        if entry is None:
            if not online:  # nothing held for it: its link said offline before it closed
                return
            entry = self._name(name)
        entry.want = online
        entry.wake.set()

    def _name(self, name: str) -> _Name:
        entry = self._names[name] = _Name(name)
        entry.task = asyncio.create_task(self._settle(entry), name=f"hgr-camera-link-{name}")
        entry.wake.set()
        return entry

    async def stop(self) -> None:
        self._stopping = True
        for entry in self._names.values():
            entry.want = False
            entry.wake.set()
        tasks = [n.task for n in self._names.values() if n.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=STOP_S)
        if pending:  # their threads are daemons: the process may still exit
            log.warning("%d camera availability connections did not close within %ss", len(pending), STOP_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _settle(self, entry: _Name) -> None:
        try:
            while True:
                entry.wake.clear()
                link = entry.link
                if entry.want:
                    entry.owed = False
                    if link is None:
                        entry.link = await self._open(entry, online=True)
                        continue
                    link.say(True)
                elif link is not None:
                    link.say(False)
                    if not (entry.owed and not link.said and not self._stopping):
                        entry.link, entry.owed = None, False
                        await self._close(link)
                        continue
                    # a configured camera's first `offline`: the link stays until it has said it (woken then)
                elif entry.owed and not self._stopping:
                    entry.link = await self._open(entry, online=False)
                    continue
                else:
                    self._names.pop(entry.name, None)  # settled with nothing held: the table keeps live names only
                    return
                await entry.wake.wait()
        except asyncio.CancelledError:
            raise
        except Exception:  # one camera's link must not take the reporter down
            log.exception("camera %s: availability connection failed", entry.name)
            self._names.pop(entry.name, None)
            if entry.link is not None:
                link, entry.link = entry.link, None
                try:
                    await self._close(link)
                except Exception:
                    log.exception("camera %s: closing its availability connection failed", entry.name)

    async def _open(self, entry: _Name, *, online: bool) -> Link:
        from hgr.common.messaging.bus import MqttBus, in_own_thread

        await self._slots.acquire()
        try:
            bus = await in_own_thread(lambda: MqttBus(self.settings, service="edge", gauges=False,
                                                      client_id=self.link_client_id(entry.name)))
            link = Link(bus, self.topic(entry.name), online, entry.wake.set)
            await bus.start()  # paho's thread connects (and retries): this returns at once
        except BaseException:
            self._slots.release()
            raise
        return link

    async def _close(self, link: Link) -> None:
        try:
            await link.bus.stop()  # ≤ 2 s for the acknowledgement, a clean DISCONNECT, paho's thread joined
        finally:
            self._slots.release()


def availability_for(settings: Settings, bus: MessageBus, edge_id: str, configured: list[str]) -> Availability:
    """Links when the reporter's bus is a broker connection, else the topics on the bus itself."""
    if settings.mqtt_url:
        from hgr.common.messaging.bus import MqttBus

        if isinstance(bus, MqttBus):
            return CameraLinks(settings, client_id=bus.client_id, edge_id=edge_id, configured=configured)
    return OnBus(bus, lambda name: camera_topic(settings.mqtt_topic_prefix, edge_id, name, "available"))
