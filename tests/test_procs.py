"""hgr.loadtest.procs: the process and measurement helpers ``hgr bench``, the research runs and the tests share."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hgr.loadtest.procs import (
    ServerExited,
    alive,
    children,
    cpu_seconds,
    free_port,
    port_open,
    rss_mb,
    sample_sum,
    start_redis,
    start_server,
    stop_process,
    worker_pids,
)
from tests.support import need, poll

pytestmark = pytest.mark.service  # starts processes: that is what it tests


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A Python child of this process that waits on its stdin (no sleep: it ends when stdin closes)."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield proc
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(30)


def test_a_process_tree_is_measured_with_its_children(child: subprocess.Popen[bytes]) -> None:
    me = os.getpid()
    assert child.pid in children(me)
    assert alive(child.pid)
    own, tree = rss_mb(me), rss_mb(me, tree=True)
    assert own > 10 and tree >= own + rss_mb(child.pid) * 0.5  # memory may move between the two reads
    assert cpu_seconds(me) > 0 and cpu_seconds(me, tree=True) >= cpu_seconds(me)
    # a plain Python child is no inference worker (a pool fixture of an earlier test may still hold real ones)
    assert child.pid not in worker_pids(me)


def test_a_zombie_is_not_alive_and_a_reaped_process_measures_nothing() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    poll(lambda: not alive(proc.pid), 30, "the child to exit (a zombie until reaped)")
    proc.wait()
    assert not alive(proc.pid)
    assert rss_mb(proc.pid) == 0.0 and cpu_seconds(proc.pid) == 0.0 and children(proc.pid) == []


def test_a_server_that_exits_before_its_port_opens_says_what_it_printed() -> None:
    with pytest.raises(ServerExited, match="no such luck"):
        start_server([sys.executable, "-c", "print('no such luck'); raise SystemExit(3)"], free_port())


def test_a_private_redis_is_up_when_started_and_writes_into_its_folder(tmp_path: Path) -> None:
    need(bool(shutil.which("redis-server")), "redis-server is not installed")
    port = free_port()
    proc = start_redis(port, tmp_path)
    try:
        assert port_open("127.0.0.1", port)
    finally:
        stop_process(proc, 10)
    assert (tmp_path / "redis.log").exists()


def test_sample_sum_adds_the_samples_of_one_name_whose_labels_include_those_asked() -> None:
    text = ("# HELP hand_gesture_errors_total Errors.\n# TYPE hand_gesture_errors_total counter\n"
            'hand_gesture_errors_total{service="edge",code="overloaded"} 2.0\n'
            'hand_gesture_errors_total{service="hub",code="overloaded"} 1.0\n'
            'hand_gesture_errors_total{service="hub",code="too_large"} 4.0\n'
            "hgr_websocket_connections 3.0\nhgr_websocket_connections_peak 9.0\n")
    assert sample_sum(text, "hand_gesture_errors_total", code="overloaded") == 3.0
    assert sample_sum(text, "hand_gesture_errors_total", service="hub", code="overloaded") == 1.0
    assert sample_sum(text, "hand_gesture_errors_total") == 7.0
    assert sample_sum(text, "hgr_websocket_connections") == 3.0  # not the longer name beginning with it
    assert sample_sum(text, "hand_gesture_errors_total", code="none") == 0.0
    assert sample_sum(text, "hgr_absent") == 0.0
