"""`hgr detect` and `hgr model` as a user runs them: a real process, the real model, real photos."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _hgr(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hgr", *args], check=False, capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **env}, timeout=120)


def test_config_show_prints_the_values_in_effect_with_secrets_masked() -> None:
    proc = _hgr("config", "--show", API_KEYS="ops:s3cret-key", MQTT_URL="mqtt://u:pw@h:1883", PORT="9123")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["PORT"] == 9123 and shown["API_KEYS"] == "***" and shown["MQTT_URL"] == "***"
    assert "s3cret" not in proc.stdout and "pw@" not in proc.stdout


def test_detect_json_prints_one_object_per_image(tmp_path: Path, hand_photos: list[tuple[Path, int]]) -> None:
    five = next(p for p, n in hand_photos if n == 5)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(five.read_bytes()[:5000])
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    proc = _hgr("detect", "--json", str(five), str(broken), str(text), str(tmp_path / "missing.jpg"))
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(five), str(broken), str(text), str(tmp_path / "missing.jpg")]
    ok, truncated, not_image, missing = lines
    assert ok["total_fingers"] == sum(h["fingers"] for h in ok["hands"]) and ok["hands"]
    hand = ok["hands"][0]
    assert len(hand["landmarks"]) == 21 and len(hand["world_landmarks"]) == 21
    assert set(hand["fingers_up"]) == {"thumb", "index", "middle", "ring", "pinky"}
    assert hand["handedness"] in ("Left", "Right") and 0 <= hand["score"] <= 1
    assert truncated["error"]["code"] == "corrupt_image"
    assert not_image["error"]["code"] == "unsupported_format"
    assert missing["error"]["code"] == "unreadable"
    assert proc.returncode == 1, "a failed image makes the exit status non-zero"


def test_detect_human_output(hand_photos: list[tuple[Path, int]]) -> None:
    five = next(p for p, n in hand_photos if n == 5)
    proc = _hgr("detect", str(five))
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"{five}: ") and "finger(s)" in proc.stdout


def test_model_info_describes_the_bundle(model_path: str) -> None:
    proc = _hgr("model", "info", HGR_MODEL_PATH=model_path)
    info = json.loads(proc.stdout)
    assert info["path"] == model_path and info["variant"] == "full" and len(info["sha256"]) == 64
    assert info["size"] == Path(model_path).stat().st_size


def test_model_info_without_a_model_says_how_to_supply_one(tmp_path: Path) -> None:
    proc = _hgr("model", "info", HGR_MODEL_PATH="", HGR_MODEL_CACHE_DIR=str(tmp_path))
    assert proc.returncode == 2
    assert "HGR_MODEL_PATH" in proc.stderr and "hgr model fetch" in proc.stderr


def test_console_script_is_installed() -> None:
    exe = shutil.which("hgr", path=str(Path(sys.executable).parent))
    assert exe, "pip install must provide the `hgr` command"
    proc = subprocess.run([exe, "--help"], check=False, capture_output=True, text=True, timeout=60)
    for sub in ("detect", "model", "edge", "hub", "up", "bench"):
        assert sub in proc.stdout
