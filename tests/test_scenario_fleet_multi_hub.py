"""The fleet for real: two `hgr edge` and two `hgr hub` processes, a Mosquitto running the shipped
config (auth, per-edge ACL, persistence) and real Redis. Tests run in order on one fleet:

1. both edges appear on both hubs' /fleet;
2. every metrics message is consumed exactly once across the hubs;
3. `kill -9` of an edge: offline through its Will, well before the staleness timeout;
4. broker restart on the same port: edges reconnect and deliver their outbox, nothing lost;
5. hub restart: its fleet view is intact (state in Redis; its broker session resumed);
6. a plain `mosquitto_sub` reads status and events payloads (events from real frames);
7. the fleet-wide key quota: frames of one key on edge-a get that key throttled on edge-b too.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hgr.loadtest.procs import sample_sum
from tests import support
from tests.fleet_helpers import USERS, Broker
from tests.support import free_port, need, port_open, stop_process

pytestmark = pytest.mark.slow

KEEPALIVE = 5
KEYS = {"kiosk": "kiosk-secret-key-0123456789", "other": "other-secret-key-0123456789"}
QUOTA = 6
HGR = [sys.executable, "-m", "hgr"]


# Only the errors of a fleet still settling count as "not yet": Fleet.start relies on the RuntimeError of
# a process that died getting through.
poll = functools.partial(support.poll, interval=0.2, ignore=(httpx.HTTPError, KeyError, ValueError))


class Fleet:
    def __init__(self, folder: Path, redis_url: str, model: str) -> None:
        self.folder = folder
        tag = uuid.uuid4().hex[:8]
        self.broker = Broker(folder / "broker", auth=True, share_groups=(f"hubs{tag}",)).start()
        self.base = {**{k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "REDIS_", "EDGE_"))},
                     "HGR_MODEL_PATH": model, "WORKERS": "1", "LOG_FORMAT": "text", "LOG_LEVEL": "info",
                     "MQTT_KEEPALIVE": str(KEEPALIVE), "METRICS_INTERVAL": "0.2", "EVENT_DEBOUNCE_MS": "0",
                     "EDGE_STALE_AFTER": "60", "REDIS_URL": redis_url, "REDIS_KEY_PREFIX": f"test:{tag}:",
                     "MQTT_SHARE_GROUP": f"hubs{tag}", "RATE_LIMIT_ENABLED": "false",
                     "API_KEYS": ",".join(f"{n}:{k}" for n, k in KEYS.items()),
                     "FLEET_QUOTA_FRAMES": str(QUOTA), "RATE_LIMIT_WINDOW": "3600"}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    def start(self, name: str) -> None:
        port = self.ports.setdefault(name, free_port())
        env = dict(self.base)
        if name.startswith("edge"):
            env.update(EDGE_ID=name, MQTT_URL=self.broker.url(name), EDGE_PORT=str(port), AUTH_ENABLED="true")
            argv = [*HGR, "edge", "--port", str(port)]
        else:
            env.update(MQTT_URL=self.broker.url("hub"), PORT=str(port), AUTH_ENABLED="false")
            argv = [*HGR, "hub", "--port", str(port)]
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115 - the child writes to it for its lifetime
        self.procs[name] = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=Path(__file__).resolve().parent.parent)
        poll(lambda: port_open("127.0.0.1", port) or self._died(name), 120, f"{name} to listen")

    def _died(self, name: str) -> bool:
        if self.procs[name].poll() is not None:
            raise RuntimeError(f"{name} exited: {(self.folder / f'{name}.log').read_text()[-3000:]}")
        return False

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name, None)
        if proc:
            stop_process(proc, 30, sig)

    def get(self, hub: str, path: str) -> dict[str, Any]:
        # A key without scopes has fleet:read (docs/security.md): the fleet views and the full /status.
        doc: dict[str, Any] = httpx.get(f"http://127.0.0.1:{self.ports[hub]}{path}", timeout=5,
                                        headers={"X-API-Key": next(iter(KEYS.values()))}).json()
        return doc

    def edges(self, hub: str) -> dict[str, dict[str, Any]]:
        return {e["edge_id"]: e for e in self.get(hub, "/fleet")["edges"]}

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        self.broker.stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, redis_url: str, lite_model_path: str) -> Iterator[Fleet]:
    need(shutil.which("mosquitto_passwd") is not None, "mosquitto_passwd is not installed")
    f = Fleet(tmp_path_factory.mktemp("fleet"), redis_url, lite_model_path)
    try:
        for name in ("hub-1", "hub-2", "edge-a", "edge-b"):
            f.start(name)
        yield f
    finally:
        f.close()
        import redis
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(f"*{f.base['REDIS_KEY_PREFIX']}*"))
        if keys:
            client.delete(*keys)


def _online(edges: dict[str, dict[str, Any]]) -> set[str]:
    return {e for e, v in edges.items() if v["status"] == "online" and v["metrics_seq"] > 0}


def test_both_edges_appear_on_both_hubs(fleet: Fleet) -> None:
    for hub in ("hub-1", "hub-2"):
        def both_online(hub: str = hub) -> bool:
            return _online(fleet.edges(hub)) == {"edge-a", "edge-b"}

        poll(both_online, 90, f"both edges on {hub}")
        edge = fleet.edges(hub)["edge-a"]
        assert edge["capabilities"]["workers"] == 1 and edge["workers"]["alive"] == 1
    totals = fleet.get("hub-1", "/fleet")["totals"]
    assert totals["edges"] == 2 and totals["online"] == 2


def test_every_metrics_message_is_consumed_exactly_once_across_hubs(fleet: Fleet) -> None:
    def balanced() -> tuple[list[int], dict[str, dict[str, Any]]] | None:
        ingested = [fleet.get(h, "/status")["fleet"]["ingested"] for h in ("hub-1", "hub-2")]
        edges = fleet.edges("hub-1")
        sent = sum(e["metrics_seq"] for e in edges.values())
        stored = sum(e["messages"]["metrics"] for e in edges.values())
        per_hub = [i.get("metrics", 0) for i in ingested]
        if sum(per_hub) == sent == stored and sent >= 20:
            return per_hub, edges
        return None

    per_hub, edges = poll(balanced, 60, "hub counts to add up to the messages sent")
    assert all(n > 0 for n in per_hub), per_hub  # the shared subscription split the traffic
    for e in edges.values():
        assert e["messages"]["duplicates"] == 0 and e["messages"]["gaps"] == 0


def test_kill_9_edge_is_offline_by_its_will(fleet: Fleet) -> None:
    poll(lambda: fleet.edges("hub-2")["edge-b"]["status"] == "online", 30, "edge-b online")
    started = time.monotonic()
    fleet.stop("edge-b", signal.SIGKILL)
    view = poll(lambda: (e := fleet.edges("hub-2")["edge-b"])["status"] == "offline" and e, 60, "edge-b offline")
    elapsed = time.monotonic() - started
    print(f"edge-b offline {elapsed:.1f}s after kill -9 (keepalive {KEEPALIVE}s)")
    assert view["reason"] == "will"  # the broker's Will, not the hub's 60 s staleness timeout
    assert elapsed < 60
    assert fleet.edges("hub-1")["edge-b"]["status"] == "offline"  # every hub sees status
    fleet.start("edge-b")  # a new process: a new session, born again
    poll(lambda: _online(fleet.edges("hub-1")) == {"edge-a", "edge-b"}, 90, "edge-b back")


def test_a_frozen_edge_is_offline_within_1_5_keepalives(fleet: Fleet) -> None:
    # SIGSTOP keeps the socket open but silent, like a cut network path: only keepalive can tell.
    proc = fleet.procs["edge-b"]
    started = time.monotonic()
    proc.send_signal(signal.SIGSTOP)
    try:
        view = poll(lambda: (e := fleet.edges("hub-1")["edge-b"])["status"] == "offline" and e, 60,
                    "frozen edge-b offline")
        elapsed = time.monotonic() - started
    finally:
        proc.send_signal(signal.SIGCONT)
    print(f"frozen edge-b offline after {elapsed:.1f}s (keepalive {KEEPALIVE}s)")
    assert view["reason"] == "will" and elapsed >= KEEPALIVE  # the broker's keepalive check fired…
    assert elapsed < 1.5 * KEEPALIVE + 10  # …around 1.5 × keepalive, far from the 60 s staleness
    poll(lambda: _online(fleet.edges("hub-1")) == {"edge-a", "edge-b"}, 90, "edge-b reconnected")


def _ingest_offsets(fleet: Fleet, samples: int = 6) -> dict[str, int]:
    """Per edge, messages ingested minus the edge's metrics sequence number, once settled.

    With no loss this is constant; a snapshot can catch a message whose higher sequence number one
    hub has already flushed while another hub still holds a lower one in its batch, which makes the
    offset briefly smaller, never larger. So the settled value is the largest of a few snapshots."""
    best: dict[str, int] = {}
    for _ in range(samples):
        for edge_id, v in fleet.edges("hub-1").items():
            offset = v["messages"]["metrics"] - v["metrics_seq"]
            best[edge_id] = max(best.get(edge_id, offset), offset)
        time.sleep(0.25)
    return best


def test_broker_restart_edges_reconnect_and_deliver_their_outbox(fleet: Fleet) -> None:
    offsets = _ingest_offsets(fleet)
    before = fleet.edges("hub-1")
    fleet.broker.stop()  # SIGTERM, persistence saved

    def outbox(edge: str) -> float:  # the edge's hgr_mqtt_outbox_messages
        text = httpx.get(f"http://127.0.0.1:{fleet.ports[edge]}/metrics", timeout=5).text
        return sample_sum(text, "hgr_mqtt_outbox_messages")

    poll(lambda: all(outbox(edge) >= 10 for edge in ("edge-a", "edge-b")), 60, "10 metrics in each edge's outbox")
    fleet.broker.start()

    seen: list[dict[str, Any]] = []

    def delivered() -> dict[str, Any] | None:
        now = fleet.edges("hub-1")
        seen[:] = [{e: (v["status"], v["metrics_seq"], v["messages"], v["birth_seq"]) for e, v in now.items()}]
        for edge_id in ("edge-a", "edge-b"):
            b, a = before[edge_id], now[edge_id]
            if a["status"] != "online" or a["metrics_seq"] < b["metrics_seq"] + 15:
                return None
            if a["messages"]["metrics"] - a["metrics_seq"] != offsets[edge_id]:
                return None  # not yet every message across the outage (or one lost: then never)
        return now

    try:
        after = poll(delivered, 90, "every metrics message across the outage to be ingested")
    except AssertionError:
        counters = [(e, v["metrics_seq"], v["messages"]) for e, v in before.items()]
        raise AssertionError(f"offsets {offsets}, before {counters}, last {seen}") from None
    for edge_id in ("edge-a", "edge-b"):
        assert after[edge_id]["messages"]["gaps"] == before[edge_id]["messages"]["gaps"]
        assert after[edge_id]["birth_seq"] > before[edge_id]["birth_seq"]  # reborn on reconnect


def test_hub_restart_keeps_the_fleet_view(fleet: Fleet) -> None:
    before = fleet.edges("hub-1")
    fleet.stop("hub-1")
    poll(lambda: _online(fleet.edges("hub-2")) == {"edge-a", "edge-b"}, 30, "hub-2 still serving")
    fleet.start("hub-1")
    after = fleet.edges("hub-1")  # straight away: from Redis, nothing to rebuild
    assert set(after) == {"edge-a", "edge-b"}
    for edge_id in after:
        assert after[edge_id]["status"] == "online"
        assert after[edge_id]["metrics_seq"] >= before[edge_id]["metrics_seq"]
    # and it ingests again (its session resumed, so what was queued for it arrives too)
    poll(lambda: fleet.get("hub-1", "/status")["fleet"]["ingested"].get("metrics", 0) > 0, 60,
         "hub-1 to ingest again")
    gaps = sum(e["messages"]["gaps"] for e in fleet.edges("hub-1").values())
    assert gaps == 0


async def stream_frames(fleet: Fleet, edge: str, key: str, photo: bytes, n: int, *, wait: bool = True,
                        until_throttled: bool = False) -> None:
    """Send ``n`` frames, each answered before the next when ``wait``. With ``until_throttled`` the
    stream may end early: once the hub's throttle reaches this edge, a frame gets no answer (it is
    dropped and counted in the next result's ``dropped``), which is what the caller is after."""
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{fleet.ports[edge]}/ws",
                                  additional_headers={"Authorization": f"Bearer {KEYS[key]}"}) as ws:
        await ws.recv()  # hello
        for _ in range(n):
            await ws.send(photo)
            if wait:
                try:
                    await asyncio.wait_for(ws.recv(), 15 if until_throttled else 60)
                except TimeoutError:
                    if until_throttled:
                        return
                    raise


def _photo(hand_photos: list[tuple[Path, int]]) -> bytes:
    return next(p for p, fingers in hand_photos if fingers > 0).read_bytes()


def test_mosquitto_sub_reads_status_and_events(fleet: Fleet, hand_photos: list[tuple[Path, int]]) -> None:
    port = fleet.broker.port
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-u", "observer", "-P",
                            USERS["observer"], "-V", "mqttv5", "-v", "-t", "hgr/v1/edges/+/status",
                            "-t", "hgr/v1/edges/edge-a/events", "-W", "60"],
                           stdout=subprocess.PIPE, text=True)
    try:
        asyncio.run(stream_frames(fleet, "edge-a", "kiosk", _photo(hand_photos), 3))  # under the quota
        lines: list[tuple[str, dict[str, Any]]] = []
        assert sub.stdout is not None  # stdout=PIPE
        while len([t for t, _ in lines if t.endswith("/events")]) < 2:  # new, then end on close
            line = sub.stdout.readline()
            assert line, f"mosquitto_sub ended early; got {lines}"
            topic, payload = line.rstrip("\n").split(" ", 1)
            lines.append((topic, json.loads(payload)))  # plain JSON: readable by anyone
    finally:
        sub.terminate()
        sub.wait(10)
    statuses = {t: d for t, d in lines if t.endswith("/status")}
    assert statuses["hgr/v1/edges/edge-a/status"]["status"] == "online"
    events = [d for t, d in lines if t.endswith("/events")]
    assert [e["phase"] for e in events] == ["new", "end"]
    assert events[0]["total_fingers"] >= 0 and events[0]["edge_id"] == "edge-a"


def test_fleet_quota_throttles_a_key_on_every_edge(fleet: Fleet, hand_photos: list[tuple[Path, int]]) -> None:
    photo = _photo(hand_photos)
    # over the fleet quota (the throttle may already reach edge-a before the last of these frames)
    asyncio.run(stream_frames(fleet, "edge-a", "kiosk", photo, QUOTA + 2, until_throttled=True))

    def throttled_on_edge_b() -> bool:
        # kiosk's frames on the *other* edge are dropped as "throttled" once the hub has told it
        asyncio.run(stream_frames(fleet, "edge-b", "kiosk", photo, 2, wait=False))
        return bool(fleet.edges("hub-1")["edge-b"]["drops_by_reason"].get("throttled", 0) > 0)

    poll(throttled_on_edge_b, 60, "kiosk to be throttled on edge-b")
    asyncio.run(stream_frames(fleet, "edge-b", "other", photo, 1))  # another key is still served
