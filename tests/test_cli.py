"""`hgr detect` and `hgr model` as a user runs them: a real process, the real model, real photos."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.service  # starts processes (servers, tools) or needs a broker

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


def test_version_is_the_installed_distributions() -> None:
    import importlib.metadata
    import tomllib

    proc = _hgr("--version")
    assert proc.returncode == 0 and proc.stdout == f"hgr {importlib.metadata.version('hgr')}\n"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert importlib.metadata.version("hgr") == project["version"]


def test_every_subcommand_has_help() -> None:
    """`hgr X --help` for every X, and a help text on every option and argument of the CLI's own commands."""
    from hgr.cli import SERVICES, build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"detect", "model", "config", *SERVICES}
    for name, subparser in sub.choices.items():
        if name in SERVICES:
            continue  # they parse their own options: checked by running them below
        for action in subparser._actions:
            assert action.help, f"hgr {name}: {action.dest} has no help"
    for name in sub.choices:
        proc = _hgr(name, "--help")
        assert proc.returncode == 0 and proc.stdout.startswith(f"usage: hgr {name}"), (name, proc.stderr)
        assert len(proc.stdout.splitlines()) >= 4, proc.stdout
    model = _hgr("model", "--help").stdout
    assert "fetch" in model and "never downloads" in model
    config = _hgr("config", "--help").stdout
    assert "--check" in config and "--show" in config and "--service" in config and "exit 2" in config


def test_detect_reads_an_image_from_stdin(hand_photos: list[tuple[Path, int]]) -> None:
    five = next(p for p, n in hand_photos if n == 5)
    proc = subprocess.run([sys.executable, "-m", "hgr", "detect", "--json", "-"], input=five.read_bytes(),
                          capture_output=True, cwd=ROOT, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["file"] == "-" and out["total_fingers"] == 5


def test_detect_walks_a_directory_recursively_in_order(tmp_path: Path, hand_photos: list[tuple[Path, int]]) -> None:
    five = next(p for p, n in hand_photos if n == 5)
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name in ("b/2.jpg", "a/deep/3.JPG", "a/1.jpeg", "c.png"):
        shutil.copyfile(five, tmp_path / name)  # the suffix names the kind of file, the bytes the format
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    proc = _hgr("detect", "--json", str(tmp_path), str(tmp_path / "empty"))
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(tmp_path / n) for n in ("a/1.jpeg", "a/deep/3.JPG", "b/2.jpg",
                                                                           "c.png", "empty")]
    assert all(line["total_fingers"] == 5 for line in lines[:4])
    assert lines[4]["error"] == {"code": "unreadable",
                                 "message": "no image files (.jpg, .jpeg, .png, .webp, .bmp) in this directory"}
    assert proc.returncode == 1


def test_detect_model_option(tmp_path: Path, hand_photos: list[tuple[Path, int]], model_path: str) -> None:
    five = next(p for p, n in hand_photos if n == 5)
    nowhere = {"HGR_MODEL_PATH": "", "HGR_MODEL_CACHE_DIR": str(tmp_path), "HGR_MODEL_URL": "http://127.0.0.1:9/x",
               "HGR_MODEL_INDEX_URL": "http://127.0.0.1:9/simple"}  # without --model there is no model
    proc = _hgr("detect", "--model", model_path, str(five), **nowhere)
    assert proc.returncode == 0 and "5 finger(s)" in proc.stdout, proc.stderr
    proc = _hgr("detect", "--model", "/nonexistent.task", str(five), **nowhere)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", "hgr: --model '/nonexistent.task': no such file\n")


@pytest.mark.parametrize("args", [["config"], ["config", "--show"], ["--version"]])
def test_a_closed_pipe_is_no_traceback(args: list[str]) -> None:
    """`hgr config --show | head -1` ended in a BrokenPipeError traceback (issue #22). The reader here has
    gone before hgr writes, so every run meets the closed pipe."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "hgr", *args], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT, timeout=120, check=False)
    finally:
        os.close(write_end)
    assert proc.stderr == ""
    # as if killed by SIGPIPE, like `yes | head -1`'s yes; argparse's --version ignores a closed pipe itself
    assert proc.returncode == (0 if args == ["--version"] else 141)
