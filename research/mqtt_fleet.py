"""Simulated fleet → one hub's MQTT ingest rate. Prints JSON.

    python -m research.mqtt_fleet --edges 200 --rate 12000 --duration 10

Processes: a private Mosquitto running the shipped config (monitoring/mosquitto, auth off, on a free
port; or ``--mqtt-url`` for a broker of yours), one *hub* process running the real ``FleetService``
(MqttBus + Redis store: decode, validate, batch, Lua flush), and ``--publishers`` processes that play
``--edges`` edges, each with a birth and then numbered metrics messages shaped like a real edge's, at
``--rate`` messages/s in total. The hub's rate is measured over the steady part of the run (its
accepted-message counter, sampled every 0.25 s, between 10 % and 90 % of the final count; in backlog mode,
the whole queue over the time from the hub's return until a sample sees it all stored), and at the end every
edge's stored sequence is checked: messages the hub never got show up as ``gaps`` (the broker dropped
them, or the hub fell behind).

``--mode live`` (default): publishers and hub run at the same time; on a small machine the
publishers' CPU caps what the hub is offered. ``--mode backlog``: the hub subscribes (a kept session)
and goes away, the publishers fill the broker's queue for it, then the hub comes back and drains it
alone: the hub's own ceiling.
``--connections N`` spreads the edges over N MQTT connections (default: one per publisher process);
``--connections`` = ``--edges`` gives every simulated edge its own connection, as a real fleet has, so
the broker carries the fleet's connection count (mind ``ulimit -n``: each connection is a descriptor
in the broker and three in a publisher process)::

    python -m research.mqtt_fleet --edges 10000 --connections 10000 --publishers 4 --rate 1000 --duration 60

Traffic stays on 127.0.0.1; every loop is bounded by ``--duration``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from hgr.common.messaging.topics import edge_topic, encode
from hgr.loadtest.procs import ServerExited, free_port, loop_lag, start_mosquitto, stop_process
from research.paths import ROOT

SHIPPED_CONF = ROOT / "monitoring" / "mosquitto" / "mosquitto.conf"


def shipped_broker_config(port: int, folder: Path, *, dynsec: Path | None = None) -> str:
    """The shipped broker config (monitoring/mosquitto/mosquitto.conf) for a local run: its plain
    listener moved to 127.0.0.1:``port``, its TLS listener left out (it needs the deployment's
    certificate), data and log in ``folder``; with ``dynsec`` (a dynamic-security file built by
    deploy/mosquitto/dynsec.py) the shipped auth, else anonymous."""
    lines = []
    for line in SHIPPED_CONF.read_text().splitlines():
        word = line.split(" ", 1)[0]
        if (word == "listener" and "8883" in line) or word in ("certfile", "keyfile", "require_certificate"):
            continue
        if word == "listener" and "1883" in line:
            line = f"listener {port} 127.0.0.1"
        elif word == "plugin":
            line = f"plugin {dynsec_plugin()}" if dynsec else ""
        elif word == "plugin_opt_config_file":
            line = f"plugin_opt_config_file {dynsec}" if dynsec else ""
        elif word == "allow_anonymous" and not dynsec:
            line = "allow_anonymous true"
        elif word == "persistence_location":
            line = f"persistence_location {folder}/"
        elif word == "log_dest":
            line = f"log_dest file {folder / 'mosquitto.log'}"
        lines.append(line)
    # Run as the caller: mosquitto started as root would switch to 'mosquitto' and lose the folder.
    return "\n".join(lines + ["user root"]) + "\n"


def dynsec_plugin() -> Path:
    """This machine's mosquitto_dynamic_security.so (the shipped config names the image's path)."""
    for folder in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib", "/usr/local/lib"):
        path = Path(folder) / "mosquitto_dynamic_security.so"
        if path.is_file():
            return path
    raise FileNotFoundError("mosquitto_dynamic_security.so not found (Debian/Ubuntu: it is in the mosquitto package)")


def start_broker(folder: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """The shipped broker config without auth (no passwd file needed), on a free port."""
    if not shutil.which("mosquitto"):
        raise SystemExit("mosquitto is not installed; pass --mqtt-url")
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(shipped_broker_config(port, folder))
    try:
        proc = start_mosquitto(conf, port)
    except (TimeoutError, ServerExited) as exc:
        raise SystemExit(f"mosquitto did not start: {exc}") from None
    return f"mqtt://127.0.0.1:{port}", proc


def _env(args: argparse.Namespace) -> dict[str, str]:
    return {"MQTT_URL": args.mqtt_url, "MQTT_TOPIC_PREFIX": args.prefix, "REDIS_URL": args.redis_url,
            "REDIS_KEY_PREFIX": args.redis_prefix, "MQTT_SHARE_GROUP": args.group, "MQTT_SESSION_EXPIRY": "0",
            "MQTT_KEEPALIVE": "30", "EDGE_STALE_AFTER": "3600", "LOG_LEVEL": "warning", "PORT": "0"}


# --- hub process ---

def hub_main(args: argparse.Namespace, samples: Any, stop: Any, drain: Any) -> None:
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_hub(args, samples, stop, drain))


async def _hub(args: argparse.Namespace, samples: Any, stop: Any, drain: Any) -> None:
    import redis.asyncio as aioredis

    from hgr.common.config import load_settings
    from hgr.common.messaging.bus import MqttBus
    from hgr.common.percentiles import percentiles
    from hgr.hub.fleet import FleetService

    env = _env(args)
    if args.mode == "backlog":
        env["MQTT_SESSION_EXPIRY"] = "600"  # the broker queues for the hub while it is away
    settings = load_settings(env, env_file=None)
    redis = aioredis.Redis.from_url(args.redis_url)
    client_id = f"loadtest-hub-{uuid.uuid4().hex[:6]}"
    bus = MqttBus(settings, service="hub", client_id=client_id)
    service = FleetService(settings, bus, redis)
    await service.start()
    await bus.wait_connected(10)
    await asyncio.sleep(0.5)  # SUBACKs
    if args.mode == "backlog":
        await service.stop()  # a clean DISCONNECT: the session (and its subscriptions) stays
        samples.put(("ready", time.time(), 0))
        await asyncio.get_running_loop().run_in_executor(None, drain.wait)
        samples.put(("back", time.time(), 0))  # the drain is timed from here: reconnecting is part of it
        bus = MqttBus(settings, service="hub", client_id=client_id)
        service = FleetService(settings, bus, redis)
        await service.start()
    else:
        samples.put(("ready", time.time(), 0))
    lags_ms: list[float] = []
    lag_probe = asyncio.create_task(loop_lag(lags_ms))
    while not stop.is_set():
        await asyncio.sleep(0.25)
        samples.put(("sample", time.time(), service.ingested["metrics"]))
    lag_probe.cancel()
    await service.flush()
    edges = await service.store.edges()
    gaps = sum(int(h.get("gaps", 0)) for h in edges.values())
    stored = sum(int(h.get("msgs", 0)) for h in edges.values())
    seq = sum(int(h.get("snap_seq", 0)) for h in edges.values())
    samples.put(("final", time.time(), {"ingested": service.ingested["metrics"], "stored": stored,
                                        "max_seq_sum": seq, "gaps": gaps, "duplicates": service.ingested["duplicates"],
                                        "invalid": service.ingested["invalid"], "edges": len(edges),
                                        "loop_lag_ms": {**percentiles(lags_ms, (50, 99)),
                                                        "max": round(max(lags_ms, default=0.0), 1)}}))
    await service.stop()
    keys = [k async for k in redis.scan_iter(f"*{args.redis_prefix}*")]  # the fleet's keys: {prefix fleet}:…
    for i in range(0, len(keys), 500):
        await redis.delete(*keys[i:i + 500])
    await redis.aclose()


# --- publisher processes ---

def _metrics_payload(edge_id: str, session: str, seq: int) -> bytes:
    return encode({
        "v": 1, "edge_id": edge_id, "session": session, "seq": seq, "ts": time.time(),
        "frames": {"received": seq * 30, "processed": seq * 29, "dropped": seq},
        "fps": 29.0, "drops": {"replaced": seq}, "latency_ms": {"p50": 6.1, "p95": 11.4, "p99": 15.2},
        "connections": 2, "workers": {"workers": 2, "alive": 2, "restarts": 0, "queued": 0, "in_flight": 1},
        "errors": {}, "frames_by_key": {"demo": 29}, "interval_s": 1.0, "outbox": {"queued": 0, "dropped": 0},
    })[0]


def publisher_main(args: argparse.Namespace, index: int, go: Any, results: Any) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    url = urlsplit(args.mqtt_url)
    edges = [f"sim-{i:05d}" for i in range(index, args.edges, args.publishers)]
    # --connections: this process's share of them, each edge always on the same one (one each when
    # --connections equals --edges: a broker carrying the fleet's real connection count).
    n_clients = max(1, len(range(index, args.connections, args.publishers)))
    clients = []
    for c in range(n_clients):
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                             client_id=f"loadtest-pub-{index}-{c}-{uuid.uuid4().hex[:6]}")
        if url.username:
            client.username_pw_set(unquote(url.username),
                                   unquote(url.password) if url.password is not None else None)
        # paho walks its whole queue on every PUBACK: keep both small or the publisher, not the hub, is
        # what gets measured.
        client.max_inflight_messages_set(100)
        client.connect(url.hostname or "127.0.0.1", url.port or 1883, keepalive=60)
        clients.append(client)
    pump = _Pump(clients)
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "application/json"
    owner = {e: clients[i % n_clients] for i, e in enumerate(edges)}
    sessions = {e: uuid.uuid4().hex[:16] for e in edges}
    for e in edges:
        birth = {"v": 1, "edge_id": e, "session": sessions[e], "status": "online", "birth_seq": 1, "conn": 1,
                 "metrics_seq": 0, "version": "loadtest", "model": "full", "capabilities": {}}
        owner[e].publish(edge_topic(args.prefix, e, "status"), json.dumps(birth).encode(), qos=1, properties=props)
        pump.run_once()
    go.wait()
    rate = args.rate / args.publishers
    seqs = dict.fromkeys(edges, 0)
    sent, started, tick = 0, time.monotonic(), 0.01
    deadline = started + args.duration
    i = 0
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        due = int((now - started) * rate) - sent
        for _ in range(max(0, min(due, int(rate * 0.2) + 1))):  # bounded catch-up
            e = edges[i % len(edges)]
            i += 1
            seqs[e] += 1
            client = owner[e]
            client.publish(edge_topic(args.prefix, e, "metrics"), _metrics_payload(e, sessions[e], seqs[e]),
                           qos=args.qos, properties=props)
            sent += 1
            while len(client._out_messages) > 300 and time.monotonic() < deadline:
                pump.run_once(0.0005)
        pump.run_once(tick)
    elapsed = time.monotonic() - started
    end = time.monotonic() + 30
    while any(c._out_messages for c in clients) and time.monotonic() < end:  # let QoS 1 acks drain (bounded)
        pump.run_once(0.05)
    pump.close()
    results.put({"publisher": index, "sent": sent, "seconds": round(elapsed, 3), "connections": n_clients})


class _Pump:
    """Drives paho clients: one client runs paho's own network thread; many share this process's
    thread through a selector (paho's external-loop API), so thousands of connections cost no threads."""

    def __init__(self, clients: list[Any]) -> None:
        import selectors

        self.clients = clients
        self.threaded = len(clients) == 1
        self._misc_at = time.monotonic()
        if self.threaded:
            clients[0].loop_start()
            return
        self.selector = selectors.DefaultSelector()
        for client in clients:
            self.selector.register(client.socket(), selectors.EVENT_READ, client)

    def run_once(self, timeout: float = 0.0) -> None:
        if self.threaded:
            if timeout:
                time.sleep(timeout)
            return
        for key, _ in self.selector.select(timeout):
            key.data.loop_read(100)
        for client in self.clients:
            if client.want_write():
                client.loop_write()
        if time.monotonic() - self._misc_at > 1.0:  # keepalive pings, retries
            self._misc_at = time.monotonic()
            for client in self.clients:
                client.loop_misc()

    def close(self) -> None:
        for client in self.clients:
            client.disconnect()
        if self.threaded:
            self.clients[0].loop_stop()
        else:
            self.run_once(0.1)
            self.selector.close()


# --- orchestration ---

def ingest_rate(series: list[tuple[float, int]], back_ts: float | None) -> float:
    """Messages/s from the hub's (time, messages stored) samples.

    Live: the steady state, between 10 % and 90 % of the final count (ramp-up and tail left out).
    Backlog (``back_ts``: when the hub came back for its queue): the whole queue over the time from then
    to the first sample that saw it all stored. A steady window may not exist there: the hub can take the
    queue in one burst of flushes between two samples. The sample period makes this a lower bound.
    """
    top = series[-1][1] if series else 0
    if back_ts is not None:
        done = next((ts for ts, n in series if n >= top), None)
        return top / (done - back_ts) if top and done is not None and done > back_ts else 0.0
    window = [(ts, n) for ts, n in series if 0.1 * top <= n <= 0.9 * top]
    if len(window) < 2:
        # The hub stored the middle of the run between two samples (a loaded machine: CI once saw 0.0 here):
        # from the last sample below the window to the first above it, a lower bound like the backlog's.
        below = [(ts, n) for ts, n in series if n < 0.1 * top] or series[:1]
        above = [(ts, n) for ts, n in series if n > 0.9 * top]
        window = [below[-1], above[0]] if below and above and above[0][0] > below[-1][0] else []
    return (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0]) if len(window) >= 2 else 0.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    broker = None
    tmp = tempfile.TemporaryDirectory(prefix="hgr-mqtt-fleet-")
    if not args.mqtt_url:
        args.mqtt_url, broker = start_broker(Path(tmp.name))
    ctx = mp.get_context("spawn")
    samples, results, stop, go, drain = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Event(), ctx.Event()
    hub = ctx.Process(target=hub_main, args=(args, samples, stop, drain), daemon=True)
    hub.start()
    try:
        kind, _, _ = samples.get(timeout=60)
        assert kind == "ready"
        pubs = [ctx.Process(target=publisher_main, args=(args, i, go, results), daemon=True)
                for i in range(args.publishers)]
        for p in pubs:
            p.start()
        time.sleep(1.0)  # births in, publishers connected
        go.set()
        t0 = time.time()
        series: list[tuple[float, int]] = []
        back: list[float] = []  # backlog mode: when the hub came back for its queue
        sent: list[dict[str, Any]] = []  # one report per publisher process

        def take_samples() -> None:
            while not samples.empty():
                kind, ts, value = samples.get()
                if kind == "sample":
                    series.append((ts, value))
                elif kind == "back":
                    back.append(ts)

        while len(sent) < len(pubs):
            take_samples()
            while not results.empty():
                sent.append(results.get())
            if time.time() - t0 > args.duration + 60:
                break
            time.sleep(0.05)
        total_sent = sum(s["sent"] for s in sent)
        drain.set()  # backlog mode: the hub comes back now
        # until the hub has everything (or stops making progress)
        last_change, last_value = time.time(), -1
        while time.time() - last_change < 5.0 and time.time() - t0 < args.duration + 300:
            take_samples()
            value = series[-1][1] if series else 0
            if value != last_value:
                last_change, last_value = time.time(), value
            if value >= total_sent:
                break
            time.sleep(0.1)
        stop.set()
        final = None
        end = time.time() + 60
        while final is None and time.time() < end:
            kind, ts, value = samples.get(timeout=60)
            if kind == "sample":
                series.append((ts, value))
            elif kind == "final":
                final = value
        hub.join(30)
    finally:
        stop.set()
        if hub.is_alive():
            hub.kill()
        if broker is not None:
            stop_process(broker, 20)
        tmp.cleanup()
    rate = ingest_rate(series, back[0] if back else None)
    return {
        "test": "mqtt_fleet_ingest", "mode": args.mode, "edges": args.edges, "publishers": args.publishers,
        "connections": sum(s.get("connections", 1) for s in sent),
        "qos": args.qos, "target_rate": args.rate, "duration_s": args.duration,
        "sent": total_sent, "publish_rate": round(total_sent / max(s["seconds"] for s in sent), 1) if sent else 0,
        "hub_ingest_rate": round(rate, 1),
        "hub": final,
        "lost": (total_sent - final["stored"]) if final else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.mqtt_fleet", description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, default=200)
    parser.add_argument("--rate", type=float, default=12000.0, help="metrics messages/s, all edges together")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of publishing (bounded)")
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument("--connections", type=int, default=0,
                        help="MQTT connections in all (spread over the publishers; = --edges for one per edge); "
                             "default: one per publisher")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument("--mode", choices=("live", "backlog"), default="live")
    parser.add_argument("--mqtt-url", default="", help="default: a private mosquitto with the shipped config")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    args.duration = min(args.duration, 300.0)
    tag = uuid.uuid4().hex[:8]
    args.prefix, args.redis_prefix, args.group = f"loadtest/{tag}", f"loadtest:{tag}:", f"lt{tag}"
    print(json.dumps(run(args), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
