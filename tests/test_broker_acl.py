"""The shipped broker rights (monitoring/mosquitto/mosquitto.conf + the dynamic-security file that
deploy/mosquitto/dynsec.py builds, as deploy/init-secrets.sh does) against a real Mosquitto, asked with
real MQTT v5 clients: the SUBACK and PUBACK reason codes the broker answers, and what the hub receives.

Issue #20 row 2: an edge's credentials joined the hubs' shared subscription (Mosquitto 2.0's acl_file
never checks subscriptions) and the hub lost half of another edge's metrics."""

from __future__ import annotations

import importlib.util
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from hgr.common.messaging.topics import CAMERA_LEAVES
from tests.fleet_helpers import DEPLOY_MOSQUITTO, USERS, Broker
from tests.support import poll

pytestmark = pytest.mark.service  # starts processes (servers, tools) or needs a broker

SHARED = "$share/hgr-hub/hgr/v1/edges/+/metrics"
WAIT_S = 10


class Client:
    """A paho MQTT v5 client logged in as ``user``; each call waits for the broker's answer."""

    def __init__(self, port: int, user: str) -> None:
        self.user = user
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-{uuid.uuid4().hex[:6]}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, USERS[user])
        self.acks: dict[int, list[ReasonCode]] = {}
        self.received: list[str] = []
        self.answered = threading.Condition()
        connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._ack(mid, list(rcs))
        self.client.on_publish = lambda c, u, mid, rc, p: self._ack(mid, [rc])
        self.client.on_message = lambda c, u, msg: self.received.append(msg.payload.decode())
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert connected.wait(WAIT_S), f"{user} could not log in"

    def _ack(self, mid: int, codes: list[ReasonCode]) -> None:
        with self.answered:
            self.acks[mid] = codes
            self.answered.notify_all()

    def _wait(self, mid: int) -> ReasonCode:
        with self.answered:
            assert self.answered.wait_for(lambda: mid in self.acks, WAIT_S), f"no answer to {self.user}'s {mid}"
            return self.acks[mid][0]

    def may_subscribe(self, topic_filter: str) -> bool:
        result, mid = self.client.subscribe(topic_filter, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS and mid is not None
        return not self._wait(mid).is_failure

    def may_publish(self, topic: str, payload: str = "{}") -> bool:
        return not self._wait(self.client.publish(topic, payload, qos=1).mid).is_failure

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path, auth=True).start()
    yield broker
    broker.stop()


@pytest.fixture
def clients(broker: Broker) -> Iterator[dict[str, Client]]:
    made = {user: Client(broker.port, user) for user in USERS}
    yield made
    for client in made.values():
        client.close()


def test_row2_an_edge_cannot_join_the_hubs_shared_subscription(clients: dict[str, Client]) -> None:
    hub, rogue, edge_b = clients["hub"], clients["edge-a"], clients["edge-b"]
    assert hub.may_subscribe(SHARED)
    assert not rogue.may_subscribe(SHARED)
    # What the refusal is for: every one of edge-b's metrics reaches the hub (a member that may not read
    # them once made the broker hand it half of them, which it then dropped).
    sent = [json.dumps({"seq": i}) for i in range(40)]
    for payload in sent:
        assert edge_b.may_publish("hgr/v1/edges/edge-b/metrics", payload)
    poll(lambda: len(hub.received) >= len(sent), WAIT_S, "edge-b's metrics at the hub", interval=0.02)
    assert sorted(hub.received) == sorted(sent) and rogue.received == []


def test_an_edge_subscribes_to_nothing_but_its_own_control(clients: dict[str, Client]) -> None:
    edge = clients["edge-a"]
    for topic_filter in (SHARED, "$share/hgr-hub/hgr/v1/edges/+/events", "$share/other/hgr/v1/edges/edge-b/control",
                         "hgr/v1/edges/edge-b/control", "hgr/v1/edges/+/control", "hgr/v1/edges/+/metrics",
                         "hgr/v1/edges/edge-b/status", "hgr/v1/edges/edge-a/metrics", "hgr/v1/#", "#", "$SYS/#",
                         "$CONTROL/dynamic-security/v1/response"):
        assert not edge.may_subscribe(topic_filter), topic_filter
    assert edge.may_subscribe("hgr/v1/edges/edge-a/control")


def test_an_edge_publishes_only_its_own_reports(clients: dict[str, Client]) -> None:
    edge = clients["edge-a"]
    for kind in ("status", "metrics", "events", "results"):
        assert edge.may_publish(f"hgr/v1/edges/edge-a/{kind}"), kind
        assert not edge.may_publish(f"hgr/v1/edges/edge-b/{kind}"), kind
    for topic in ("hgr/v1/edges/edge-a/control", "hgr/v1/edges/edge-b/control", "hgr/v1/other",
                  "$CONTROL/dynamic-security/v1"):
        assert not edge.may_publish(topic), topic


def test_an_edge_writes_its_own_cameras_state_and_no_other_s(clients: dict[str, Client]) -> None:
    """The per-camera state topics (docs/mqtt.md "Per-camera state"); each camera's availability connection
    logs in as the edge too (edge/availability.py), so the same rights cover its `online` and its Will."""
    edge = clients["edge-a"]
    for leaf in CAMERA_LEAVES:
        assert edge.may_publish(f"hgr/v1/edges/edge-a/cameras/kitchen/{leaf}", "1"), leaf
        assert not edge.may_publish(f"hgr/v1/edges/edge-b/cameras/kitchen/{leaf}", "1"), leaf
    for topic in ("hgr/v1/edges/edge-a/cameras/kitchen/other", "hgr/v1/edges/edge-a/cameras/kitchen",
                  "hgr/v1/edges/edge-a/cameras/kitchen/available/x", "hgr/v1/edges/edge-a/cameras"):
        assert not edge.may_publish(topic, "1"), topic
    assert not edge.may_subscribe("hgr/v1/edges/edge-a/cameras/#")  # it writes them, it never reads them
    assert clients["observer"].may_subscribe("hgr/v1/edges/+/cameras/#")
    assert not clients["hub"].may_publish("hgr/v1/edges/edge-a/cameras/kitchen/available", "online")


def test_an_edge_writes_and_reads_back_only_its_own_discovery_configs(clients: dict[str, Client]) -> None:
    """HA_DISCOVERY (edge/ha_discovery.py): the configs under the edge's own node id, and the filter the edge
    subscribes with to clear configs of cameras it no longer has; Home Assistant logs in as the observer."""
    from hgr.edge.ha_discovery import discovery_filter

    edge, observer = clients["edge-a"], clients["observer"]
    assert edge.may_publish("homeassistant/sensor/edge-a/kitchen_fingers/config")
    assert edge.may_publish("homeassistant/device_automation/edge-a/kitchen_gesture_fist/config", "")
    assert edge.may_subscribe(discovery_filter("homeassistant", "edge-a"))
    for topic in ("homeassistant/sensor/edge-b/kitchen_fingers/config", "homeassistant/sensor/edge-a/x/state",
                  "homeassistant/status", "homeassistant/sensor/edge-a/config"):
        assert not edge.may_publish(topic), topic
    for topic_filter in (discovery_filter("homeassistant", "edge-b"), "homeassistant/#", "homeassistant/+/+/+/config"):
        assert not edge.may_subscribe(topic_filter), topic_filter
    assert observer.may_subscribe("homeassistant/#")
    assert not observer.may_publish("homeassistant/sensor/edge-a/kitchen_fingers/config")


def test_the_generator_names_the_camera_leaves_the_edge_writes() -> None:
    """deploy/mosquitto/dynsec.py runs without hgr installed, so it spells the leaves out: the same ones."""
    spec = importlib.util.spec_from_file_location("dynsec", DEPLOY_MOSQUITTO / "dynsec.py")
    assert spec is not None and spec.loader is not None
    dynsec = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dynsec)
    assert tuple(dynsec.CAMERA_LEAVES) == CAMERA_LEAVES


def test_the_hub_and_the_observer_have_least_privilege(clients: dict[str, Client]) -> None:
    hub, observer = clients["hub"], clients["observer"]
    assert hub.may_subscribe("hgr/v1/edges/+/status") and hub.may_subscribe("$share/hgr-hub/hgr/v1/edges/+/events")
    assert hub.may_publish("hgr/v1/edges/edge-a/control")
    for topic_filter in ("hgr/v1/edges/+/metrics", "$share/other/hgr/v1/edges/+/metrics", "#", "hgr/v1/#"):
        assert not hub.may_subscribe(topic_filter), topic_filter  # metrics and events only through the group
    for topic in ("hgr/v1/edges/edge-a/status", "hgr/v1/edges/edge-a/metrics", "$CONTROL/dynamic-security/v1"):
        assert not hub.may_publish(topic), topic  # a hub cannot forge an edge's birth, Will or report
    assert observer.may_subscribe("hgr/v1/edges/+/status") and observer.may_subscribe("hgr/v1/#")
    assert not observer.may_subscribe(SHARED) and not observer.may_subscribe("#")
    for topic in ("hgr/v1/edges/edge-a/control", "hgr/v1/edges/edge-a/status"):
        assert not observer.may_publish(topic), topic


def test_the_generator_refuses_what_cannot_be_an_edge(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = DEPLOY_MOSQUITTO / "dynsec.py"
    for line in ("cam/1:$7$101$c2FsdA==$aGFzaA==", "cam+:$7$101$c2FsdA==$aGFzaA==", "cam:plaintext"):
        (tmp_path / "passwd").write_text(line + "\n")
        r = subprocess.run([sys.executable, str(script), str(tmp_path / "passwd")], capture_output=True, text=True,
                           check=False, timeout=30)
        assert r.returncode != 0 and "passwd line 1" in r.stderr, line
    (tmp_path / "passwd").write_text("cam-1:$7$101$c2FsdA==$aGFzaA==\n")
    doc: dict[str, Any] = json.loads(subprocess.run([sys.executable, str(script), str(tmp_path / "passwd")],
                                                    capture_output=True, text=True, check=True, timeout=30).stdout)
    assert [c["roles"] for c in doc["clients"]] == [[{"rolename": "edge:cam-1"}]]
    assert doc["defaultACLAccess"] == {"publishClientSend": False, "publishClientReceive": False,
                                       "subscribe": False, "unsubscribe": True}
