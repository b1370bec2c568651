"""common/messaging/bus.py without a broker: the in-process bus (MQTT semantics) and make_bus.
With Mosquitto: test_bus_mqtt.py."""

from __future__ import annotations

from typing import Any

from hgr.common.config import load_settings
from hgr.common.messaging.bus import LocalBus, make_bus
from tests.support import eventually


def test_make_bus_without_broker_is_in_process() -> None:
    assert isinstance(make_bus(load_settings({}, env_file=None)), LocalBus)


async def test_local_bus_delivers_like_a_broker() -> None:
    bus = LocalBus(load_settings({}, env_file=None))
    got: list[tuple[str, str, bytes, dict[str, Any]]] = []
    bus.publish("t/a/status", b"before-start", qos=1, retain=True)  # outboxed until start
    await bus.start()
    bus.subscribe("t/+/status", lambda t, p, props: got.append(("plain", t, p, props)))

    async def async_handler(t: str, p: bytes, props: dict[str, Any]) -> None:
        got.append(("shared-async", t, p, props))

    bus.subscribe("t/+/metrics", lambda t, p, props: got.append(("shared-sync", t, p, props)), shared=True)
    bus.subscribe("t/+/metrics", async_handler, shared=True)
    for i in range(4):
        bus.publish("t/a/metrics", str(i).encode(), qos=1)
    await eventually(lambda: len(got) >= 5, 5, "the retained message and the 4 shared ones", interval=0.01)
    retained = [g for g in got if g[0] == "plain"]
    assert len(retained) == 1 and retained[0][2] == b"before-start" and retained[0][3]["retain"]
    shared = sorted(g[2] for g in got if g[0].startswith("shared"))
    assert shared == [b"0", b"1", b"2", b"3"]  # each message to exactly one member
    assert {g[0] for g in got} == {"plain", "shared-sync", "shared-async"}  # split across members
    await bus.stop()


async def test_local_bus_survives_a_failing_handler() -> None:
    bus = LocalBus(load_settings({}, env_file=None))
    await bus.start()
    got: list[bytes] = []

    def bad(t: str, p: bytes, props: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    bus.subscribe("x/#", bad)
    bus.subscribe("x/#", lambda t, p, props: got.append(p))
    bus.publish("x/1", b"a")
    bus.publish("x/1", b"b")
    await eventually(lambda: len(got) == 2, 2, "both messages to the good handler", interval=0.01)
    assert got == [b"a", b"b"] and bus.handler_errors == 2
    await bus.stop()
