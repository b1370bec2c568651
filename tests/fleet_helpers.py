"""Helpers for the fleet tests: a Mosquitto of the test's own running the *shipped* broker config
(monitoring/mosquitto/mosquitto.conf + acl), restartable on the same port, and polling."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from support import free_port, need, wait_for_port

from loadtest.mqtt_fleet import shipped_broker_config

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
        data = self.folder / "data"
        text = shipped_broker_config(self.port, data, passwd=self._passwd() if self.auth else None,
                                     acl=SHIPPED / "acl" if self.auth else None)
        return text.replace(f"log_dest file {data / 'mosquitto.log'}", f"log_dest file {self.folder / 'mosquitto.log'}")

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
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        try:
            wait_for_port("127.0.0.1", self.port, 20)
        except TimeoutError:
            self.proc.kill()
            raise
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: a clean stop that saves persistence; SIGKILL: a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(20)
        self.proc = None

    def log(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


async def eventually(check: Callable[[], Any] | Callable[[], Awaitable[Any]], deadline_s: float = 30.0,
                     what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after the deadline."""
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        try:
            last = check()
            if asyncio.iscoroutine(last):
                last = await last
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - e.g. a server not up yet
            last = exc
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")
