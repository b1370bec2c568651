"""Helpers for the fleet tests: a Mosquitto of the test's own running the *shipped* broker config
(monitoring/mosquitto/mosquitto.conf + acl), restartable on the same port, and a stand-in for the
EdgeNode the reporter talks to."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from support import free_port, need, start_server

from hgr.loadtest.mqtt_fleet import shipped_broker_config

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "monitoring" / "mosquitto"
USERS = {"hub": "hub-secret", "observer": "observer-secret", "edge-a": "a-secret", "edge-b": "b-secret"}


class Broker:
    """``mosquitto -c <shipped config, rewritten for a free port and the test's folder>``."""

    def __init__(self, folder: Path, *, auth: bool = True) -> None:
        need(bool(shutil.which("mosquitto")), "mosquitto is not installed")
        self.folder = folder
        self.port = free_port()
        self.auth = auth
        self.proc: subprocess.Popen | None = None
        (folder / "data").mkdir(parents=True, exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(self._config())

    def _config(self) -> str:
        return shipped_broker_config(self.port, self.folder / "data", passwd=self._passwd() if self.auth else None,
                                     acl=SHIPPED / "acl" if self.auth else None)

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
        self.proc = start_server(["mosquitto", "-c", str(self.conf)], self.port)
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

    def set_throttle(self, key_name: str, max_fps: float | None) -> None:
        self.throttles.append((key_name, max_fps))

    def set_stream_throttle(self, stream_id: str, max_fps: float | None) -> bool:
        if stream_id not in self.streams:
            return False
        self.stream_throttles.append((stream_id, max_fps))
        return True
