"""hgr.loadtest.bench: one table of sections, options that need no checkout, and one tiny real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hgr.loadtest import camera, edge_streams, file_cameras, raw, rest
from hgr.loadtest.bench import SECTIONS, build_parser
from hgr.loadtest.clips import SAMPLE_PHOTOS, read_labels


def test_every_section_is_one_run_function_in_one_table() -> None:
    assert SECTIONS == {"raw": raw.run, "edge": edge_streams.run, "camera": camera.run, "rest": rest.run,
                        "file_cameras": file_cameras.run}


def test_the_default_photos_are_the_packages_own() -> None:
    args = build_parser().parse_args([])
    assert args.photos == SAMPLE_PHOTOS and args.sections == ["raw", "edge"]
    assert len(read_labels(SAMPLE_PHOTOS)) == 36  # labelled, so the camera section can run on them too


@pytest.mark.parametrize("text", ["tracking", "raw,pipeline", ""])
def test_an_unknown_section_is_refused_before_anything_starts(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--sections", text])
    assert "choose from raw, edge, camera, rest, file_cameras" in capsys.readouterr().err


def test_a_tiny_raw_section_from_an_unrelated_directory(tmp_path: Path, model_path: str) -> None:
    """Run where no checkout is (the working directory is empty): the frames come from the package."""
    proc = subprocess.run([sys.executable, "-m", "hgr", "bench", "--sections", "raw", "--duration", "1",
                           "--workers", "1", "--hold", "1"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["raw"]["workers"] == 1 and report["raw"]["frames"] > 0
    assert str(SAMPLE_PHOTOS) in proc.stderr  # the log names where the frames came from


def test_a_tiny_rest_section_is_compared_with_raw_image_mode_around_it(tmp_path: Path, model_path: str) -> None:
    """The rest section after raw: every request answered, and its ratios to the mean of raw IMAGE mode
    measured before the hub started and again after it stopped."""
    proc = subprocess.run([sys.executable, "-m", "hgr", "bench", "--sections", "raw,rest", "--duration", "1",
                           "--workers", "1", "--hold", "1"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    rest, around = report["rest"], report["rest"]["raw_image_fps"]
    assert around["before"] == report["raw"]["image_mode"]["fps"] and around["after"] > 0
    for kind in ("single", "batch"):
        assert set(rest[kind]["status"]) == {"200"} and rest[kind]["images_per_s"] > 0, rest[kind]
        baseline = (around["before"] + around["after"]) / 2
        assert rest[kind]["ratio_to_raw"] == pytest.approx(rest[kind]["images_per_s"] / baseline, abs=1e-3)
    assert rest["batch"]["concurrency"] == 2  # two batches per worker in flight
