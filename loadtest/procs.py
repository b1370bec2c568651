"""Processes and their measurements, for ``hgr bench``, the research runs and the tests alike: free ports,
waiting for a port or ``/ready``, stopping a process, a process tree's CPU time and memory, its children,
a sample of its ``/metrics``, and private ``redis-server`` / ``mosquitto`` instances that are up when the
call returns.

psutil reads what /proc has (and what other systems have instead), so no caller parses /proc itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import psutil
from prometheus_client.parser import text_string_to_metric_families

# --- ports and waiting ---


def free_port() -> int:
    """A TCP port nothing listens on right now (on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, deadline_s: float = 60.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if port_open(host, port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} did not open within {deadline_s}s")


def wait_ready(base_url: str, proc: subprocess.Popen[Any] | None = None, timeout: float = 180.0, *,
               path: str = "/ready", interval: float = 0.2) -> None:
    """Poll ``base_url + path`` until 200 (``/ready``: model loaded, workers up). RuntimeError when
    ``proc`` exits first, TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{base_url} exited with code {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(base_url + path, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(interval)
    raise TimeoutError(f"{base_url}{path} not ready within {timeout:.0f} s")


def stop_process(proc: subprocess.Popen[Any], timeout: float = 30.0, sig: int = signal.SIGTERM) -> None:
    """``sig`` (SIGTERM: graceful, sockets closed and workers reaped), then SIGKILL if the process is
    still there after ``timeout`` seconds. Nothing to do if it has already exited."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def loop_lag(lags_ms: list[float]) -> None:
    """Until cancelled: how late a 10 ms timer fires on this event loop, in ms, into ``lags_ms``. It is what
    any request, flush or ping on the loop would wait meanwhile."""
    while True:
        t = time.perf_counter()
        await asyncio.sleep(0.01)
        lags_ms.append((time.perf_counter() - t - 0.01) * 1000)


# --- one process and its children ---


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie still answers kill(0))."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def children(pid: int, *, recursive: bool = False) -> list[int]:
    """The children of ``pid`` (started by any of its threads), sorted; none when it is gone."""
    try:
        return sorted(c.pid for c in psutil.Process(pid).children(recursive=recursive))
    except psutil.Error:
        return []


def worker_pids(pid: int) -> list[int]:
    """The inference workers among ``pid``'s children (an ``hgr edge`` or ``hgr hub``)."""
    found = []
    for child in children(pid):
        try:
            if any("hgr.common.inference.worker" in part for part in psutil.Process(child).cmdline()):
                found.append(child)
        except psutil.Error:  # ended in between
            continue
    return found


def _total(pid: int, tree: bool, measure: Callable[[psutil.Process], float]) -> float:
    """``measure`` summed over ``pid`` (with ``tree``: and its live descendants); 0.0 when ``pid`` is gone, and
    a child that ends in between counts for nothing."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)] if tree else [root]
    except psutil.Error:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            total += measure(proc)
        except psutil.Error:
            continue
    return total


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def cpu_seconds(pid: int, *, tree: bool = False) -> float:
    """User + system CPU time of ``pid`` (with ``tree``: and of its live descendants), 0.0 when gone."""
    return _total(pid, tree, _cpu)


def rss_mb(pid: int, *, tree: bool = False) -> float:
    """Resident memory of ``pid`` (with ``tree``: plus its live descendants) in MiB, 0.0 when gone."""
    return _total(pid, tree, lambda proc: proc.memory_info().rss / (1024 * 1024))


def sample_sum(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` in a ``/metrics`` body (Prometheus text) whose labels include
    ``labels`` (``sample_sum(text, "hand_gesture_errors_total", code="overloaded")``: over every service); 0.0
    when there is none. Only that name's lines go through prometheus_client's parser: a hub's /metrics can
    hold 100 000 per-edge series, seconds to parse whole."""
    mine = "".join(line + "\n" for line in text.splitlines()
                   if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "))
    return sum((sample.value for family in text_string_to_metric_families(mine) for sample in family.samples
                if sample.name == name and labels.items() <= sample.labels.items()), 0.0)


# --- private servers ---


class ServerExited(RuntimeError):
    """The server process ended before its port opened (most often: the port was taken meanwhile)."""


@contextlib.contextmanager
def _output(log: Path | None) -> Iterator[IO[bytes]]:
    if log is None:
        with tempfile.TemporaryFile() as out:
            yield out
    else:
        with log.open("ab") as out:
            yield out


def start_server(argv: list[str], port: int, deadline_s: float = 20, *, log: Path | None = None,
                 cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a server process and wait for its port on 127.0.0.1; kill it if the port never opens, and say
    at once, with what it printed, if it exits first (a free port can be taken as some connection's local
    port between choosing it and the server binding it). Its output goes to ``log`` (appended) when given,
    else to a temporary file that is gone once the port is open."""
    with _output(log) as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        end = time.monotonic() + deadline_s
        while not port_open("127.0.0.1", port, timeout=0.2):
            if proc.poll() is not None:
                printed = log.read_bytes() if log is not None else (out.seek(0), out.read())[1]
                raise ServerExited(f"{argv[0]} on port {port} exited with {proc.returncode}: "
                                   f"{printed.decode(errors='replace')[-2000:]}")
            if time.monotonic() > end:
                proc.kill()
                proc.wait()
                raise TimeoutError(f"127.0.0.1:{port} did not open within {deadline_s}s")
            time.sleep(0.05)
    return proc


def redis_argv(port: int | str) -> list[str]:
    """A throw-away redis-server on 127.0.0.1:``port``: nothing saved, nothing appended."""
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


def start_redis(port: int, folder: Path | None = None, deadline_s: float = 20) -> subprocess.Popen[bytes]:
    """A throw-away redis-server on ``port``, up; with ``folder``, it runs there and logs to redis.log
    (so nothing it writes lands in the caller's working directory)."""
    return start_server(redis_argv(port), port, deadline_s, cwd=folder,
                        log=folder / "redis.log" if folder is not None else None)


def anonymous_broker_config(port: int) -> str:
    """A mosquitto.conf for a private broker on 127.0.0.1:``port``: no auth, a deep queue per client."""
    return f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n"


def start_mosquitto(conf: Path, port: int, deadline_s: float = 20, *,
                    log: Path | None = None) -> subprocess.Popen[bytes]:
    """``mosquitto -c conf``, up on ``port`` (which ``conf`` must name as its listener)."""
    return start_server(["mosquitto", "-c", str(conf)], port, deadline_s, cwd=conf.parent, log=log)
