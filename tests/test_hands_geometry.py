"""The hand pipeline's geometry, without the models: anchors, decoding, NMS, ROI rules, crop and projection."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hgr.common.inference.hands import association, crop, palms
from hgr.common.inference.hands.bundle import read_models
from hgr.common.inference.hands.pipeline import Roi, dedupe
from hgr.common.inference.hands.roi import (
    bounds,
    iou,
    landmarks_to_roi,
    normalize_radians,
    palm_to_roi,
    rotation_of,
    transform,
)


def mediapipe_anchors() -> np.ndarray:
    """SsdAnchorsCalculator's loop, written out as MediaPipe has it (sizes left out: fixed_anchor_size)."""
    strides, n = [8, 16, 16, 16], 4
    out = []
    layer = 0
    while layer < n:
        last = layer
        per_cell = 0
        while last < n and strides[last] == strides[layer]:
            per_cell += 2  # aspect ratio 1.0, then the interpolated scale
            last += 1
        size = math.ceil(192 / strides[layer])
        for y in range(size):
            for x in range(size):
                out += [((x + 0.5) / size, (y + 0.5) / size)] * per_cell
        layer = last
    return np.array(out)


def test_anchors_are_mediapipes() -> None:
    anchors = palms.ssd_anchors()
    assert anchors.shape == (2016, 2)
    np.testing.assert_allclose(anchors, mediapipe_anchors(), atol=1e-7)
    assert anchors[0].tolist() == pytest.approx([0.5 / 24, 0.5 / 24])
    assert anchors[-1].tolist() == pytest.approx([11.5 / 12, 11.5 / 12])


def raw_palm(anchor: int, cx: float, cy: float, size: float, logit: float) -> tuple[np.ndarray, np.ndarray]:
    """Model-like outputs with one palm at (cx, cy) (normalised), encoded relative to ``anchor``."""
    boxes = np.zeros((1, 2016, 18), np.float32)
    scores = np.full((1, 2016, 1), -50.0, np.float32)
    ax, ay = palms.ssd_anchors()[anchor]
    boxes[0, anchor, :4] = [(cx - ax) * 192, (cy - ay) * 192, size * 192, size * 192]
    for k in range(7):  # keypoints on a vertical line through the centre, wrist lowest
        boxes[0, anchor, 4 + 2 * k: 6 + 2 * k] = [(cx - ax) * 192, (cy + size / 2 - k * size / 6 - ay) * 192]
    scores[0, anchor, 0] = logit
    return boxes, scores


def test_decode_reads_centre_size_and_keypoints() -> None:
    boxes, scores = raw_palm(700, 0.4, 0.6, 0.2, 2.0)
    (palm,) = palms.decode(boxes, scores, 0.5)
    assert palm.score == pytest.approx(1 / (1 + math.exp(-2.0)))
    np.testing.assert_allclose(palm.box, [0.3, 0.5, 0.5, 0.7], atol=1e-6)
    np.testing.assert_allclose(palm.keypoints[0], [0.4, 0.7], atol=1e-6)
    assert palms.decode(boxes, scores, 0.9) == []


def test_score_logits_are_clipped() -> None:
    boxes, scores = raw_palm(3, 0.5, 0.5, 0.1, 1e6)
    (palm,) = palms.decode(boxes, scores, 0.5)
    assert palm.score == pytest.approx(1 / (1 + math.exp(-100.0)))


def test_weighted_nms_merges_a_cluster_by_score_and_keeps_separate_palms() -> None:
    kp = np.zeros((7, 2), np.float32)
    a = palms.Palm(0.9, np.array([0.0, 0.0, 0.2, 0.2], np.float32), kp)
    b = palms.Palm(0.6, np.array([0.02, 0.0, 0.22, 0.2], np.float32), kp + 0.1)
    far = palms.Palm(0.7, np.array([0.6, 0.6, 0.8, 0.8], np.float32), kp)
    out = palms.weighted_nms([b, far, a])
    assert [p.score for p in out] == [0.9, 0.7]
    np.testing.assert_allclose(out[0].box, [0.6 * 0.02 / 1.5, 0, 0.2 + 0.6 * 0.02 / 1.5, 0.2], atol=1e-6)
    np.testing.assert_allclose(out[0].keypoints, np.full((7, 2), 0.6 * 0.1 / 1.5), atol=1e-6)
    assert palms.weighted_nms([]) == []


@given(st.floats(-20, 20))
def test_normalize_radians_range_and_angle(angle: float) -> None:
    r = normalize_radians(angle)
    assert -math.pi <= r < math.pi
    assert math.cos(r) == pytest.approx(math.cos(angle), abs=1e-9)
    assert math.sin(r) == pytest.approx(math.sin(angle), abs=1e-9)


def test_rotation_turns_the_wrist_to_middle_vector_upright() -> None:
    assert rotation_of((0.5, 0.6), (0.5, 0.4), 640, 480) == pytest.approx(0.0)  # fingers up
    assert rotation_of((0.5, 0.5), (0.6, 0.5), 640, 480) == pytest.approx(math.pi / 2)  # fingers right
    # Pixels, not normalised units: 0.1 of width vs 0.1333 of height on 640×480 is a 45° diagonal.
    assert rotation_of((0.5, 0.5), (0.6, 0.5 - 64 / 480), 640, 480) == pytest.approx(math.pi / 4)


def test_transform_shifts_along_the_rois_own_axis_and_squares_in_pixels() -> None:
    upright = transform(Roi(0.5, 0.5, 0.1, 0.2, 0.0), 640, 480, scale=2.0, shift_y=-0.5)
    assert (upright.cx, upright.cy) == pytest.approx((0.5, 0.4))
    assert upright.w * 640 == pytest.approx(upright.h * 480) == pytest.approx(2 * 0.2 * 480)
    sideways = transform(Roi(0.5, 0.5, 0.1, 0.2, math.pi / 2), 640, 480, scale=1.0, shift_y=-0.5)
    assert sideways.cx == pytest.approx(0.5 + 0.5 * 0.2 * 480 / 640)  # "up" in the ROI is +x on screen
    assert sideways.cy == pytest.approx(0.5)


def test_palm_to_roi_grows_the_palm_over_the_hand() -> None:
    kp = np.array([[0.5, 0.6]] + [[0.5, 0.4]] * 6, np.float32)  # wrist below the middle finger: upright
    roi = palm_to_roi(np.array([0.45, 0.4, 0.55, 0.6], np.float32), kp, 400, 400)
    # MediaPipe Tasks' target angle is 90 *radians* (see roi.PALM_TARGET_ANGLE): an upright palm's ROI is
    # turned by 90 - π/2 - 14·2π ≈ +26.6°, and the shift of half the palm's height follows that turn.
    turn = normalize_radians(90.0 - math.pi / 2)
    assert roi.rotation == pytest.approx(turn)
    assert math.degrees(turn) == pytest.approx(26.6, abs=0.1)
    assert (roi.cx, roi.cy) == pytest.approx((0.5 + 0.1 * math.sin(turn), 0.5 - 0.1 * math.cos(turn)))
    assert (roi.w, roi.h) == pytest.approx((0.2 * 2.6, 0.2 * 2.6))


def synthetic_hand(cx: float, cy: float, angle: float, size: float) -> np.ndarray:
    """21 points of an upright open hand (in pixels of a 400×400 image), rotated by ``angle`` on screen."""
    pts: list[tuple[float, float]] = [(0, 0)]
    for f, x in enumerate((-0.5, -0.2, 0.0, 0.2, 0.4)):
        base = 0.6 if f else 0.3
        pts += [(x * (1.6 if f == 0 else 1), -base - k * 0.3) for k in range(4)]
    p = np.array(pts) * size
    c, s = math.cos(angle), math.sin(angle)
    rot = np.stack([c * p[:, 0] - s * p[:, 1], s * p[:, 0] + c * p[:, 1]], axis=1)
    out = np.zeros((21, 3), np.float32)
    out[:, :2] = (rot + [cx, cy]) / 400
    return out


@given(st.floats(-3.0, 3.0), st.floats(150, 250), st.floats(150, 250))
@settings(max_examples=50)
def test_next_roi_follows_the_hands_rotation_and_contains_it(angle: float, cx: float, cy: float) -> None:
    hand = synthetic_hand(cx, cy, angle, 60)
    roi = landmarks_to_roi(hand, 400, 400)
    assert math.cos(roi.rotation - angle) == pytest.approx(1.0, abs=1e-3)
    # Every landmark lies inside the next ROI (in its own frame).
    back = crop_coords(hand, roi, 400, 400)
    assert (back[:, :2] > 0).all() and (back[:, :2] < 1).all()


def crop_coords(points: np.ndarray, roi: Roi, width: int, height: int) -> np.ndarray:
    """Image-normalised points → normalised to the ROI's crop (via the crop's affine map)."""
    m = crop.crop_matrix(roi, width, height, 1)
    px = points[:, :2] * [width, height]
    return np.asarray(px @ m[:, :2].T + m[:, 2])


@given(st.floats(0.1, 0.9), st.floats(0.1, 0.9), st.floats(20, 600), st.floats(-3.1, 3.1), st.integers(64, 1000),
       st.integers(64, 1000))
@settings(max_examples=100)
def test_projection_inverts_the_crop(cx: float, cy: float, side: float, angle: float, width: int, height: int) -> None:
    # The pipeline's ROIs are square in pixels (square_long); for those MediaPipe's projection, which rotates
    # in crop units, is the exact inverse of the crop.
    roi = Roi(cx, cy, side / width, side / height, angle)
    rng = np.random.default_rng(0)
    in_crop = np.concatenate([rng.uniform(0, 1, (21, 2)), rng.uniform(-0.2, 0.2, (21, 1))], axis=1)
    on_image = crop.project(in_crop, roi)
    np.testing.assert_allclose(crop_coords(on_image, roi, width, height), in_crop[:, :2], atol=1e-4)
    np.testing.assert_allclose(on_image[:, 2], in_crop[:, 2] * roi.w, atol=1e-6)


def test_crop_samples_the_rotated_roi() -> None:
    """A bright square under the ROI's top-left corner lands in the crop's top-left, whatever the rotation."""
    for angle in (0.0, math.pi / 2, -math.pi / 3):
        roi = Roi(0.5, 0.5, 0.5, 0.5, angle)
        image = np.zeros((400, 400, 3), np.uint8)
        corner = crop.project(np.array([[0.1, 0.1]]), roi)[0] * 400
        cv2.circle(image, (int(corner[0]), int(corner[1])), 8, (255, 255, 255), -1)
        tensor = crop.crop(image, roi, 100, zero_border=True)
        assert tensor.shape == (1, 100, 100, 3) and tensor.dtype == np.float32
        ys, xs = np.nonzero(tensor[0, :, :, 0] > 0.5)
        assert abs(xs.mean() - 10) < 2 and abs(ys.mean() - 10) < 2


def test_letterbox_pads_the_short_side() -> None:
    assert crop.letterbox(640, 480) == Roi(0.5, 0.5, 1.0, 640 / 480, 0.0)
    image = np.full((480, 640, 3), 255, np.uint8)
    tensor = crop.crop(image, crop.letterbox(640, 480), 192, zero_border=True)[0]
    assert tensor[96, 96, 0] == pytest.approx(1.0)
    assert tensor[5, 96, 0] == 0 and tensor[186, 96, 0] == 0  # 24 rows of zero padding top and bottom


def test_world_landmarks_turn_with_the_roi() -> None:
    pts = np.array([[0.0, -0.05, 0.01]], np.float32)
    np.testing.assert_allclose(crop.rotate_world(pts, math.pi / 2), [[0.05, 0.0, 0.01]], atol=1e-7)


def test_iou_and_dedupe() -> None:
    a = Roi(0.3, 0.3, 0.2, 0.2, 0.0)
    assert iou(a, a) == pytest.approx(1.0)
    assert iou(a, Roi(0.8, 0.8, 0.2, 0.2, 0.0)) == 0.0
    assert iou(a, Roi(0.35, 0.3, 0.2, 0.2, 1.0)) == pytest.approx(0.15 / 0.25)  # rotation ignored, as MediaPipe
    moved = Roi(0.32, 0.31, 0.2, 0.2, 0.1)
    new = Roi(0.7, 0.6, 0.2, 0.2, 0.0)
    assert dedupe([a], [moved, new]) == [new]
    assert dedupe([], [moved, a, new]) == [moved, new]  # the detector's own repeats too
    assert dedupe([a], [moved], threshold=0.9) == [moved]


def test_duplicate_hands_are_found_by_landmarks() -> None:
    h = synthetic_hand(200, 200, 0.3, 50)
    near = h + 0.003
    other = synthetic_hand(100, 300, 0.0, 50)
    assert association.duplicates([h, near, other], 400, 400) == {1}
    assert association.duplicates([h, other], 400, 400) == set()


def test_bundle_errors_are_clear(tmp_path: Path) -> None:
    junk = tmp_path / "junk.task"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a model bundle"):
        read_models(junk)
    other = tmp_path / "face.task"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("face_detector.tflite", b"")
    with pytest.raises(ValueError, match="missing hand_detector.tflite, hand_landmarks_detector.tflite"):
        read_models(other)


def test_cropper_reuses_its_buffers_without_mixing_calls() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (120, 160, 3), np.uint8)
    a, b = Roi(0.4, 0.5, 0.5, 0.66, 0.7), Roi(0.6, 0.4, 0.3, 0.4, -1.2)
    cropper = crop.Cropper(64)
    first = cropper(image, a, zero_border=True).copy()
    cropper(image, b, zero_border=False)
    np.testing.assert_array_equal(cropper(image, a, zero_border=True), first)
    np.testing.assert_array_equal(crop.crop(image, a, 64, zero_border=True), first)



def test_cropper_keeps_the_maps_of_a_repeated_roi_only() -> None:
    """The palm detector's letterbox is one ROI for every frame of a size: its maps are made once, and the
    pixels still come from each new frame; another size or ROI gets its own maps."""
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (120, 160, 3), np.uint8) for _ in range(2)]
    box, other = crop.letterbox(160, 120), Roi(0.6, 0.4, 0.3, 0.4, -1.2)
    cropper = crop.Cropper(48)
    for image in (*frames, frames[0][:100], frames[1]):
        cropper(image, other, zero_border=False)
        for _ in range(2):
            np.testing.assert_array_equal(cropper(image, box, zero_border=True),
                                          crop.crop(image, box, 48, zero_border=True))
    maps = [m.copy() for m in cropper.maps(box, 160, 120)]
    fresh = crop.Cropper(48).maps(box, 160, 120)
    assert all(np.array_equal(m, f) for m, f in zip(maps, fresh, strict=True))

@given(st.floats(0.1, 0.9), st.floats(0.1, 0.9), st.floats(0.1, 0.9), st.floats(-3.1, 3.1))
@settings(max_examples=30)
def test_fixed_point_maps_follow_the_crop_matrix(cx: float, cy: float, side: float, angle: float) -> None:
    """The remap coordinates (1/32 pixel) are the crop's inverse map, rounded: within 1/64 pixel of it."""
    roi = Roi(cx, cy, side * 480 / 640, side, angle)
    coords, table = crop.Cropper(32).maps(roi, 640, 480)
    x = coords[..., 0] + (table & 31) / 32
    y = coords[..., 1] + (table >> 5) / 32
    inverse = cv2.invertAffineTransform(crop.crop_matrix(roi, 640, 480, 32))
    v, u = np.mgrid[0:32, 0:32]
    np.testing.assert_allclose(x, inverse[0, 0] * u + inverse[0, 1] * v + inverse[0, 2], atol=1 / 64 + 1e-3)
    np.testing.assert_allclose(y, inverse[1, 0] * u + inverse[1, 1] * v + inverse[1, 2], atol=1 / 64 + 1e-3)


@settings(max_examples=200, deadline=None)
@given(cx=st.floats(0, 1), cy=st.floats(0, 1), side=st.floats(0.01, 1), angle=st.floats(-math.pi, math.pi),
       width=st.integers(16, 4000), height=st.integers(16, 4000))
def test_bounds_hold_the_rotated_rois_corners(cx: float, cy: float, side: float, angle: float, width: int,
                                              height: int) -> None:
    """The box the motion gate leaves out around a tracked hand holds its ROI's four corners, and no more
    than the corners need (each side touches one)."""
    roi = Roi(cx, cy, side * height / width, side, angle)  # square in pixels, as hand ROIs are
    x0, y0, x1, y1 = bounds(roi, width, height)
    corners = cv2.boxPoints(((cx * width, cy * height), (roi.w * width, roi.h * height), math.degrees(angle)))
    xs, ys = corners[:, 0] / width, corners[:, 1] / height
    assert np.allclose([xs.min(), ys.min(), xs.max(), ys.max()], [x0, y0, x1, y1], atol=1e-4)


def test_bounds_of_an_upright_roi_are_its_own_box() -> None:
    assert bounds(Roi(0.5, 0.4, 0.2, 0.3, 0.0), 640, 480) == pytest.approx((0.4, 0.25, 0.6, 0.55))
    # a quarter turn swaps the sides in pixels: 128×144 px becomes 144 wide, 128 high
    assert bounds(Roi(0.5, 0.5, 0.2, 0.3, math.pi / 2), 640, 480) == pytest.approx(
        (0.5 - 72 / 640, 0.5 - 64 / 480, 0.5 + 72 / 640, 0.5 + 64 / 480))
