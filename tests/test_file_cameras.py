"""``hgr bench --sections file_cameras`` (``loadtest/file_cameras.py``): its arithmetic, its options, and one tiny
real run against the real model. No speed is asserted: what the CPU per frame is, or whether the 10 % holds,
is what the benchmark measures, not what a test decides."""

from __future__ import annotations

import asyncio
import math
import os
from pathlib import Path
from typing import Any

import psutil
import pytest

from hgr.common.config import load_settings
from hgr.loadtest import clip_video, file_cameras
from hgr.loadtest.bench import build_parser
from hgr.loadtest.context import BenchContext


def _turn(load: str, *, processed: int, tree: float, edge: float, cam: int = 0, read: int = 0,
          fraction: float = 1.0) -> dict[str, Any]:
    frames: dict[str, Any] = {"websocket": {"processed": processed - cam, "processed_fraction": fraction}}
    if load == "mixed":
        frames["camera"] = {"processed": cam, "read": read, "processed_fraction": fraction}
    cpu = {"tree": tree, "edge_process": edge, "workers": tree - edge}
    return {"load": load, "processed": processed, "cpu_s": cpu, "frames": frames,
            "cpu_ms_per_frame": {k: v * 1000 / processed for k, v in cpu.items()}}


def test_the_summary_compares_medians_within_the_run_and_sets_the_reading_beside_them() -> None:
    turns = [_turn("websocket", processed=100, tree=5.0, edge=0.1),
             _turn("mixed", processed=100, tree=5.4, edge=0.6, cam=50, read=150),
             _turn("websocket", processed=100, tree=6.0, edge=0.1),
             _turn("mixed", processed=100, tree=6.2, edge=0.6, cam=50, read=150, fraction=0.8)]
    reading = {"decode_ms_per_read_frame": 1.0, "convert_ms_per_kept_frame": 2.0}
    out = file_cameras.summarise(turns, reading)
    assert out["websocket"]["cpu_ms_per_frame"]["tree"] == 55.0 and out["mixed"]["cpu_ms_per_frame"]["tree"] == 58.0
    assert out["ratio"]["tree"] == round(58 / 55, 3) and out["pair_ratios"] == [1.08, round(62 / 60, 3)]
    decode = out["decode"]
    assert decode["measured_apart"] is reading
    assert decode["ms_per_camera_frame"] == 5.0  # 3 frames read per camera frame processed × 1 ms, + 2 ms
    assert decode["ms_per_mixed_frame"] == 2.5  # half of the mixed turns' frames came from cameras
    assert decode["ratio_without_reading"] == round((58 - 2.5) / 55, 3)
    # edge process: 1.2 s in the mixed turns, 100 WebSocket frames at 1 ms each, the rest over 100 camera frames
    assert decode["edge_process_ms_per_camera_frame_estimate"] == 11.0
    assert out["sustained"] is False and out["min_processed_fraction"] == 0.8
    assert out["target"] == {"cpu_per_frame_ratio": out["ratio"]["tree"], "at_most": 1.1, "ok": True}


def test_options_refuse_a_load_that_cannot_alternate(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args([])
    assert args.file_cameras == 8 and args.file_camera_turns == 4 and args.file_camera_video_fps is None
    for bad in (["--file-camera-turns", "1"], ["--file-cameras", "0"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(bad)
        assert "is less than" in capsys.readouterr().err


def _edges_of_this_process() -> list[int]:
    found = []
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "edge" in child.cmdline() and "hgr" in child.cmdline():
                found.append(child.pid)
        except psutil.Error:
            continue
    return found


def _context(argv: list[str]) -> BenchContext:
    return BenchContext(build_parser().parse_args(argv), load_settings(), [])


@pytest.mark.service
def test_a_tiny_run_measures_both_loads_and_stops_every_edge(model_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HGR_MODEL_PATH", model_path)
    ctx = _context(["--sections", "file_cameras", "--file-cameras", "1", "--file-camera-turns", "2",
                    "--file-camera-duration", "4", "--file-camera-warmup", "0.5", "--file-camera-fps", "4",
                    "--scenes", "1", "--clip-hold", "24", "--workers", "1"])
    out = asyncio.run(file_cameras.run(ctx))

    assert out["cameras"] == 1 and out["streams"] == {"websocket": 2, "mixed": 1}
    assert out["pace_fps"] == 4 and out["video_fps"] == 12 and out["workers"] == 1
    assert [t["load"] for t in out["turns"]] == ["websocket", "mixed"]
    websocket, mixed = out["turns"]
    assert set(websocket["frames"]) == {"websocket"} and set(mixed["frames"]) == {"websocket", "camera"}
    assert websocket["frames"]["websocket"]["processed"] > 0
    assert mixed["frames"]["websocket"]["processed"] > 0 and mixed["frames"]["camera"]["processed"] > 0
    assert mixed["frames"]["camera"]["read"] >= mixed["frames"]["camera"]["processed"]
    for turn in out["turns"]:
        assert turn["processed"] == sum(kind["processed"] for kind in turn["frames"].values())
        assert turn["errors"] == {}
        for kind in file_cameras.CPU_KINDS:
            assert math.isfinite(turn["cpu_ms_per_frame"][kind]) and turn["cpu_ms_per_frame"][kind] > 0
        assert Path(turn["log"]).is_file()
    for kind in file_cameras.CPU_KINDS:
        assert math.isfinite(out["ratio"][kind]) and out["ratio"][kind] > 0
    assert out["pair_ratios"] == [out["ratio"]["tree"]]
    decode = out["decode"]
    assert decode["measured_apart"]["frames_read"] > decode["measured_apart"]["frames_kept"] > 0
    for key in ("ms_per_camera_frame", "ms_per_mixed_frame", "ratio_without_reading"):
        assert math.isfinite(decode[key]) and decode[key] > 0
    assert isinstance(out["sustained"], bool) and isinstance(out["target"]["ok"], bool)
    assert _edges_of_this_process() == []


@pytest.mark.service
def test_a_turn_that_fails_still_stops_its_edge(model_path: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A camera whose file is missing never delivers: the turn gives up after its start timeout and says
    why, and its edge is gone."""
    monkeypatch.setenv("HGR_MODEL_PATH", model_path)
    monkeypatch.setattr(file_cameras, "START_TIMEOUT_S", 3.0)
    missing = clip_video.VideoClip(tmp_path / "missing.mp4", 12.0, 12, ())
    with pytest.raises(TimeoutError, match="0/1 cameras delivering"):
        asyncio.run(file_cameras.run_turn("mixed", [missing], [[b"never sent"]], pace=4, warmup=0.1, window=0.1,
                                          workers=1))
    assert _edges_of_this_process() == []
