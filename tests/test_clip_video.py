"""``loadtest/clip_video.py``: the clips of ``hgr bench --sections file_cameras`` as the files a camera reads,
the frames a WebSocket client sends of them, and what reading them costs."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import cv2
import numpy as np

from hgr.common.config import load_settings
from hgr.loadtest import clip_video
from hgr.loadtest import clips as camclips
from hgr.loadtest.clips import SAMPLE_PHOTOS


def _clip(folder: Path, *, fps: float, hold: int) -> clip_video.VideoClip:
    return clip_video.make_clips(SAMPLE_PHOTOS, folder, 1, scenes=2, hold=hold, fps=fps, sensor=camclips.Sensor(),
                                 seed=21)[0]


def test_a_clip_is_a_file_a_camera_reads_and_the_frames_a_client_sends_are_the_ones_it_keeps(tmp_path: Path) -> None:
    settings = load_settings({}, env_file=None)
    clip = _clip(tmp_path, fps=30, hold=6)
    assert clip.path.is_file() and clip.frames == 12 and len(clip.sources) == 2
    sent = clip_video.sent_frames(clip, 10, settings)  # a 30 fps file at CAMERA_FPS=10: every third frame
    assert len(sent) == 4
    images = [cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) for jpeg in sent]
    assert all(image is not None and image.shape == (camclips.HEIGHT, camclips.WIDTH, 3) for image in images)
    assert len({jpeg for jpeg in sent}) == 4  # a sensor's frames: never two the same

    cost = clip_video.reading_cost(clip, 10, settings, seconds=60)
    assert cost["frames_read"] == 12 and cost["frames_kept"] == 4
    for key in ("decode_ms_per_read_frame", "convert_ms_per_kept_frame", "ms_per_kept_frame"):
        assert math.isfinite(cost[key]) and cost[key] > 0
    shorter = clip_video.reading_cost(clip, 10, settings, seconds=0.2)  # 0.2 s of a 30 fps file: 6 frames
    assert shorter["frames_read"] == 6 and shorter["frames_kept"] == 2


def test_the_same_seed_makes_the_same_file(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, two = _clip(tmp_path / "a", fps=15, hold=3), _clip(tmp_path / "b", fps=15, hold=3)
    assert one.path.read_bytes() == two.path.read_bytes() and one.sources == two.sources


def test_the_noise_bank_adds_noise_of_its_sigma_at_a_new_shift_each_frame() -> None:
    rng = np.random.default_rng(3)
    bank = clip_video.NoiseBank(3.0, rng, size=2, shape=(48, 64, 3))
    grey = np.full((48, 64, 3), 128, np.uint8)
    frames = [bank.add(grey, rng).astype(np.int16) - 128 for _ in range(4)]
    assert all(2.5 < float(f.std()) < 3.5 and abs(float(f.mean())) < 0.3 for f in frames)
    assert all(not np.array_equal(a, b) for a, b in itertools.pairwise(frames))
    assert clip_video.NoiseBank(0.0, rng).add(grey, rng) is grey  # no noise asked, none added
