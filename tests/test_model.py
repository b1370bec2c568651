"""common/inference/model.py, the loading order: HGR_MODEL_PATH → cache → download (pinned SHA-256) → build from the
wheel (both
variants; the lite detector gets the full detector's TFLite metadata).

The download and the package index are a local HTTP server serving the real bundle and a wheel
assembled from the real .tflite files, never the internet.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pty
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hgr.common.config import Settings, load_settings
from hgr.common.errors import ModelUnavailable
from hgr.common.inference.engine import Detector
from hgr.common.inference.model import BUNDLE_MEMBERS, WHEEL_MEMBERS, resolve_model
from hgr.common.inference.tflite_metadata import metadata_block, with_metadata_of
from hgr.common.options import DetectOptions
from tests.support import free_port


class FakeOrigin:
    """Serves {path: bytes}; records every request path; optional per-path delay."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        self.delays: dict[str, float] = {}
        self.requests: list[str] = []
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                origin.requests.append(self.path)
                time.sleep(origin.delays.get(self.path, 0))
                body, ctype = origin.files.get(self.path, (None, ""))
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def origin() -> Iterator[FakeOrigin]:
    o = FakeOrigin()
    yield o
    o.server.shutdown()


def _settings(tmp_path: Path, origin: FakeOrigin, **env: str) -> Settings:
    base = {"HGR_MODEL_CACHE_DIR": str(tmp_path / "cache"), "HGR_MODEL_URL": f"{origin.url}/model.task",
            "HGR_MODEL_INDEX_URL": f"{origin.url}/simple", "HGR_MODEL_DOWNLOAD_TIMEOUT": "2"}
    base.update(env)
    return load_settings(base, env_file=None)


def _fake_wheel(bundle: Path) -> bytes:
    """A wheel laid out like mediapipe 0.10.21's, holding the real model files."""
    out = io.BytesIO()
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w") as whl:
        for member, (inner, _) in WHEEL_MEMBERS["full"].items():
            whl.writestr(inner, src.read(member))
        whl.writestr("mediapipe/__init__.py", "")
    return out.getvalue()


def _serve_index(origin: FakeOrigin, wheel: bytes) -> None:
    name = "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
    origin.files["/simple/mediapipe/"] = (json.dumps({"files": [
        {"filename": "mediapipe-0.10.20-cp311-cp311-manylinux_2_28_x86_64.whl", "url": "/files/old.whl"},
        {"filename": name, "url": f"/files/{name}"}]}).encode(), "application/vnd.pypi.simple.v1+json")
    origin.files[f"/files/{name}"] = (wheel, "application/octet-stream")


def test_model_path_wins_and_touches_no_network(tmp_path: Path, origin: FakeOrigin, model_path: str) -> None:
    info = resolve_model(_settings(tmp_path, origin, HGR_MODEL_PATH=model_path))
    assert (info.source, info.path, info.variant) == ("path", model_path, "full")
    assert origin.requests == []


def test_missing_model_path_is_a_clear_error(tmp_path: Path, origin: FakeOrigin) -> None:
    with pytest.raises(ModelUnavailable, match="HGR_MODEL_PATH=.*does not exist"):
        resolve_model(_settings(tmp_path, origin, HGR_MODEL_PATH=str(tmp_path / "nope.task")))


def test_model_path_that_is_not_a_bundle_is_refused(tmp_path: Path, origin: FakeOrigin) -> None:
    bogus = tmp_path / "bogus.task"
    bogus.write_bytes(b"not a zip")
    with pytest.raises(ModelUnavailable, match="not a model bundle"):
        resolve_model(_settings(tmp_path, origin, HGR_MODEL_PATH=str(bogus)))


def test_download_is_verified_cached_and_then_reused(tmp_path: Path, origin: FakeOrigin, model_path: str) -> None:
    data = Path(model_path).read_bytes()
    origin.files["/model.task"] = (data, "application/octet-stream")
    settings = _settings(tmp_path, origin, HGR_MODEL_SHA256=hashlib.sha256(data).hexdigest())
    first = resolve_model(settings)
    assert first.source == "download" and Path(first.path).read_bytes() == data
    second = resolve_model(settings)
    assert second.source == "cache" and origin.requests == ["/model.task"]


def test_wrong_digest_falls_through_to_the_wheel_and_the_result_detects_hands(
        tmp_path: Path, origin: FakeOrigin, model_path: str, hand_photos: list[tuple[Path, int]]) -> None:
    origin.files["/model.task"] = (Path(model_path).read_bytes(), "application/octet-stream")  # digest ≠ pinned
    _serve_index(origin, _fake_wheel(Path(model_path)))
    settings = _settings(tmp_path, origin)
    info = resolve_model(settings)
    assert info.source == "wheel" and info.variant == "full"
    assert "/files/mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl" in origin.requests
    assert not any(p.endswith("old.whl") for p in origin.requests)
    assert not list(Path(info.path).parent.glob(".partial-*")), "no half-written files left behind"

    detector = Detector(settings, {"full": info.path})
    try:
        photo = next(path for path, fingers in hand_photos if fingers == 5)
        assert detector.detect_bytes(photo.read_bytes())["hands"], "the built bundle must find a hand"
    finally:
        detector.close()


def test_wheel_with_tampered_model_is_rejected(tmp_path: Path, origin: FakeOrigin, model_path: str) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as whl:
        for inner, _ in WHEEL_MEMBERS["full"].values():
            whl.writestr(inner, b"tampered")
    _serve_index(origin, out.getvalue())
    with pytest.raises(ModelUnavailable, match="pinned SHA-256"):
        resolve_model(_settings(tmp_path, origin))


@pytest.mark.service
def test_slow_download_times_out_and_every_failure_is_reported(tmp_path: Path, origin: FakeOrigin) -> None:
    origin.files["/model.task"] = (b"x", "application/octet-stream")
    origin.delays["/model.task"] = 3
    start = time.monotonic()
    with pytest.raises(ModelUnavailable) as err:
        resolve_model(_settings(tmp_path, origin, HGR_MODEL_DOWNLOAD_TIMEOUT="0.5"))
    assert time.monotonic() - start < 3
    message = err.value.message
    # each source with the URL it tried and what went wrong there (issue #22)
    assert f"download {origin.url}/model.task: timed out" in message
    assert f"wheel {origin.url}/simple/mediapipe/ (mediapipe==0.10.21): HTTP 404 Not Found" in message
    assert "HGR_MODEL_PATH=" in message and "hgr model fetch" not in message  # that is what just failed


@pytest.mark.service
def test_model_fetch_failure_names_each_url_and_error(tmp_path: Path) -> None:
    """`hgr model fetch` with both sources refusing: one line with each URL and its error, exit 2."""
    closed = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.run([sys.executable, "-m", "hgr", "model", "fetch"], capture_output=True, text=True, timeout=120,
                          check=False, cwd=tmp_path, env={
                              "PATH": os.environ["PATH"], "HGR_MODEL_CACHE_DIR": str(tmp_path / "cache"),
                              "HGR_MODEL_URL": f"{closed}/m.task", "HGR_MODEL_INDEX_URL": f"{closed}/simple"})
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("hgr: no hand landmarker model found. Tried: HGR_MODEL_PATH (unset); cache ")
    assert f"download {closed}/m.task: Connection refused" in line
    assert f"wheel {closed}/simple/mediapipe/ (mediapipe==0.10.21): Connection refused" in line


def _fetch(tmp_path: Path, origin: FakeOrigin, model_path: str, stderr: int) -> subprocess.Popen[bytes]:
    tmp_path.mkdir()
    data = Path(model_path).read_bytes()
    origin.files["/model.task"] = (data, "application/octet-stream")
    env = {"PATH": os.environ["PATH"], "HGR_MODEL_CACHE_DIR": str(tmp_path / "cache"),
           "HGR_MODEL_URL": f"{origin.url}/model.task", "HGR_MODEL_SHA256": hashlib.sha256(data).hexdigest()}
    return subprocess.Popen([sys.executable, "-m", "hgr", "model", "fetch"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=stderr)


def test_model_fetch_shows_a_progress_bar_on_a_terminal_only(tmp_path: Path, origin: FakeOrigin,
                                                             model_path: str) -> None:
    size = Path(model_path).stat().st_size
    piped = _fetch(tmp_path / "piped", origin, model_path, subprocess.PIPE)
    out, err = piped.communicate(timeout=120)
    assert piped.returncode == 0 and json.loads(out)["source"] == "download"
    assert err == b"", err  # not a terminal: no bar, nothing at all
    leader, follower = pty.openpty()
    try:
        tty = _fetch(tmp_path / "tty", origin, model_path, follower)
        os.close(follower)
        shown = b""
        while True:  # until the child has gone and the terminal is empty (EIO)
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
        out, _ = tty.communicate(timeout=120)
    finally:
        os.close(leader)
    assert tty.returncode == 0 and json.loads(out)["size"] == size
    text = shown.decode(errors="replace")
    assert "model.task: 100%" in text and "\r" in text, text  # tqdm redraws its line until done


@pytest.mark.service
def test_lite_variant_has_no_official_download(tmp_path: Path, origin: FakeOrigin) -> None:
    with pytest.raises(ModelUnavailable, match="no official download of the lite bundle"):
        resolve_model(_settings(tmp_path, origin, HGR_MODEL_VARIANT="lite", HGR_MODEL_URL=""))


def test_broken_cache_file_is_replaced(tmp_path: Path, origin: FakeOrigin, model_path: str) -> None:
    data = Path(model_path).read_bytes()
    origin.files["/model.task"] = (data, "application/octet-stream")
    settings = _settings(tmp_path, origin, HGR_MODEL_SHA256=hashlib.sha256(data).hexdigest())
    cached = tmp_path / "cache" / "hand_landmarker.task"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"half a download")
    assert resolve_model(settings).source == "download"
    assert cached.read_bytes() == data


def _member(bundle: str, member: str) -> bytes:
    with zipfile.ZipFile(bundle) as z:
        return z.read(member)


def _without_metadata(model: bytes) -> bytes:
    """The lite detector as the wheel ships it, in substance: the TFLITE_METADATA block taken out again."""
    import flatbuffers  # type: ignore[import-untyped]  # installed without types or a stub package
    from ai_edge_litert import schema_py_generated as schema

    tree = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    index = next(m.buffer for m in tree.metadata if m.name == b"TFLITE_METADATA")
    assert index == len(tree.buffers) - 1  # appended last, as MetadataPopulator does
    tree.metadata = [m for m in tree.metadata if m.name != b"TFLITE_METADATA"]
    tree.buffers.pop()
    builder = flatbuffers.Builder(0)
    builder.Finish(tree.Pack(builder), b"TFL3")
    return bytes(builder.Output())


def test_lite_detector_is_the_wheels_model_with_the_full_detectors_metadata(model_path: str,
                                                                            lite_model_path: str) -> None:
    lite, full = _member(lite_model_path, "hand_detector.tflite"), _member(model_path, "hand_detector.tflite")
    block = metadata_block(full)
    assert block is not None and metadata_block(lite) == block
    bare = _without_metadata(lite)
    assert metadata_block(bare) is None
    assert with_metadata_of(bare, full) == lite  # byte for byte the bundle's detector
    assert with_metadata_of(lite, full) == lite  # an existing block is replaced, not duplicated
    with pytest.raises(ValueError, match="no TFLite metadata"):
        with_metadata_of(full, bare)


def test_lite_bundle_is_built_from_the_wheel_and_detects_hands(
        tmp_path: Path, origin: FakeOrigin, model_path: str, lite_model_path: str,
        hand_photos: list[tuple[Path, int]], monkeypatch: pytest.MonkeyPatch) -> None:
    detector_bare = _without_metadata(_member(lite_model_path, "hand_detector.tflite"))
    # The wheel's own palm_detection_lite.tflite is not on this machine; its stand-in differs in layout
    # only, so its pin is the one thing replaced. The donor's pin and the result's pin are the real ones.
    inner, _ = WHEEL_MEMBERS["lite"]["hand_detector.tflite"]
    monkeypatch.setitem(WHEEL_MEMBERS["lite"], "hand_detector.tflite",
                        (inner, hashlib.sha256(detector_bare).hexdigest()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as whl:
        for variant, bundle in (("full", model_path), ("lite", lite_model_path)):
            for member, (path, _) in WHEEL_MEMBERS[variant].items():
                whl.writestr(path, detector_bare if path == inner else _member(bundle, member))
    _serve_index(origin, out.getvalue())
    settings = _settings(tmp_path, origin, HGR_MODEL_VARIANT="lite", HGR_MODEL_URL="")
    info = resolve_model(settings, sources=("wheel",))
    assert (info.source, info.variant, Path(info.path).name) == ("wheel", "lite", "hand_landmarker_lite.task")
    for member in BUNDLE_MEMBERS:
        assert _member(info.path, member) == _member(lite_model_path, member)
    assert origin.requests[0] == "/simple/mediapipe/" and "/model.task" not in origin.requests

    detector = Detector(settings, {"lite": info.path})
    try:
        photo = next(path for path, fingers in hand_photos if fingers == 5)
        assert detector.detect_bytes(photo.read_bytes(), DetectOptions(model="lite"))["hands"]
    finally:
        detector.close()
