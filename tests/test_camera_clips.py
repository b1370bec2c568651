"""The camera-clip source (loadtest/clips.py): frame synthesis and scene geometry, pure, no model."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hgr.loadtest import clips as C


def scene(seed: int = 0) -> np.ndarray:
    """A textured 640×480 BGR image (smooth gradients plus blobs), so shifts and noise are visible."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:C.HEIGHT, 0:C.WIDTH].astype(np.float32)
    base = np.stack([x / C.WIDTH * 200, y / C.HEIGHT * 200, (x + y) / (C.WIDTH + C.HEIGHT) * 200], axis=-1)
    blobs = cv2.GaussianBlur(rng.uniform(0, 55, (C.HEIGHT, C.WIDTH, 1)).astype(np.float32), (0, 0), 3)[..., None]
    return np.clip(base + blobs, 0, 255).astype(np.uint8)


def decode(frame: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(frame, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


STILL = C.Pose(0.0, 0.0, 1.0, 1.0)


def test_noise_changes_every_frame_and_only_noise_does() -> None:
    image, rng = scene(), np.random.default_rng(1)
    noisy = [C.render_frame(image, STILL, C.Sensor(), rng) for _ in range(10)]
    assert len(set(noisy)) == 10  # fresh noise: no two frames share their bytes
    quiet = C.Sensor(noise_sigma=0.0)
    assert len({C.render_frame(image, STILL, quiet, rng) for _ in range(5)}) == 1  # the same view without noise


def test_noise_has_the_sensor_sigma() -> None:
    image = np.full((C.HEIGHT, C.WIDTH, 3), 128, np.uint8)
    diff = C.add_noise(image, 3.0, np.random.default_rng(2)).astype(np.float64) - 128
    assert abs(diff.mean()) < 0.05
    assert diff.std() == pytest.approx(3.0, rel=0.05)


def test_frames_are_640x480_jpeg_at_the_sensor_quality() -> None:
    image, rng = scene(), np.random.default_rng(3)
    frame = C.render_frame(image, STILL, C.Sensor(), rng)
    assert frame[:2] == b"\xff\xd8" and decode(frame).shape == (C.HEIGHT, C.WIDTH, 3)
    # re-encoded at quality 80: close to the scene (noise + compression), far from a quality-10 encode
    error = np.abs(decode(frame).astype(np.int16) - image).mean()
    assert error < 6
    low = C.render_frame(image, STILL, C.Sensor(jpeg_quality=10), np.random.default_rng(3))
    assert len(low) < len(frame) / 2


def test_drift_is_bounded_smooth_and_moves() -> None:
    sensor = C.Sensor(drift_px=1.5, scale_wobble=0.004)
    poses = C.drift_path(3000, sensor, np.random.default_rng(4))
    dx, dy = np.array([p.dx for p in poses]), np.array([p.dy for p in poses])
    scale = np.array([p.scale for p in poses])
    assert np.abs(dx).max() <= 1.5 and np.abs(dy).max() <= 1.5
    assert np.abs(scale - 1).max() <= 0.004
    assert dx.max() - dx.min() > 1.0 and dy.max() - dy.min() > 1.0  # it does wander
    assert np.abs(np.diff(dx)).max() < 0.2  # a drift, not a jump: sub-pixel steps between frames
    assert all(p.gain == 1.0 for p in poses)  # flicker off by default


def test_flicker_is_bounded_when_on() -> None:
    poses = C.drift_path(300, C.Sensor(flicker=0.03), np.random.default_rng(5))
    gains = np.array([p.gain for p in poses])
    assert np.abs(gains - 1).max() <= 0.03 and gains.max() - gains.min() > 0.03


def test_look_shifts_the_scene_by_the_pose() -> None:
    image = scene()
    moved = C.look(image, C.Pose(2.0, 1.0, 1.0, 1.0))
    # content moves right by 2 and down by 1 pixels (interior, away from the reflected border)
    assert np.array_equal(moved[11:-10, 12:-10], image[10:-11, 10:-12])
    brighter = C.look(image, C.Pose(0.0, 0.0, 1.0, 1.1))
    assert brighter.astype(np.int16).sum() > image.astype(np.int16).sum()


def two_scenes() -> list[C.Scene]:
    return [C.Scene(scene(1), 2, 1, "a.jpg"), C.Scene(scene(2), 7, 2, "b.jpg+c.jpg")]


def test_clip_carries_labels_per_frame() -> None:
    clip = C.render_clip("x", "one_hand", two_scenes(), hold=3, sensor=C.Sensor(), seed=6)
    assert len(clip) == 6 and clip.kind == "one_hand"
    assert clip.labels == (2, 2, 2, 7, 7, 7)
    assert clip.hands == (1, 1, 1, 2, 2, 2)
    assert [clip.scene_of(i) for i in range(6)] == ["a.jpg"] * 3 + ["b.jpg+c.jpg"] * 3


def test_clip_is_deterministic_by_seed() -> None:
    a = C.render_clip("x", "one_hand", two_scenes(), hold=2, sensor=C.Sensor(), seed=7)
    b = C.render_clip("x", "one_hand", two_scenes(), hold=2, sensor=C.Sensor(), seed=7)
    c = C.render_clip("x", "one_hand", two_scenes(), hold=2, sensor=C.Sensor(), seed=8)
    assert a.frames == b.frames
    assert all(x != y for x, y in zip(a.frames, c.frames, strict=True))


def overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


BOXES = [(300.0, 100.0, 420.0, 300.0), (20.0, 30.0, 200.0, 300.0), (400.0, 250.0, 600.0, 470.0)]


@pytest.mark.parametrize("box", BOXES)
def test_empty_region_stays_clear_of_the_hand(box: C.Box) -> None:
    region = C.empty_region([box])
    assert region is not None
    x0, y0, x1, y1 = region
    assert 0 <= x0 < x1 <= C.WIDTH and 0 <= y0 < y1 <= C.HEIGHT
    assert (x1 - x0) * 3 == (y1 - y0) * 4 and x1 - x0 >= 160
    assert not overlaps(region, C.grow(box, 0.35))


def test_no_empty_region_when_the_hand_fills_the_photo() -> None:
    assert C.empty_region([(100.0, 80.0, 540.0, 400.0)]) is None
    assert C.empty_region([]) is None


@pytest.mark.parametrize("box", [(10.0, 10.0, 120.0, 200.0), (300.0, 200.0, 420.0, 470.0), (50.0, 0.0, 600.0, 480.0)])
def test_hand_window_holds_the_hand(box: C.Box) -> None:
    x0, y0, x1, y1 = C.hand_window(box)
    assert 0 <= x0 < x1 <= C.WIDTH and 0 <= y0 < y1 <= C.HEIGHT
    assert abs((x1 - x0) * 3 - (y1 - y0) * 2) <= 3  # 2:3, to the rounding
    if box[2] - box[0] <= (y1 - y0) * 2 / 3:  # a hand narrower than the window is inside it
        assert x0 <= box[0] and box[2] <= x1


def test_side_by_side_fills_one_frame() -> None:
    left = C.Still("l.jpg", 2, scene(1), ((100.0, 100.0, 200.0, 300.0),), (2,))
    right = C.Still("r.jpg", 3, scene(2), ((400.0, 100.0, 500.0, 300.0),), (3,))
    image = C.side_by_side(left, right)
    assert image.shape == (C.HEIGHT, C.WIDTH, 3)
    # the left half is the left photo's window around its hand, unscaled (the hand fits the window)
    x0, y0, x1, y1 = C.hand_window(left.boxes[0])
    assert np.array_equal(image[:, :C.WIDTH // 2], left.image[y0:y1, x0:x1])


def test_still_is_right_only_with_one_steady_hand_counted_as_labelled() -> None:
    box = ((1.0, 1.0, 2.0, 2.0),)
    assert C.Still("a", 3, scene(), box, (3,)).right
    assert not C.Still("a", 3, scene(), box, (2,)).right
    assert not C.Still("a", 3, scene(), box * 2, (3, 0)).right
    assert not C.Still("a", 3, scene(), box, (3,), steady=False).right


def test_parse_mix() -> None:
    assert C.parse_mix("empty=4,one_hand=3, two_hands=1") == [("empty", 4), ("one_hand", 3), ("two_hands", 1)]
    for bad in ("empty", "hands=2", "empty=-1", "empty=x"):
        with pytest.raises(ValueError, match="bad mix entry"):
            C.parse_mix(bad)


def test_fit_makes_any_photo_640x480() -> None:
    for shape in [(600, 800, 3), (480, 640, 3), (1000, 500, 3), (100, 100, 3)]:
        assert C.fit(np.zeros(shape, np.uint8)).shape == (C.HEIGHT, C.WIDTH, 3)
