"""A fresh clone, with no ../shared beside it, runs the model- and photo-dependent tests with nothing skipped.

The clone is of this repository's HEAD (committed work only). Its model cache is filled the way `make run`
fills it on a new machine (the bundles `hgr` resolves, copied into an empty cache directory), its package
index points at a closed port (nothing may be fetched), and its photos are the set the package ships
(loadtest/hands). The venv's editable install points at this tree, so the run checks, in the same
interpreter that runs the tests, that `hgr` is imported from the clone (the clone's directory comes first
on sys.path, and path entries win over the editable finder).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # a clone, a venv and a test run: over the suite's 900 s

# A bounded subset that needs the full model, the lite model and the photos: accuracy on the shipped set,
# the still engine against MediaPipe Tasks on it, building the lite bundle from a wheel, the CLI on a photo, one
# edge WebSocket stream, one REST request.
SUBSET = [
    "tests/test_accuracy.py",
    "tests/test_engine_parity.py::test_finger_counts_agree",
    "tests/test_model.py::test_lite_detector_is_the_wheels_model_with_the_full_detectors_metadata",
    "tests/test_model.py::test_lite_bundle_is_built_from_the_wheel_and_detects_hands",
    "tests/test_cli.py::test_detect_json_prints_one_object_per_image",
    "tests/test_scenario_edge_stream.py::test_a_stream_chooses_its_model_and_hands_and_they_stick",
    "tests/test_scenario_hub_rest.py::test_detect_one_image_then_served_from_cache",
]

# Runs inside the clone: fail before any test when `hgr` or the tests' helpers come from elsewhere.
RUNNER = """
import sys, pytest
import hgr, hgr.common.inference.model, hgr.loadtest.procs, research.paths
clone = sys.argv[1]
for mod in (hgr, hgr.common.inference.model, hgr.loadtest.procs, research.paths):
    if not str(mod.__file__).startswith(clone + "/"):
        sys.exit(f"{mod.__name__} imported from {mod.__file__}, not from the clone {clone}")
if research.paths.SHARED.exists():
    sys.exit(f"{research.paths.SHARED} exists beside the clone")
sys.exit(pytest.main(sys.argv[2:]))
"""


def test_fresh_clone_runs_the_model_and_photo_tests_without_skips(tmp_path: Path, model_path: str,
                                                                  lite_model_path: str) -> None:
    clone = tmp_path / "checkout" / "hgr"  # tmp_path/checkout/shared does not exist
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    assert not (clone.parent / "shared").exists()
    assert (clone / "hgr" / "common").is_symlink()  # the layout's links survive the clone
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copyfile(model_path, cache / "hand_landmarker.task")
    shutil.copyfile(lite_model_path, cache / "hand_landmarker_lite.task")

    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HGR_") and k not in ("PYTHONPATH", "EXPOSURE_RETRY")}
    env.update(PYTHONPATH=str(clone), HGR_MODEL_CACHE_DIR=str(cache),
               HGR_MODEL_INDEX_URL=f"http://127.0.0.1:{free_port()}/simple", HGR_MODEL_DOWNLOAD_TIMEOUT="1")
    report = tmp_path / "report.xml"
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(clone), "-q", "-rs", "-p", "no:cacheprovider", f"--junitxml={report}",
         *SUBSET],
        cwd=clone, env=env, capture_output=True, text=True, timeout=900, check=False)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    counts = {k: int(suite.get(k, "0")) for k in ("tests", "skipped", "failures", "errors")}
    assert counts["skipped"] == 0 and counts["failures"] == 0 and counts["errors"] == 0, (counts, tail)
    assert counts["tests"] >= len(SUBSET) + 4, (counts, tail)  # test_accuracy.py alone holds six
