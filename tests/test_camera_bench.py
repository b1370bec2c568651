"""``hgr bench --sections camera`` end to end, short: raw MediaPipe and a real edge on the same clips.

Checks the report's shape and that both sides answered frames and counted them plausibly; no timing
is asserted (speed is what the benchmark measures, not what a test decides)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hgr.common.inference.hands.runtime import choose_here
from hgr.loadtest.camera import Answer, shared_agreement
from hgr.loadtest.clips import Clip
from research.camera_report import markdown

KINDS = ("empty", "one_hand", "two_hands")
ROW_KEYS = {"frames", "fps", "latency_ms", "model_ms", "agreement", "hands_agreement", "detector_fraction",
            "gated_fraction"}


@pytest.mark.slow
def test_camera_section_measures_baseline_and_edge(model_path: str, hand_photos: list[tuple[Path, int]]) -> None:
    argv = [sys.executable, "-m", "hgr", "bench", "--sections", "camera", "--duration", "2",
            "--camera-warmup", "1", "--camera-mix", "empty=1,one_hand=1,two_hands=1", "--scenes", "1",
            "--clip-hold", "10", "--photos", str(hand_photos[0][0].parent), "--workers", "2",
            "--camera-alone", "one_hand", "--edge-env", "MAX_FPS=1000",
            "--edge-env", "MAX_FPS=-1"]  # a configuration the edge refuses: recorded, the other one still runs
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)["camera"]

    streams = report["clips"]["streams"]
    assert [s["kind"] for s in streams] == list(KINDS) and all(s["frames"] == 10 for s in streams)
    assert report["workers"] == 2 and report["baseline"]["processes"] == 2
    assert report["loads"] == {"mix": [0, 1, 2], "one_hand_alone": [1, 1, 1]}

    base = report["baseline"]["mix"]
    assert report["slices"] == 2  # baseline and edge measured in alternating turns
    edge, refused = report["edge"]
    assert edge["env"] == {"MAX_FPS": "1000"} and edge["errors"] == {}
    runs = choose_here("auto", "auto").name  # what ran its models, from its /status: the defaults on this CPU
    assert edge["inference"] == {"asked": runs, "running": {runs: 2}, "fallbacks": []}
    assert set(edge["client_cpu_cores"]) == {"mix", "one_hand_alone", "one_stream"}
    assert refused["env"] == {"MAX_FPS": "-1"} and refused["failed"].startswith("start:")
    for side in (base, edge["mix"]):
        assert set(side) == {*KINDS, "all"}
        for kind in (*KINDS, "all"):
            row = side[kind]
            assert ROW_KEYS <= set(row) and row["frames"] > 0 and row["fps"] > 0
            assert row["latency_ms"]["p50"] > 0
        # plausible counts: nothing seen in the empty scene, the hand(s) found in the others
        assert side["empty"]["agreement"] >= 0.9 and side["empty"]["hands_agreement"] >= 0.9
        assert side["one_hand"]["hands_agreement"] >= 0.8 and side["one_hand"]["agreement"] >= 0.5
        assert side["two_hands"]["hands_agreement"] >= 0.5
    assert all(edge["mix"][k]["ratio_to_baseline"] > 0 for k in (*KINDS, "all"))
    for side in (report["baseline"], edge):  # the one-hand clip alone, on as many streams as the mix
        alone = side["one_hand_alone"]
        assert set(alone) == {"one_hand", "all"} and alone["one_hand"]["frames"] > 0
    assert edge["targets"]["one_hand_ratio"] == edge["one_hand_alone"]["one_hand"]["ratio_to_baseline"]
    shared = edge["agreement_shared"]["mix"]  # agreement over the frames both sides answered
    assert set(shared) == {*KINDS, "all"} and all(row["frames"] > 0 for row in shared.values())
    assert shared["all"]["frames"] == sum(shared[k]["frames"] for k in KINDS)
    assert set(edge["targets"]["one_hand_agreement_shared"]) == {"edge", "baseline"}

    one = edge["one_stream"]
    assert one["frames"] > 0 and report["baseline"]["one_stream"]["frames"] > 0
    assert isinstance(one["overhead_over_raw_p50_ms"], float)
    assert set(edge["targets"]) >= {"throughput_ratio", "throughput_ratio_ok", "one_hand_agreement",
                                    "one_stream_overhead_ms"}
    table = markdown(report)  # the docs' tables: a row per side and kind, mix and alone
    assert "| baseline (raw VIDEO) | one_hand (one_hand_alone) |" in table
    assert "| edge MAX_FPS=1000 | two_hands |" in table
    assert "edge MAX_FPS=-1 failed: start:" in table
    assert "| edge MAX_FPS=1000 | mix | one_hand |" in table


def test_shared_agreement_counts_only_frames_both_sides_answered() -> None:
    """A slow baseline that never reaches a clip's second scene must not be compared on the edge's frames of it."""
    clips = [Clip("a", "one_hand", (b"",) * 4, (2, 2, 5, 5), (1, 1, 1, 1), ("p1", "p2")),
             Clip("b", "empty", (b"",) * 2, (0, 0), (0, 0), ("e",))]

    def answer(stream: int, frame: int, fingers: int) -> Answer:
        return Answer(stream, frame, 1.0, 1.0, 1.0, fingers, 1)

    edge = [answer(0, 0, 2), answer(0, 1, 2), answer(0, 2, 4), answer(0, 3, 4), answer(1, 0, 0), answer(1, 0, 1)]
    base = [answer(0, 0, 2), answer(0, 1, 3), answer(1, 0, 0)]  # frames 2 and 3 (scene p2) never reached
    shared = shared_agreement(edge, base, clips)
    assert shared["one_hand"] == {"frames": 2, "edge": 1.0, "baseline": 0.5}
    assert shared["empty"] == {"frames": 1, "edge": 0.5, "baseline": 1.0}  # each answer to a shared frame counts
    assert shared["all"]["frames"] == 3 and set(shared) == {"one_hand", "empty", "all"}


def test_scenes_are_those_the_reference_counts_right_as_stills(model_path: str,
                                                              hand_photos: list[tuple[Path, int]]) -> None:
    from hgr.common.config import load_settings
    from hgr.loadtest import clips as C
    from hgr.loadtest.camera import StillJudge

    folder = hand_photos[0][0].parent
    labels = {p.name: n for p, n in hand_photos}
    judge = StillJudge(load_settings({}, env_file=None, model_path=model_path), model_path)
    try:
        source = C.SceneSource(folder, judge, seed=3)
        one, two, empty = source.one_hand(), source.two_hands(), source.empty()
        assert one.hands == 1 and one.label == labels[one.source]
        assert judge(one.image)[1] == (one.label,)
        left, right = two.source.split("+")
        assert two.hands == 2 and two.label == labels[left] + labels[right]
        assert judge(two.image)[1] == (labels[left], labels[right])
        assert empty.hands == 0 and empty.label == 0 and judge(empty.image) == ((), ())
        assert empty.source.split("[")[0] in labels  # a region of one of the photos
        # the same seed walks the photos in the same order
        again = C.SceneSource(folder, judge, seed=3)
        assert again.one_hand().source == one.source
    finally:
        judge.close()
