"""Helpers for the fleet tests: a Mosquitto of the test's own running the *shipped* broker config
(monitoring/mosquitto/mosquitto.conf, its users and rights built by deploy/mosquitto/dynsec.py from a
mosquitto_passwd file, as deploy/init-secrets.sh does), restartable on the same port, a stand-in for
the EdgeNode the reporter talks to, and a subscriber that records what arrives (``Watcher``)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hgr.loadtest.procs import start_mosquitto
from research.mqtt_fleet import shipped_broker_config
from tests.support import free_port, need

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "monitoring" / "mosquitto"
DEPLOY_MOSQUITTO = ROOT / "deploy" / "mosquitto"
USERS = {"hub": "hub-secret", "observer": "observer-secret", "edge-a": "a-secret", "edge-b": "b-secret",
         "edge-c": "c-secret"}


class Broker:
    """``mosquitto -c <shipped config, rewritten for a free port and the test's folder>``."""

    def __init__(self, folder: Path, *, auth: bool = True, share_groups: tuple[str, ...] = ("hgr-hub",),
                 prefix: str = "hgr/v1") -> None:
        need(bool(shutil.which("mosquitto")), "mosquitto is not installed")
        self.folder = folder
        self.port = free_port()
        self.auth = auth
        self.share_groups, self.prefix = share_groups, prefix
        self.proc: subprocess.Popen[bytes] | None = None
        (folder / "data").mkdir(parents=True, exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(self._config())

    def _config(self) -> str:
        return shipped_broker_config(self.port, self.folder / "data", dynsec=self._dynsec() if self.auth else None)

    def _dynsec(self) -> Path:
        """The shipped generator run on the test's password file, as deploy/init-secrets.sh runs it."""
        path = self.folder / "dynamic-security.json"
        groups = [arg for group in self.share_groups for arg in ("--group", group)]
        with path.open("w") as out:
            subprocess.run([sys.executable, str(DEPLOY_MOSQUITTO / "dynsec.py"), str(self._passwd()),
                            "--prefix", self.prefix, *groups], check=True, stdout=out)
        return path

    def _passwd(self) -> Path:
        path = self.folder / "passwd"
        if not path.exists():
            path.touch()
            for user, password in USERS.items():
                subprocess.run(["mosquitto_passwd", "-b", str(path), user, password], check=True,
                               capture_output=True)
        return path

    def url(self, user: str | None = None) -> str:
        if user is None:
            return f"mqtt://127.0.0.1:{self.port}"
        return f"mqtt://{user}:{USERS[user]}@127.0.0.1:{self.port}"

    def start(self) -> Broker:
        self.proc = start_mosquitto(self.conf, self.port)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: a clean stop that saves persistence; SIGKILL: a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(20)
        self.proc = None


class StandInNode:
    """The hooks the reporter uses (stats, key and stream throttles), with counters a test can move."""

    def __init__(self) -> None:
        self.processed = 0
        self.by_key: dict[str, int] = {}
        self.throttles: list[tuple[str, float | None]] = []
        self.streams: set[str] = set()  # the open streams a stream throttle may name
        self.stream_throttles: list[tuple[str, float | None]] = []

    def stats(self) -> dict[str, Any]:
        return {"frames_received": self.processed + 2, "frames_processed": self.processed,
                "frames_dropped": {"replaced": 2}, "errors": {"bad_frame": 1},
                "latency_ms": {"p50": 4.0, "p95": 9.5, "p99": 12.0}, "connections": 1,
                "workers": {"alive": 1}, "frames_by_key": dict(self.by_key)}

    def set_throttle(self, key_name: str, max_fps: float | None) -> bool:
        self.throttles.append((key_name, max_fps))
        return True

    def set_stream_throttle(self, stream_id: str, max_fps: float | None) -> bool:
        if stream_id not in self.streams:
            return False
        self.stream_throttles.append((stream_id, max_fps))
        return True




class EdgeSiteBroker(Broker):
    """An edge site's Mosquitto running the *shipped* edge config (deploy/mosquitto/edge-bridge.conf)
    with the shipped bridge (bridge.conf.example) filled in for ``edge_id``: it logs in to the central
    broker at ``central`` (host:port) as that edge, without TLS here. ``restart_timeout`` only shortens
    the bridge's reconnect backoff to keep tests short; None keeps the shipped one."""

    def __init__(self, folder: Path, edge_id: str, central: str, *, restart_timeout: str | None = "1 2") -> None:
        self.edge_id, self.central, self.restart_timeout = edge_id, central, restart_timeout
        super().__init__(folder, auth=False)

    def _config(self) -> str:
        bridge_dir = self.folder / "bridge.d"
        bridge_dir.mkdir(exist_ok=True)
        bridge = []
        for line in (DEPLOY_MOSQUITTO / "bridge.conf.example").read_text().splitlines():
            word = line.split(" ", 1)[0]
            if word in ("bridge_cafile", "bridge_insecure"):  # the test's central broker has no TLS
                continue
            if word == "address":
                line = f"address {self.central}"
            elif word == "remote_password":
                line = f"remote_password {USERS[self.edge_id]}"
            bridge.append(line.replace("EDGE_ID", self.edge_id))
        if self.restart_timeout is not None:
            bridge = [line for line in bridge if not line.startswith("restart_timeout")]
            bridge.append(f"restart_timeout {self.restart_timeout}")
        (bridge_dir / "bridge.conf").write_text("\n".join(bridge) + "\n")
        lines = []
        for line in (DEPLOY_MOSQUITTO / "edge-bridge.conf").read_text().splitlines():
            word = line.split(" ", 1)[0]
            if word == "listener":
                line = f"listener {self.port} 127.0.0.1"
            elif word == "persistence_location":
                line = f"persistence_location {self.folder / 'data'}/"
            elif word == "include_dir":
                line = f"include_dir {bridge_dir}"
            lines.append(line)
        return "\n".join(lines + [f"log_dest file {self.folder / 'mosquitto.log'}", "user root"]) + "\n"


class LinkCut:
    """A TCP relay on a free port standing for a WAN link: ``cut()`` drops every connection and refuses
    new ones (a bridge outage with both brokers up), ``restore()`` lets them through again."""

    def __init__(self, target_port: int) -> None:
        self.port, self.target_port = free_port(), target_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


class Watcher:
    """A subscriber of ``topic_filters`` (as ``user`` of the shipped broker, or anonymous): every message in
    arrival order as (arrival time, topic, payload text, retained), and waits on them (no sleeps)."""

    def __init__(self, port: int, topic_filters: list[str], user: str | None = None, timeout: float = 30.0) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[float, str, str, bool]] = []
        self._changed = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watcher-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        if user is not None:
            self.client.username_pw_set(user, USERS[user])
        acks: list[int] = []

        def on_connect(client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
            for topic_filter in topic_filters:
                client.subscribe(topic_filter, qos=1)

        def on_subscribe(client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
            assert not any(code.is_failure for code in codes), f"subscription refused: {codes}"
            acks.append(mid)
            if len(acks) == len(topic_filters):
                subscribed.set()

        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            with self._changed:
                self.messages.append((time.monotonic(), msg.topic, msg.payload.decode(), bool(msg.retain)))
                self._changed.notify_all()

        self.client.on_connect, self.client.on_subscribe, self.client.on_message = on_connect, on_subscribe, on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not subscribed.wait(timeout):
            self.close()
            raise AssertionError(f"the watcher of {topic_filters} was not subscribed within {timeout}s")

    def last(self, topic: str, since: float = 0.0) -> str | None:
        """The latest payload on ``topic`` that arrived at or after ``since`` (monotonic), or None."""
        with self._changed:
            return next((p for at, t, p, _ in reversed(self.messages) if t == topic and at >= since), None)

    def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        """Wait until ``check()`` (called under the lock, on every message) is truthy; return it."""
        with self._changed:
            result = self._changed.wait_for(check, timeout)
        assert result, f"timed out after {timeout}s waiting for {what}; got {self.messages[-20:]}"
        return result

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
