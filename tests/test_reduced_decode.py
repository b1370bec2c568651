"""Reduced-scale JPEG decoding of stream frames (REDUCED_DECODE_MIN_SIDE): which scale is chosen, that the
result keeps the size as sent (also with an EXIF rotation), and that the hand pipeline's landmarks on a large
frame decoded at reduced scale agree with a full decode."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from hgr.common.config import load_settings
from hgr.common.inference.images import ImageLimits, decode_image, reduce_factor
from hgr.common.inference.stream_pipeline import StreamPipelines
from hgr.common.options import DetectOptions


@pytest.mark.parametrize("size, min_side, factor", [
    ((640, 480), 360, 1), ((1280, 720), 360, 2), ((1920, 1080), 360, 2), ((3840, 2160), 360, 4),
    ((7680, 4320), 360, 8), ((1920, 1080), 0, 1), ((1920, 1080), 1080, 1), ((1919, 1077), 540, 1),
    ((1919, 1079), 540, 2), ((1920, 1080), 540, 2), ((1080, 1920), 360, 2),
])
def test_the_largest_scale_that_keeps_the_short_side(size: tuple[int, int], min_side: int, factor: int) -> None:
    assert reduce_factor(*size, min_side) == factor


def _jpeg(width: int, height: int, orientation: int = 1) -> bytes:
    rng = np.random.default_rng(0)
    pixels = cv2.resize(rng.integers(0, 255, (height // 40, width // 40, 3), dtype=np.uint8), (width, height))
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(out, "JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


def test_a_large_frame_is_decoded_smaller_but_keeps_its_size() -> None:
    image = decode_image(_jpeg(1920, 1080), ImageLimits(), reduce_min_side=360)
    assert image.rgb.shape == (540, 960, 3) and image.size == (1920, 1080)


def test_an_exif_rotated_frame_reports_its_upright_size() -> None:
    image = decode_image(_jpeg(1920, 1080, orientation=6), ImageLimits(), reduce_min_side=360)
    assert image.rgb.shape == (960, 540, 3) and image.size == (1080, 1920)


def test_small_frames_png_and_stills_are_decoded_in_full() -> None:
    assert decode_image(_jpeg(640, 480), ImageLimits(), reduce_min_side=360).rgb.shape == (480, 640, 3)
    ok, png = cv2.imencode(".png", np.zeros((1080, 1920, 3), np.uint8))
    assert ok
    assert decode_image(png.tobytes(), ImageLimits(), reduce_min_side=360).rgb.shape == (1080, 1920, 3)
    assert decode_image(_jpeg(1920, 1080), ImageLimits()).rgb.shape == (1080, 1920, 3)


def test_landmarks_on_a_reduced_decode_agree_with_a_full_one(
        model_path: str, hand_photos: list[tuple[Path, int]]) -> None:
    """Photos as 1920×1440 frames: decoded at 1/2 (short side 720 ≥ 360) vs in full, through the hand pipeline.
    The pipeline's own bar against MediaPipe is 2 % of the image size at the median; the reduced decode stays
    inside it on every photo and far inside it at the median (0.1 % over 105 photos, docs/benchmarks.md)."""
    reduced, full = (StreamPipelines(load_settings({}, env_file=None, stream_pipeline="litert",
                                                   reduced_decode_min_side=side), {"full": model_path},
                                     ImageLimits()) for side in (360, 0))
    gaps: list[float] = []
    try:
        for i, (path, _) in enumerate(hand_photos[:12]):
            raw = cv2.imread(str(path))
            assert raw is not None
            ok, data = cv2.imencode(".jpg", cv2.resize(raw, (1920, 1440), interpolation=cv2.INTER_CUBIC),
                                    [cv2.IMWRITE_JPEG_QUALITY, 90])
            assert ok
            a = reduced.detect_bytes(data.tobytes(), DetectOptions(num_hands=1), stream=i)
            b = full.detect_bytes(data.tobytes(), DetectOptions(num_hands=1), stream=i)
            assert a["image_size"] == b["image_size"] == [1920, 1440]
            if a["hands"] and b["hands"]:
                gap = np.linalg.norm(np.array(a["hands"][0]["landmarks"])[:, :2]
                                     - np.array(b["hands"][0]["landmarks"])[:, :2], axis=1)
                gaps.append(float(np.median(gap)))
                assert gaps[-1] < 0.02, f"{path.name}: landmarks moved {gaps[-1]:.4f} of the image"
    finally:
        reduced.close()
        full.close()
    assert len(gaps) >= 8
    assert float(np.median(gaps)) < 0.005, gaps
