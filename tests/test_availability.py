"""edge/availability.py: each camera's ``available`` on a connection of its own, against real Mosquitto
brokers of the tests' own: one value per topic and one publisher, changes settled in order and bounded,
a broker that refuses the links stalls nothing else; without a broker, the topics on the in-process bus.
(A killed edge process: tests/test_scenario_camera_availability.py.)"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prometheus_client import REGISTRY

from hgr.common.config import Settings, load_settings
from hgr.common.inference.pool import InferencePool
from hgr.common.messaging.bus import LocalBus, make_bus
from hgr.edge import protocol
from hgr.edge.availability import CameraLinks, OnBus, availability_for
from hgr.edge.reporter import EdgeReporter
from hgr.loadtest.ws_stream import open_stream
from tests.camera_support import make_clip
from tests.fleet_helpers import Broker, StandInNode, Watcher
from tests.support import eventually, recv_msg, serve_edge

pytestmark = pytest.mark.service  # brokers of the tests' own


@pytest.fixture
def broker(private_mosquitto: tuple[str, subprocess.Popen[bytes]]) -> int:
    """The port of the test's own anonymous Mosquitto (tests/conftest.py)."""
    port = urlsplit(private_mosquitto[0]).port
    assert port is not None
    return port


def _settings(port: int, **env: str) -> Settings:
    return load_settings({"MQTT_URL": f"mqtt://127.0.0.1:{port}", "MQTT_TOPIC_PREFIX": f"t-{uuid.uuid4().hex[:8]}",
                          **env}, env_file=None)


def _gauge(state: str) -> float | None:
    return REGISTRY.get_sample_value("hgr_mqtt_camera_links", {"state": state})


async def test_changes_settle_in_order_within_the_bound(broker: int) -> None:
    """Names flipped faster than links open and close: at most len(CAMERAS) + MAX_CONNECTIONS links at any
    moment, each name's topic ends at its latest value, and a name's links never overlap (one client id)."""
    settings = _settings(broker, MAX_CONNECTIONS="3")
    links = CameraLinks(settings, client_id="hgr-edge-churn", edge_id="churn", configured=["porch"])
    assert links.limit == 4 and links.link_client_id("desk") == "hgr-edge-churn/cameras/desk"
    base = f"{settings.mqtt_topic_prefix}/edges/churn/cameras"
    most = 0
    sampling = True

    async def sample() -> None:  # the bound, looked at on every turn of the loop while the changes run
        nonlocal most
        while sampling:
            most = max(most, links.held)
            await asyncio.sleep(0.001)

    watcher = Watcher(broker, [f"{base}/+/available"])
    try:
        sampler = asyncio.create_task(sample())
        try:
            await links.start()  # porch (configured, down) is owed its first `offline`
            names = [f"cam{i}" for i in range(10)]
            for name in names:
                links.set(name, True)
            for name in names[::2]:
                links.set(name, False)
            links.set("cam0", True)  # back up while its link is still opening: coalesced, it stays up
            up = {"cam0", *names[1::2]}
            assert len(up) == 6 > links.limit  # more names up than links allowed: the rest wait for a slot

            def topic(name: str) -> str:
                return f"{base}/{name}/available"

            first = sorted(up)[:links.limit - 1]  # the slots went in the order the names came (porch's is freed)
            await asyncio.to_thread(watcher.wait, lambda: all(watcher.last(topic(n)) == "online" for n in first)
                                    and watcher.last(topic("porch")) == "offline", 30,
                                    "the first online, porch offline")
            for name in sorted(up)[:2]:  # down: their slots go to the names still waiting
                links.set(name, False)
            up -= set(sorted(up)[:2])
            await asyncio.to_thread(watcher.wait, lambda: all(watcher.last(topic(n)) == "online" for n in up), 30,
                                    "the waiting ones online")
            await eventually(lambda: links.held == len(up) and links.connected == len(up), 30, "the links settled")
            assert _gauge("connected") == len(up) and _gauge("connecting") == 0
            for name in set(names) - up:  # went down: offline, or never said anything (coalesced before connecting)
                assert watcher.last(topic(name)) in ("offline", None), name
        finally:
            await links.stop()
            sampling = False
            await sampler
        await asyncio.to_thread(watcher.wait,
                                lambda: all(watcher.last(f"{base}/{n}/available") == "offline" for n in up),
                                10, "offline at stop")
    finally:
        watcher.close()
    assert most <= links.limit, f"{most} links held at once (bound {links.limit})"
    assert links.held == 0 and _gauge("connected") == 0


async def test_one_publisher_per_value(broker: int) -> None:
    """The reporter's main connection no longer writes `available`: each change arrives once, from the link
    (a main reconnect's re-publishing is the link's own business)."""
    settings = _settings(broker, EDGE_ID="single")
    base = f"{settings.mqtt_topic_prefix}/edges/single/cameras"
    watcher = Watcher(broker, [f"{base}/+/available"])
    try:
        bus = make_bus(settings)
        reporter = EdgeReporter(settings, bus, StandInNode())
        assert isinstance(reporter.availability, CameraLinks)
        await reporter.start()
        try:
            reporter.on_camera_available("desk", True)
            reporter.on_camera_available("desk", True)  # no change: nothing
            await asyncio.to_thread(watcher.wait, lambda: watcher.last(f"{base}/desk/available") == "online", 20,
                                    "desk online")
            reporter.publish_birth()  # what a main reconnect (or a rebirth command) does
            reporter.on_camera_available("desk", False)
            await asyncio.to_thread(watcher.wait, lambda: watcher.last(f"{base}/desk/available") == "offline", 20,
                                    "desk offline")
            await eventually(lambda: isinstance(reporter.availability, CameraLinks) and reporter.availability.held == 0,
                             20, "desk's link closed")
        finally:
            await reporter.stop()
    finally:
        watcher.close()
    assert [p for _, t, p, _ in watcher.messages if t == f"{base}/desk/available"] == ["online", "offline"]


async def test_without_a_broker_the_topics_go_on_the_in_process_bus() -> None:
    settings = load_settings({"EDGE_ID": "local"}, env_file=None)
    bus = LocalBus(settings)
    got: list[tuple[str, bytes, bool]] = []
    bus.subscribe("hgr/v1/edges/local/cameras/+/available", lambda t, p, props: got.append((t, p, props["qos"] == 1)))
    reporter = EdgeReporter(settings, bus, StandInNode())
    assert isinstance(reporter.availability, OnBus)
    assert isinstance(availability_for(settings, bus, "local", []), OnBus)
    await reporter.start()
    try:
        reporter.on_camera_available("desk", True)
        reporter.on_camera_available("desk", False)
        await eventually(lambda: len(got) == 2, 5, "both values")
        assert got == [("hgr/v1/edges/local/cameras/desk/available", b"online", True),
                       ("hgr/v1/edges/local/cameras/desk/available", b"offline", True)]
    finally:
        await reporter.stop()


class PinnedBroker(Broker):
    """The shipped broker with edge-a's credentials pinned to its main client id (dynamic security's
    ``clientid``): every other connection logging in as edge-a, its cameras' links included, is refused."""

    def _dynsec(self) -> Path:
        path = super()._dynsec()
        doc = json.loads(path.read_text())
        for client in doc["clients"]:
            if client["username"] == "edge-a":
                client["clientid"] = "hgr-edge-edge-a"
        path.write_text(json.dumps(doc))
        return path


@pytest.mark.asyncio(loop_scope="module")  # the module's edge_pool lives on the module's loop
async def test_a_broker_refusing_the_links_stalls_nothing_else(
        edge_pool: InferencePool, model_path: str, hand_photos: list[tuple[Path, int]], frames: list[bytes],
        tmp_path: Path) -> None:
    """Every camera link refused, again and again (with the main client's backoff): the camera's and the
    named stream's frames are answered, their state and events go out on the main connection, and the
    stream's close and the edge's stop are not held up by links that never got in."""
    clip = make_clip(tmp_path / "demo.mkv", [hand_photos[0][0]], fps=15, frames_each=15, codec="mjpeg")
    broker = PinnedBroker(tmp_path / "broker").start()
    base = "hgr/v1/edges/edge-a"
    watcher = Watcher(broker.port, [f"{base}/cameras/#", f"{base}/events"], user="observer")
    try:
        settings = load_settings({"MQTT_URL": broker.url("edge-a"), "EDGE_ID": "edge-a", "EVENT_DEBOUNCE_MS": "0",
                                  "MAX_FPS": "1000", "CAMERAS": f"demo=file://{clip}", "CAMERA_FPS": "5",
                                  "HGR_MODEL_PATH": model_path}, env_file=None)
        bus = make_bus(settings)
        async with serve_edge(settings, edge_pool, bus=bus) as (node, url):
            assert await bus.wait_connected(30)
            assert isinstance(node.reporter, EdgeReporter)
            links = node.reporter.availability
            assert isinstance(links, CameraLinks)
            broker_log = broker.folder / "data" / "mosquitto.log"
            await eventually(lambda: links.held == 1 and node.cameras.cameras[0].frames_processed > 0, 60,
                             "the camera up, its link held")
            ws, _ = await open_stream(f"{url}?camera=desk")
            await eventually(lambda: links.held == 2, 10, "desk's link opened")
            answered = 0
            for seq in range(30):  # frames go on while the links are refused
                await ws.send(protocol.encode_frame(seq, frames[seq % len(frames)]))
                answered += "total_fingers" in await recv_msg(ws)
            assert answered == 30
            await asyncio.to_thread(
                watcher.wait, lambda: all(watcher.last(f"{base}/cameras/{n}/fingers") for n in ("demo", "desk"))
                and any(t.endswith("/events") and '"desk"' in p for _, t, p, _ in watcher.messages),
                30, "the cameras' state and events on the main connection")
            assert links.connected == 0 and _gauge("connecting") == 2
            assert not any(t.endswith("/available") for _, t, _, _ in watcher.messages)  # no link got in
            await eventually(lambda: broker_log.read_text().count("disconnected, not authorised.") >= 2, 10,
                             "the broker's refusals, each link's at least")
            closed = time.monotonic()
            await ws.close()
            await eventually(lambda: links.held == 1, 10, "desk's refused link closed")
            closed = time.monotonic() - closed
            stopping = time.monotonic()
        stopped = time.monotonic() - stopping
    finally:
        watcher.close()
        broker.stop()
    assert closed < 10 and stopped < 30
