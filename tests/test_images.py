"""Image decoding: every kind of bad input gets its own error code, before any large allocation."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from hgr.common.errors import (
    CorruptImage,
    EmptyImage,
    HgrError,
    ImageSideTooLarge,
    ImageTooLarge,
    TooManyPixels,
    UnsupportedImage,
)
from hgr.common.inference import images
from hgr.common.inference.images import (
    EXPOSURE_BRACKETS,
    ImageLimits,
    decode_image,
    read_header,
    unpack_rgb,
    with_gamma,
)


def _encode(fmt: str, w: int = 64, h: int = 48, **save: object) -> bytes:
    img = Image.new("RGB", (w, h), (200, 30, 30))
    img.putpixel((0, 0), (0, 255, 0))  # marks the top-left corner
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


@pytest.mark.parametrize("fmt, name", [("JPEG", "jpeg"), ("PNG", "png"), ("WEBP", "webp"), ("BMP", "bmp")])
def test_accepted_formats_decode_to_rgb(fmt: str, name: str) -> None:
    out = decode_image(_encode(fmt, lossless=True) if fmt == "WEBP" else _encode(fmt))
    assert out.format == name and out.size == (64, 48)
    assert out.rgb.shape == (48, 64, 3) and out.rgb.dtype == np.uint8
    r, g, b = out.rgb[24, 32]
    assert r > 150 and g < 80 and b < 80, "channels must be RGB, not BGR"


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90° clockwise
    data = _encode("JPEG", 64, 48, exif=exif.tobytes(), quality=95)
    out = decode_image(data)
    assert out.size == (48, 64)


def test_exif_after_other_segments_still_sends_the_header_to_pillow() -> None:
    """The plain-JPEG header path (libjpeg-turbo, no Pillow) is only for JPEGs without EXIF: the segment walk
    finds an EXIF APP1 behind other segments too (here an APP2 put first), and the orientation is honoured."""
    exif = Image.Exif()
    exif[0x0112] = 8
    app2 = b"\xff\xe2" + (2 + 3000).to_bytes(2, "big") + b"\0" * 3000

    def with_app2_first(data: bytes) -> bytes:
        return data[:2] + app2 + data[2:]

    data = with_app2_first(_encode("JPEG", 64, 48, exif=exif.tobytes()))
    assert images._has_exif(data) and images._plain_jpeg_size(data) is None
    assert read_header(data, ImageLimits()).orientation == 8
    plain = with_app2_first(_encode("JPEG", 64, 48))
    assert not images._has_exif(plain) and images._plain_jpeg_size(plain) == (64, 48)
    header = read_header(plain, ImageLimits())
    assert (header.format, header.width, header.height, header.orientation) == ("jpeg", 64, 48, 1)


def test_camera_frames_read_the_same_header_either_way(hand_photos: list[tuple[Path, int]]) -> None:
    for path, _ in hand_photos[:20]:
        bgr = cv2.imread(str(path))
        assert bgr is not None, path
        data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
        assert images._plain_jpeg_size(data) is not None, path.name  # a camera frame takes the cheap path
        with Image.open(io.BytesIO(data)) as img:
            header = read_header(data, ImageLimits())
            assert (header.format, header.width, header.height) == ("jpeg", *img.size)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    # A real, tiny PNG whose header declares 50 000 × 50 000 pixels (2.5 gigapixels).
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
           + chunk(b"IEND", b""))
    assert len(png) < 1100
    with pytest.raises(TooManyPixels) as err:
        decode_image(png, ImageLimits(max_pixels=40_000_000))
    assert err.value.code == "too_many_pixels" and err.value.status == 413


@pytest.mark.parametrize("data, error, code", [
    (b"", EmptyImage, "empty_image"),
    (b"definitely not an image", UnsupportedImage, "unsupported_format"),
    (b"GIF89a" + b"\0" * 20, UnsupportedImage, "unsupported_format"),
])
def test_bad_bytes_get_distinct_codes(data: bytes, error: type[HgrError], code: str) -> None:
    with pytest.raises(error) as err:
        decode_image(data)
    assert err.value.code == code


def test_gif_is_named_in_the_message() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "GIF")
    with pytest.raises(UnsupportedImage, match="GIF"):
        decode_image(buf.getvalue())


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_data_is_corrupt(fmt: str, hand_photos: list[tuple[Path, int]]) -> None:
    data = hand_photos[0][0].read_bytes() if fmt == "JPEG" else _encode("PNG", 256, 256)
    with pytest.raises(CorruptImage, match="truncated"):
        decode_image(data[: len(data) * 2 // 3])


@pytest.mark.parametrize("width, height", [(32_767, 8), (8, 32_767), (16_385, 1)])
def test_a_side_over_max_image_side_is_refused_from_the_header(width: int, height: int) -> None:
    # 842 bytes (wide) and 262 k pixels: under every other limit, but OpenCV's warps inside MediaPipe abort the
    # whole worker process on a side of 32767 (dst.cols < SHRT_MAX).
    ok, png = cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))
    assert ok and len(png) < 40_000  # a tall PNG costs a filter byte per row
    with pytest.raises(ImageSideTooLarge) as err:
        decode_image(png.tobytes())
    assert err.value.code == "image_side_too_large" and err.value.status == 413


def test_large_images_are_downscaled_for_inference_but_report_their_size() -> None:
    _, png = cv2.imencode(".png", np.full((8, 16_384, 3), 200, np.uint8))
    out = decode_image(png.tobytes(), ImageLimits(infer_max_side=4096))
    assert out.size == (16_384, 8) and out.rgb.shape == (2, 4096, 3)
    small = decode_image(_encode("PNG", 640, 480), ImageLimits(infer_max_side=4096))
    assert small.rgb.shape == (480, 640, 3)


def test_a_cameras_packed_pixels_are_unpacked_as_they_are() -> None:
    rgb = np.random.default_rng(3).integers(0, 256, (48, 64, 3), np.uint8)
    out = unpack_rgb(rgb.tobytes(), (48, 64))
    assert out.format == "rgb" and out.size == (64, 48) and out.decode_ms >= 0
    assert np.array_equal(out.rgb, rgb)
    # as a worker gets them: a view (of the message it read); any view is taken by its bytes, not by its length
    assert np.array_equal(unpack_rgb(memoryview(rgb.tobytes()), (48, 64)).rgb, rgb)
    assert len(rgb.data) == 48 and np.array_equal(unpack_rgb(rgb.data, (48, 64)).rgb, rgb)
    big = unpack_rgb(bytes(8 * 5000 * 3), (8, 5000), ImageLimits(infer_max_side=4096))
    assert big.size == (5000, 8) and big.rgb.shape == (7, 4096, 3)  # downscaled as a decoded image would be


@pytest.mark.parametrize("data, shape, error", [
    (bytes(47), (4, 4), CorruptImage),  # one byte short
    (bytes(49), (4, 4), CorruptImage),  # one too many
    (bytes(16 * 3), (1, 4), CorruptImage),  # a 4×4 frame's bytes sent as one row
    (memoryview(bytes(48))[:47], (4, 4), CorruptImage),  # a view one byte short
    (memoryview(bytes(16 * 3)).cast("B", (4, 4, 3)), (4, 5), CorruptImage),  # a 4×4 frame's pixels as a 5-wide one
    (b"", (0, 5), EmptyImage),
    (b"", (-2, -2), EmptyImage),  # (-2)·(-2)·3 = 12: the sides are checked before the length
    (b"", (1, 16_385), ImageSideTooLarge),
    (b"", (7000, 7000), TooManyPixels),
])
def test_malformed_packed_pixels_get_an_image_error(data: bytes | memoryview, shape: tuple[int, int],
                                                    error: type[HgrError]) -> None:
    with pytest.raises(error):
        unpack_rgb(data, shape)


def test_a_jpeg_cut_in_the_middle_but_ending_in_ffd9_is_corrupt(hand_photos: list[tuple[Path, int]]) -> None:
    data = hand_photos[0][0].read_bytes()
    for cut in (len(data) // 3, len(data) // 2, len(data) - 2000):
        forged = data[:cut] + b"\xff\xd9"  # passes the end-marker check; the entropy data stops short
        with pytest.raises(CorruptImage, match="corrupt"):
            decode_image(forged)


def test_every_labelled_photo_passes_the_strict_jpeg_decoder(hand_photos: list[tuple[Path, int]]) -> None:
    for path, _ in hand_photos:
        assert decode_image(path.read_bytes()).rgb.ndim == 3, path


def test_size_limit_is_checked_first() -> None:
    with pytest.raises(ImageTooLarge) as err:
        decode_image(b"x" * 1001, ImageLimits(max_bytes=1000))
    assert err.value.status == 413


def test_limits_from_settings_are_the_service_knobs() -> None:
    from hgr.common.config import load_settings

    s = load_settings({"MAX_IMAGE_SIZE": "1000", "MAX_IMAGE_PIXELS": "2000", "MAX_IMAGE_SIDE": "300",
                       "INFER_MAX_SIDE": "200"}, env_file=None)
    assert ImageLimits.from_settings(s) == ImageLimits(max_bytes=1000, max_pixels=2000, max_side=300,
                                                       infer_max_side=200)


def test_real_photo_matches_opencv(hand_photos: list[tuple[Path, int]]) -> None:
    path = hand_photos[0][0]
    out = decode_image(path.read_bytes())
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    reference = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    assert out.rgb.shape == reference.shape
    assert np.array_equal(out.rgb, reference)


def test_exposure_brackets_darken_and_brighten_without_moving_pixels() -> None:
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)  # 1×256×3, every value
    darker, brighter = (with_gamma(ramp, g).astype(int) for g in sorted(EXPOSURE_BRACKETS, reverse=True))
    assert darker.shape == brighter.shape == ramp.shape
    mid = ramp.astype(int)[0, 1:255]
    assert (darker[0, 1:255] <= mid).all() and (darker[0, 1:255] < mid).any()
    assert (brighter[0, 1:255] >= mid).all() and (brighter[0, 1:255] > mid).any()
    # Black stays black and white stays white, and the order of values is kept (a monotone curve).
    for out in (darker, brighter):
        assert out[0, 0].tolist() == [0, 0, 0] and out[0, 255].tolist() == [255, 255, 255]
        assert (np.diff(out[0, :, 0]) >= 0).all()
    assert with_gamma(ramp, 1.0).tolist() == ramp.tolist()
