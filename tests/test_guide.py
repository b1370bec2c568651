"""The deployment guide's examples and names against a real `hgr up` (docs/api.md, "Coming from the
deployment guide"): each curl block of the doc runs as written, with real curl, and /metrics carries the
guide's request metrics beside the other names, on the main port and on METRICS_PORT."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port, http_get, need, poll, stop_process, wait_ready

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def guide_examples() -> dict[str, str]:
    """The doc's example blocks, by their first comment line."""
    doc = (ROOT / "docs" / "api.md").read_text()
    section = doc.split("<!-- guide examples:", 1)[1].split("<!-- end of guide examples -->", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    return {block.splitlines()[0].lstrip("# ").strip(): block for block in blocks}


def _start(command: str, port: int, log: Path, **env: str) -> subprocess.Popen[bytes]:
    full = {**os.environ, "WORKERS": "1", "MQTT_URL": "", "REDIS_URL": "", "REDIS_ENABLED": "false",
            "AUTH_ENABLED": "false", "LOG_FORMAT": "json", **env}
    return subprocess.Popen([sys.executable, "-m", "hgr", command, "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, env=full, stdout=log.open("w"), stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory, hand_photos: list[tuple[Path, int]]
       ) -> Iterator[tuple[int, int, Path, int]]:
    """(port, metrics port, a folder holding hand.jpg, its finger count) of a running `hgr up`."""
    need(bool(shutil.which("curl")), "curl is not installed")
    folder = tmp_path_factory.mktemp("guide")
    photo, fingers = next((p, n) for p, n in hand_photos if n == 5)
    shutil.copyfile(photo, folder / "hand.jpg")
    port, metrics_port = free_port(), free_port()
    proc = _start("up", port, folder / "up.log", METRICS_PORT=str(metrics_port))
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        yield port, metrics_port, folder, fingers
    finally:
        stop_process(proc, 60, signal.SIGINT)


def curl(block: str, up: tuple[int, int, Path, int]) -> str:
    port, metrics_port, folder, _ = up
    script = block.replace("localhost:8000", f"localhost:{port}").replace("localhost:8001", f"localhost:{metrics_port}")
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=folder, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, (script, proc.stdout, proc.stderr)
    return proc.stdout


def test_the_doc_has_the_guides_five_examples() -> None:
    assert list(guide_examples()) == ["one image", "a batch", "multipart upload", "health",
                                      "metrics (the separate port; http://localhost:8000/metrics answers the same)"]


def test_single_batch_and_upload_examples_count_the_fingers(up: tuple[int, int, Path, int]) -> None:
    examples, fingers = guide_examples(), up[3]
    single = json.loads(curl(examples["one image"], up))
    assert single["total_fingers"] == fingers and len(single["hands"]) == 1, single
    batch = json.loads(curl(examples["a batch"], up))
    assert [r["image_id"] for r in batch["results"]] == ["a", "b"] and batch["succeeded"] == 2, batch
    assert all(r["total_fingers"] == fingers for r in batch["results"])
    upload = json.loads(curl(examples["multipart upload"], up))
    assert upload["count"] == 1 and upload["results"][0]["filename"] == "hand.jpg", upload
    assert upload["results"][0]["total_fingers"] == fingers


def test_health_example(up: tuple[int, int, Path, int]) -> None:
    assert json.loads(curl(guide_examples()["health"], up))["status"] == "ok"


def test_metrics_example_shows_the_guides_names_on_both_ports(up: tuple[int, int, Path, int]) -> None:
    port = up[0]
    curl(guide_examples()["one image"], up)  # at least one detection on record
    block = next(b for name, b in guide_examples().items() if name.startswith("metrics"))
    separate = curl(block, up)
    for text in (separate, http_get(f"http://127.0.0.1:{port}/metrics")[1].decode()):
        assert re.search(r'^hand_gesture_requests_total\{method="POST",route="/detect-fingers",service="hub",'
                         r'status="200"\} [1-9]', text, re.MULTILINE), text[:2000]
        assert re.search(r'^hand_gesture_request_duration_seconds_bucket\{le="[^"]+",method="POST",'
                         r'route="/detect-fingers",service="hub",status="200"\} [1-9]', text, re.MULTILINE)
        for seed_name in ("ml_inference_total", "ml_inference_duration_seconds", "batch_processing_size",
                          "batch_processing_duration_seconds", "active_requests", "model_loaded",
                          "hand_gesture_errors_total"):
            assert f"\n# HELP {seed_name} " in text, seed_name
        assert "http_requests_total" not in text and "http_request_duration_seconds" not in text


def test_an_edge_serves_metrics_on_its_own_port_too(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    proc = _start("edge", port, tmp_path / "edge.log", METRICS_PORT=str(metrics_port))
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        status, body = poll(lambda: http_get(f"http://127.0.0.1:{metrics_port}/metrics"), 30, "the metrics port")
        assert status == 200 and b"hgr_frames_received_total" in body and b"model_loaded" in body
    finally:
        stop_process(proc, 60, signal.SIGINT)


def test_metrics_port_equal_to_the_servers_port_is_refused(tmp_path: Path) -> None:
    port = free_port()
    proc = _start("hub", port, tmp_path / "hub.log", METRICS_PORT=str(port))
    assert proc.wait(timeout=60) != 0
    assert f"METRICS_PORT={port} is the server's own port" in (tmp_path / "hub.log").read_text()
