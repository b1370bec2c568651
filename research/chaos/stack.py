"""The processes of a chaos run: a private redis-server and mosquitto, one hub and one edge."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hgr.loadtest.procs import (
    anonymous_broker_config,
    free_port,
    rss_mb,
    start_mosquitto,
    start_redis,
    stop_process,
    wait_ready,
    worker_pids,
)
from hgr.loadtest.ws_stream import start_edge


class Stack:
    """redis-server, mosquitto, hub and edge of this run, on free loopback ports, in a temporary folder."""

    def __init__(self, folder: Path, extra_env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.redis_port, self.broker_port = free_port(), free_port()
        self.hub_port, self.edge_port = free_port(), free_port()
        self.redis: subprocess.Popen[bytes] | None = None
        self.broker: subprocess.Popen[bytes] | None = None
        self.hub: subprocess.Popen[bytes] | None = None
        self.edge: subprocess.Popen[bytes] | None = None
        self.hub_starts = 0
        self.env = {**os.environ, "LOG_FORMAT": "text", "LOG_LEVEL": "warning", "WORKERS": "1",
                    "AUTH_ENABLED": "false", "RATE_LIMIT_REQUESTS": "1000000", "CACHE_ENABLED": "true",
                    "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0", "REDIS_ENABLED": "true",
                    "MQTT_URL": f"mqtt://127.0.0.1:{self.broker_port}", "METRICS_INTERVAL": "2",
                    "MQTT_OUTBOX_SETTLE": "0.5", "HEADER_TIMEOUT": "5", "EDGE_ID": "chaos-edge", **(extra_env or {})}

    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}"

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{self.edge_port}"

    def _log(self, name: str) -> Any:
        return (self.folder / f"{name}.log").open("ab")

    def start_redis(self) -> None:
        self.redis = start_redis(self.redis_port, self.folder)  # runs in the folder: nothing lands in the repo

    def start_broker(self) -> None:
        conf = self.folder / "mosquitto.conf"
        conf.write_text(anonymous_broker_config(self.broker_port))
        self.broker = start_mosquitto(conf, self.broker_port, log=self.folder / "mosquitto.log")

    def start_hub(self) -> None:
        self.hub_starts += 1
        self.hub = subprocess.Popen([sys.executable, "-m", "hgr", "hub", "--host", "127.0.0.1", "--port",
                                     str(self.hub_port)], env={**self.env, "MQTT_CLIENT_ID": "chaos-hub"},
                                    stdout=self._log("hub"), stderr=subprocess.STDOUT, cwd=self.folder)
        wait_ready(self.hub_url, self.hub, 240)

    def start_edge(self) -> None:
        self.edge = start_edge(self.edge_port, self.env, log_file=self._log("edge"))
        wait_ready(self.edge_url, self.edge, 240)

    def start(self) -> None:
        self.start_redis()
        self.start_broker()
        self.start_hub()
        self.start_edge()

    def stop(self) -> None:
        for proc in (self.edge, self.hub):
            if proc is not None:
                stop_process(proc, 30)
        for proc in (self.broker, self.redis):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    def rss(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, proc in (("hub", self.hub), ("edge", self.edge)):
            if proc is not None and proc.poll() is None:
                out[name] = round(rss_mb(proc.pid), 1)
                out[f"{name}_workers"] = round(sum(rss_mb(w) for w in worker_pids(proc.pid)), 1)
        return out


@contextlib.contextmanager
def running_stack(extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    for tool in ("redis-server", "mosquitto"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed; the chaos run starts its own")
    with tempfile.TemporaryDirectory(prefix="hgr-chaos-") as folder:
        stack = Stack(Path(folder), extra_env)
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()
