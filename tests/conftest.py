"""Fixtures shared by every test: the model, the labelled photos, free ports, real Redis and Mosquitto.

Services are real. Outside CI a test whose service is missing is skipped with the reason; in CI
(CI=true) it fails instead, so a green CI run always means the real thing was exercised.
"""

from __future__ import annotations

import csv
import functools
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from hgr.common.config import load_settings
from hgr.common.errors import ModelUnavailable
from hgr.common.inference.model import resolve_model
from hgr.common.inference.pool import InferencePool
from hgr.loadtest.clips import SAMPLE_PHOTOS
from hgr.loadtest.procs import anonymous_broker_config, start_mosquitto, start_redis
from tests.redis_topologies import ClusterOf3, SentinelSet
from tests.support import SHARED, free_port, need, port_open

# The tiers (tests/README.md "Tiers"): `make check` runs the tests that need no service, no model and no
# server process (`-m "not service"`); `make test` runs them all. A test is in the service tier when it asks
# for one of these fixtures, lives in a scenario file, or is marked slow, browser or service.
SERVICE_FIXTURES = frozenset({"model_path", "lite_model_path", "hand_photos", "frames", "hub_pool", "edge_pool",
                              "redis_url", "mqtt_url", "private_redis", "private_mosquitto", "redis_cluster",
                              "redis_sentinel", "services", "bounded", "wheel"})


def in_service_tier(item: pytest.Item) -> bool:
    fixtures = set(getattr(item, "fixturenames", ()))
    return bool(fixtures & SERVICE_FIXTURES or item.path.name.startswith("test_scenario_") or "fuzz" in item.path.parts
                or any(item.get_closest_marker(m) for m in ("slow", "browser", "service")))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if in_service_tier(item) and not item.get_closest_marker("service"):
            item.add_marker(pytest.mark.service)


# The check tier's promise is held, not hoped: while a test outside the service tier runs (set-up, call,
# tear-down), an audit hook notes every process it starts and every network connection it makes, and
# the test fails naming them (mark it `service`, or use a service fixture). Main thread only: a thread
# left over from an earlier service test may still reconnect somewhere.
class _TierGuard:
    def __init__(self) -> None:
        self.watching = False
        self.seen: list[str] = []

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.watching or threading.get_ident() != threading.main_thread().ident:
            return
        if event in {"subprocess.Popen", "os.posix_spawn", "os.fork", "os.system"}:
            if not _in_ctypes_util():
                self.seen.append(f"{event}: {str(args[0])[:120] if args else ''}")
        elif event == "socket.connect" and isinstance(args[1], tuple):
            self.seen.append(f"socket.connect: {args[1]}")


def _in_ctypes_util() -> bool:
    """``ctypes.util.find_library`` runs ldconfig/gcc when a library is first imported: an import's side
    effect (whichever test imports it first pays), not a process the test starts."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.endswith(("ctypes/util.py", "ctypes\\util.py")):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


_GUARD = _TierGuard()
sys.addaudithook(_GUARD.audit)


def _guarded(item: pytest.Item) -> Iterator[None]:
    if in_service_tier(item):
        yield
        return
    _GUARD.watching, _GUARD.seen = True, []
    try:
        yield
    finally:
        _GUARD.watching = False
    if _GUARD.seen:
        pytest.fail(f"{item.nodeid} is in the check tier (no service, model or process) but it "
                    f"{'; '.join(sorted(set(_GUARD.seen))[:5])}: mark it @pytest.mark.service", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    return (yield from _guarded(item))


BUNDLE_NAMES = {"full": "hand_landmarker.task", "lite": "hand_landmarker_lite.task"}
PATH_ENV = {"full": "HGR_MODEL_PATH", "lite": "HGR_MODEL_LITE_PATH"}


@functools.cache
def find_model(variant: str) -> tuple[str | None, str]:
    """(bundle path or None, what was tried), found the way `hgr` finds it: ../shared/models when present,
    then HGR_MODEL_PATH (HGR_MODEL_LITE_PATH), then the cache (~/.cache/hgr/models), then built from the
    mediapipe wheel on the package index into the cache. Never any other network source."""
    shared = SHARED / "models" / BUNDLE_NAMES[variant]
    if shared.is_file():
        return str(shared), f"{shared}"
    model_env = {k: v for k, v in os.environ.items() if k.startswith("HGR_MODEL_")}
    settings = load_settings(model_env, env_file=None, model_variant=variant,
                             model_path=os.environ.get(PATH_ENV[variant], ""))
    try:
        return resolve_model(settings, sources=("wheel",)).path, "resolved"
    except ModelUnavailable as exc:
        return None, exc.message


def _model(variant: str) -> str:
    path, tried = find_model(variant)
    need(path is not None, f"no {variant} model bundle: {tried}")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def model_path() -> str:
    return _model("full")


@pytest.fixture(scope="session")
def lite_model_path() -> str:
    return _model("lite")


@pytest.fixture(scope="session")
def hand_photos() -> list[tuple[Path, int]]:
    """(path, labelled finger count) of every photo in ../shared/data/hands when present, else of the
    36 the package ships in loadtest/hands (same labels.csv format)."""
    shared = SHARED / "data" / "hands"
    folder = shared if (shared / "labels.csv").is_file() else SAMPLE_PHOTOS
    with (folder / "labels.csv").open() as f:
        return [(folder / row["file"], int(row["fingers"])) for row in csv.DictReader(f)]


@pytest.fixture(scope="session")
def frames(hand_photos: list[tuple[Path, int]]) -> list[bytes]:
    """The first 6 labelled photos as 640×480 camera frames (JPEG)."""
    from hgr.loadtest.ws_stream import load_frames

    return load_frames(hand_photos[0][0].parent, limit=6)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hub_pool(model_path: str) -> AsyncIterator[InferencePool]:
    """One inference worker labelled "hub", shared by a module's hub servers."""
    p = InferencePool(load_settings({}, env_file=None, workers=1), {"full": model_path}, service="hub", workers=1)
    await p.start()
    yield p
    await p.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def edge_pool(model_path: str) -> AsyncIterator[InferencePool]:
    """One inference worker labelled "edge", shared by a module's in-process edges."""
    p = InferencePool(load_settings(environ={}, env_file=None, model_path=model_path), {"full": model_path},
                      service="edge", workers=1)
    await p.start()
    yield p
    await p.close()


@pytest.fixture(autouse=True)
def _model_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point every test (and subprocesses it starts) at the model found as above, so nothing a test starts
    goes to the network for it. A test without a model is not skipped here: only those that need one are."""
    path, _ = find_model("full")
    if path:
        monkeypatch.setenv("HGR_MODEL_PATH", path)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The machine's Redis (127.0.0.1:6379). Tests must use their own key prefix or db."""
    need(port_open("127.0.0.1", 6379), "Redis is not running on 127.0.0.1:6379")
    return "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def mqtt_url() -> str:
    """The machine's Mosquitto (127.0.0.1:1883). Tests must use their own topic prefix."""
    need(port_open("127.0.0.1", 1883), "Mosquitto is not running on 127.0.0.1:1883")
    return "mqtt://127.0.0.1:1883"


@pytest.fixture
def private_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of the test's own on a free port (for tests that kill or flush it)."""
    need(bool(shutil.which("redis-server")), "redis-server is not installed")
    port = free_port()
    proc = start_redis(port)
    yield f"redis://127.0.0.1:{port}/0", proc
    proc.kill()
    proc.wait()


@pytest.fixture
def private_mosquitto(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A mosquitto of the test's own on a free port (for tests that stop or restart the broker)."""
    need(bool(shutil.which("mosquitto")), "mosquitto is not installed")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(anonymous_broker_config(port))
    proc = start_mosquitto(conf, port)
    yield f"mqtt://127.0.0.1:{port}", proc
    proc.kill()
    proc.wait()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterOf3]:
    """A Redis Cluster of three masters on free ports (url: ``redis+cluster://…``), shared by the session:
    tests use their own key prefix."""
    cluster = ClusterOf3(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def redis_sentinel(tmp_path: Path) -> Iterator[SentinelSet]:
    """A master + replica + 3 Sentinels of the test's own (url: ``redis+sentinel://…/mymaster/0``);
    the test may kill the master."""
    sentinels = SentinelSet(tmp_path)
    try:
        yield sentinels.start()
    finally:
        sentinels.stop()
