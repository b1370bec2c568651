"""The deployment guide's examples and names against a real `hgr up` (docs/api.md, "Coming from the
deployment guide"): each curl block of the doc runs as written, with real curl, and /metrics carries the
guide's request metrics beside the other names, on the main port and on METRICS_PORT. The README's
"API at a glance" commands and docs/deployment.md's quick start run the same way, on a photo of over
360 KB (issue #22: an ordinary photo's base64 is too long for one command-line argument)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.support import free_port, http_get, need, poll, stop_process, wait_ready

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def marked_blocks(doc: str, marker: str) -> dict[str, str]:
    """The ```sh blocks between ``<!-- {marker} examples:`` and ``<!-- end of {marker} examples -->`` of a
    doc, by their first line (a comment naming the example)."""
    text = (ROOT / doc).read_text()
    section = text.split(f"<!-- {marker} examples:", 1)[1].split(f"<!-- end of {marker} examples -->", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    return {block.splitlines()[0].lstrip("# ").strip(): block for block in blocks}


def guide_examples() -> dict[str, str]:
    """The doc's example blocks, by their first comment line."""
    return marked_blocks("docs/api.md", "guide")


OVER_AN_ARGUMENT = 360_000  # bytes: the photo; its base64 is well over Linux's 128 KB per argument


def large_photo(source: Path) -> bytes:
    """``source`` scaled up until its JPEG is over ``OVER_AN_ARGUMENT`` bytes: a real photo of the size a
    phone or camera sends, made from a small labelled fixture (same hand, same count)."""
    image = Image.open(source).convert("RGB")
    for factor in range(2, 7):
        out = io.BytesIO()
        image.resize((image.width * factor, image.height * factor), Image.Resampling.LANCZOS).save(
            out, "JPEG", quality=95)
        if out.tell() > OVER_AN_ARGUMENT:
            return out.getvalue()
    raise AssertionError(f"{source} does not grow past {OVER_AN_ARGUMENT} bytes")


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
    (folder / "hand.jpg").write_bytes(large_photo(photo))
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
    script = script.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    script = script.replace("https://hub.example.com", f"http://127.0.0.1:{port}")
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
        # no `*_created` series (prometheus_client's disable_created_metrics; issue #22: 77 of 559 samples)
        assert "_created" not in text, [line for line in text.splitlines() if "_created" in line][:5]


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


def json_documents(text: str) -> list[Any]:
    """The JSON documents printed one after another (curl adds no newline between answers)."""
    decoder, docs, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        doc, at = decoder.raw_decode(text, at)
        docs.append(doc)
        while at < len(text) and text[at].isspace():
            at += 1
    return docs


def test_the_photo_is_too_long_for_the_old_readme_command(up: tuple[int, int, Path, int]) -> None:
    """The defect reproduced: the README's former command (base64 in a -d argument) cannot even start."""
    port, _, folder, _ = up
    assert (folder / "hand.jpg").stat().st_size > OVER_AN_ARGUMENT
    old = (f"curl -s http://127.0.0.1:{port}/detect-fingers -H 'Content-Type: application/json' "
           '-d "{\\"image_base64\\": \\"$(base64 -w0 hand.jpg)\\"}"')
    proc = subprocess.run(["bash", "-c", old], cwd=folder, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0 and "Argument list too long" in proc.stderr, (proc.returncode, proc.stderr)


def test_readme_examples_count_the_fingers_of_a_large_photo(up: tuple[int, int, Path, int]) -> None:
    examples = marked_blocks("README.md", "readme")
    assert [name.split(":")[0] for name in examples] == ["the photo itself as the body", "the same as JSON"]
    for block in examples.values():
        result = json.loads(curl(block, up))
        assert result["total_fingers"] == up[3] and len(result["hands"]) == 1, result


def test_deployment_quick_start_commands_work_with_a_large_photo(up: tuple[int, int, Path, int]) -> None:
    """docs/deployment.md's quick start against `hgr up` (the URL substituted; this hub has auth off, so the
    key from the secrets file is not needed, but the command that reads it runs as written)."""
    folder = up[2]
    (folder / "deploy" / "secrets").mkdir(parents=True, exist_ok=True)
    (folder / "deploy" / "secrets" / "api_keys.txt").write_text("default:not-checked-here\n")
    (block,) = marked_blocks("docs/deployment.md", "quick start").values()
    health, ready, raw, as_json = json_documents(curl(block, up))
    assert health == {"status": "ok"} and ready["status"] == "ready"
    for result in (raw, as_json):
        assert result["total_fingers"] == up[3] and len(result["hands"]) == 1, result
