"""research/tracking.py: the tracked one-hand agreement report (pure parts) and one real photo end to end."""

from __future__ import annotations

from pathlib import Path

from hgr.common.config import load_settings
from hgr.loadtest.clips import SAMPLE_PHOTOS
from research.tracking import PhotoRun, markdown, measure, report


def test_report_splits_first_and_tracked_frames_and_lists_misread_photos() -> None:
    runs = [PhotoRun("a.jpg", 3, (3, 4, 4, 4), (3, 4, 4, 3), (3, 4, 4, 4), (3, 4, 4, 4), edge_cpu_ms=40.0,
                     baseline_cpu_ms=100.0, edge_detector=1),
            PhotoRun("b.jpg", 1, (1, 1, 1, 1), (1, 1, 1, 1), edge_cpu_ms=40.0, baseline_cpu_ms=60.0, edge_detector=2)]
    rep = report(runs, hold=4, seed=1)
    assert rep["photos"] == 2
    assert rep["edge"] == {"all_frames": 62.5, "first_frame": 100.0, "tracked_frames": 50.0, "photos_all_right": 1}
    assert rep["baseline"]["tracked_frames"] == round(100 * 4 / 6, 2)
    assert [m["file"] for m in rep["misread"]] == ["a.jpg"]
    assert rep["misread"][0]["edge"] == "3444" and rep["misread"][0]["edge_wrong"] == 3
    assert rep["work"] == {"cpu_ms_per_frame": {"edge": 10.0, "baseline": 20.0}, "baseline_over_edge": 2.0,
                           "edge_detector_fraction": 0.375}
    table = markdown(rep)
    assert "| a.jpg | 3 | `3444` | `3443` | `3444` | `3444` |" in table and "b.jpg" not in table
    assert "| 20.0 ms | 10.0 ms | 2.0 | 37.5 % |" in table


def test_measure_runs_the_stream_path_and_the_baseline_on_real_photos(tmp_path: Path, model_path: str) -> None:
    fixtures = SAMPLE_PHOTOS
    rows = (fixtures / "labels.csv").read_text().splitlines()
    (tmp_path / "labels.csv").write_text("\n".join(rows[:4]) + "\n")  # the header and 3 photos
    for row in rows[1:4]:
        name = row.split(",")[0]
        (tmp_path / name).write_bytes((fixtures / name).read_bytes())
    runs = measure(load_settings({}, env_file=None, model_path=model_path), tmp_path, hold=4, seed=1)
    assert runs, "no fixture photo is right as a still"
    for r in runs:
        assert len(r.edge) == len(r.baseline) == 4
        assert r.edge[0] == r.label  # the first frame is the palm detector's ROI, as the still that was right
        assert r.edge_cpu_ms > 0 and r.baseline_cpu_ms > 0 and 1 <= r.edge_detector <= 4  # the first frame looks
