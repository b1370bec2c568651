"""research/stages.py: the profiler's arithmetic (a fake clock), its probes removed after a run even one that fails,
and a few real frames through the stream path: every frame classified, no stage's sum above the frame's total.
The milliseconds are the study's to measure (docs/benchmarks.md "Where a frame's time goes"), never asserted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hgr.common.config import load_settings
from hgr.common.inference.hands.runtime import choose_here
from hgr.common.options import default_options
from hgr.loadtest import clips as camclips
from research import stages
from research.stages import PROBES, Profiler, installed


def _attributes() -> list[object]:
    return [vars(owner)[name] for owner, name, _ in PROBES] + [vars(owner)[name] for owner, name in stages.INVOKES]


def test_a_call_inside_another_is_its_own_stage_and_invoke_is_noted_apart() -> None:
    ticks = iter(np.arange(0.0, 1.0, 0.001))  # each clock read 1 ms after the previous one
    prof = Profiler(clock=lambda: float(next(ticks)))
    model = prof.wrap_invoke(lambda: None)
    crop = prof.wrap("crop", lambda: None)

    def palms() -> None:
        crop()  # 2 clock reads: 1 ms
        model()  # 1 ms, noted under palm and still palm's own time

    prof.wrap("palm", palms)()
    stages_ms, invoke_ms, calls = prof.take()
    assert stages_ms == pytest.approx({"crop": 1.0, "palm": 4.0})  # palm's 5 ms less its crop's 1
    assert invoke_ms == pytest.approx({"palm": 1.0})
    assert calls == {"crop": 1, "palm": 1}
    assert prof.take() == ({}, {}, {})  # the next frame starts afresh


def test_the_probes_are_removed_even_when_the_run_fails() -> None:
    before = _attributes()
    with pytest.raises(RuntimeError), installed(Profiler()):
        assert _attributes() != before
        raise RuntimeError("a frame failed")
    assert all(a is b for a, b in zip(_attributes(), before, strict=True))


def test_real_frames_are_classified_and_their_stages_fit_in_their_total(
        model_path: str, hand_photos: list[tuple[Path, int]]) -> None:
    settings = load_settings(environ={}, env_file=None, model_path=model_path)
    grey = np.full((camclips.HEIGHT, camclips.WIDTH, 3), 128, np.uint8)
    file, label = hand_photos[0]
    scenes = [camclips.Scene(grey, 0, 0, "grey"), camclips.Scene(camclips.load_photo(file), label, 1, file.name)]
    clips = [camclips.render_clip(s.source, "x", [s], hold=4, sensor=camclips.Sensor(), seed=i)
             for i, s in enumerate(scenes)]
    before = _attributes()
    frames, inference = stages.profile(settings, model_path, clips, 8, 30.0, default_options(settings))
    assert all(a is b for a, b in zip(_attributes(), before, strict=True))
    assert [(f.clip, f.index) for f in frames] == [(c, k) for k in range(4) for c in range(2)]
    # INFERENCE_RUNTIME/PRECISION=auto: whatever this CPU serves, its models' invoke is what gets timed
    assert inference["asked"] == choose_here("auto", "auto").name and not inference["fallback"]
    assert all(f.invoke.get("palm", 0) > 0 for f in frames if f.kind == "detector")
    empty = [f.kind for f in frames if f.clip == 0]
    assert empty == ["detector", "gated", "gated", "gated"]  # nothing there to track: the gate holds from frame 2
    for f in frames:
        assert f.stages["other"] >= -1e-6, f  # the stages are parts of the frame's own CPU time
        assert all(v >= 0 for v in (*f.stages.values(), *f.invoke.values())), f
        assert set(f.stages) <= set(stages.STAGES) and "decode" in f.stages
        assert f.invoke.get("palm", 0) <= f.stages.get("palm", 0) + 1e-6
    report = stages.summarise(frames)
    assert report["frames"] == 8 and sum(k["frames"] for k in report["kinds"].values()) == 8
    assert sum(report["stages"][s]["share"] for s in stages.STAGES) == pytest.approx(1.0, abs=1e-3)
    assert "| decode |" in stages.table({"in_process": report})
