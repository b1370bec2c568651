"""Finger-count accuracy of the real model + common.inference.fingers on the labelled photos: the 210 of
../shared/data/hands when present, else the 36 the package ships in loadtest/hands.

Scoring (also in research/accuracy.py and docs/accuracy.md): accuracy is over photos where the model
finds a hand; each photo shows one hand, so if the model reports two, the highest-score hand is scored.
End to end = photos counted right / all photos. EXPOSURE_RETRY is on by default (stills only).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hgr.common.config import load_settings
from hgr.common.inference.engine import RETRY_NAMES, Detector
from hgr.common.inference.fingers import count_fingers, fingers_up
from hgr.loadtest.clips import SAMPLE_PHOTOS
from research.accuracy import Photo, detect_all, evaluate, load_photos, naive_count

pytestmark = pytest.mark.slow

# Floors per photo set, a little under what the full model measured (docs/accuracy.md, the
# commands there; loadtest/hands/README.md): full set off 177/210 end to end, on 188/210 (95.7% and
# 94.5% among detected); fixture set off 28/36, on 32/36 (93.3% and 91.4%). The margin is about two
# photos on the small set, three on the large one, for a MediaPipe or platform build that moves a
# borderline hand.
FLOORS = {
    "shared": {"photos": 210, "end_to_end": 0.88, "accuracy": 0.93, "per_class": 0.85, "detection": 0.92},
    "fixture": {"photos": 36, "end_to_end": 0.83, "accuracy": 0.88, "per_class": 0.66, "detection": 0.90},
}


@pytest.fixture(scope="module")
def photo_set(hand_photos: list[tuple[Path, int]]) -> tuple[Path, list[Photo], dict[str, Any]]:
    folder = hand_photos[0][0].parent
    photos = load_photos(folder)
    assert [(folder / p.file, p.label) for p in photos] == hand_photos
    floors = FLOORS["fixture" if folder == SAMPLE_PHOTOS else "shared"]
    assert len(photos) == floors["photos"]
    return folder, photos, floors


def _run(model_path: str, folder: Path, photos: list[Photo], **env: str) -> list[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HGR_MODEL_PATH", model_path)  # load_settings() reads the model from the environment
        mp.delenv("EXPOSURE_RETRY", raising=False)
        for k, v in env.items():
            mp.setenv(k, v)
        return detect_all(folder, photos)


@pytest.fixture(scope="module")
def records_off(model_path: str, photo_set: tuple[Path, list[Photo], dict[str, Any]]) -> list[dict[str, Any]]:
    """Each photo looked at once, as it was sent (EXPOSURE_RETRY=false)."""
    folder, photos, _ = photo_set
    return _run(model_path, folder, photos, EXPOSURE_RETRY="false")


@pytest.fixture(scope="module")
def records(model_path: str, photo_set: tuple[Path, list[Photo], dict[str, Any]],
            records_off: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The default settings. Only photos without a hand can differ (the retry runs only then), so only
    those are run again, with the defaults."""
    folder, photos, _ = photo_set
    missed = {r["file"] for r in records_off if not r["hands"]}
    again = {r["file"]: r for r in _run(model_path, folder, [p for p in photos if p.file in missed])}
    return [again.get(r["file"], r) for r in records_off]


def _report(records: list[dict[str, Any]], count: Callable[[dict[str, Any]], int] = lambda h: h["fingers"]
            ) -> dict[str, Any]:
    return evaluate(records, count)


def test_every_photo_is_processed_and_most_have_a_hand(records: list[dict[str, Any]],
                                                       photo_set: tuple[Path, list[Photo], dict[str, Any]]) -> None:
    floors = photo_set[2]
    assert len(records) == floors["photos"]
    overall = _report(records)["overall"]
    assert overall["detection_rate"] >= floors["detection"], overall


def test_engine_counts_with_the_finger_rules(records: list[dict[str, Any]]) -> None:
    for r in records:
        for hand in r["hands"]:
            assert hand["fingers"] == count_fingers(fingers_up(hand["world_landmarks"]))


def test_finger_count_accuracy(records: list[dict[str, Any]],
                               photo_set: tuple[Path, list[Photo], dict[str, Any]]) -> None:
    floors = photo_set[2]
    report = _report(records)
    overall = report["overall"]
    assert overall["end_to_end"] >= floors["end_to_end"], (overall, report["misses"])
    assert overall["accuracy"] >= floors["accuracy"], (overall, report["misses"])
    # Target is 90% for every class; class 3 stays under it on the full set: its misses are photos where
    # the model itself puts four straight fingers on a three-finger hand (docs/accuracy.md, "Failures").
    for label, stats in report["per_class"].items():
        assert stats["accuracy"] >= floors["per_class"], (label, stats, report["misses"])


def test_the_default_retry_counts_more_photos_right_end_to_end(records: list[dict[str, Any]],
                                                               records_off: list[dict[str, Any]]) -> None:
    """Why EXPOSURE_RETRY is on by default: more photos are answered right than without it."""
    assert load_settings({}, env_file=None).exposure_retry
    on, off = _report(records)["overall"], _report(records_off)["overall"]
    assert on["detected"] > off["detected"], (on, off)
    assert on["correct"] > off["correct"], (on, off)


def test_clearly_beats_the_naive_rule(records: list[dict[str, Any]]) -> None:
    ours = _report(records)["overall"]["accuracy"]
    naive = _report(records, naive_count)["overall"]["accuracy"]
    assert ours - naive >= 0.10, (ours, naive)


def test_exposure_retry_finds_hands_the_plain_pass_misses(records: list[dict[str, Any]],
                                                          records_off: list[dict[str, Any]], model_path: str,
                                                          photo_set: tuple[Path, list[Photo], dict[str, Any]]
                                                          ) -> None:
    """Stills with no hand get a darker and a brighter look; most of the hands found there (overexposed
    window, backlight) are counted right, and such a result says so. Streams never pay for it."""
    folder = photo_set[0]
    missed = {r["file"] for r in records_off if not r["hands"]}
    assert missed, "every photo already has a hand: nothing to retry"
    assert not any(r["retry"] for r in records_off)
    retried = [r for r in records if r["file"] in missed and r["hands"]]
    assert all(r["retry"] in RETRY_NAMES.values() for r in retried), retried
    assert not any(r["retry"] for r in records if r["file"] not in missed or not r["hands"])
    right = [r for r in retried if _report([r])["overall"]["correct"]]
    assert len(retried) >= len(missed) // 2, (len(retried), missed)
    assert len(right) >= 0.75 * len(retried), ([r["file"] for r in right], [r["file"] for r in retried])
    # The same frame in a stream (VIDEO mode) is looked at once: an empty scene costs one pass.
    detector = Detector(load_settings({"HGR_MODEL_PATH": model_path}, env_file=None), {"full": model_path})
    try:
        frame = (folder / retried[0]["file"]).read_bytes()
        assert detector.detect_bytes(frame)["retry"] == retried[0]["retry"]
        streamed = detector.detect_bytes(frame, stream="s")
        assert streamed["hands"] == [] and "retry" not in streamed
    finally:
        detector.close()
