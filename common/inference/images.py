"""Turn untrusted bytes into an RGB pixel array, or a precise ``ImageError``.

Order matters for safety: size limit, then format sniffing and header parsing (Pillow reads only the
header — libjpeg-turbo's header parser reads a JPEG without EXIF, a camera frame, in a quarter of the time — so
a tiny file declaring 50 000 × 50 000 pixels is refused before a single pixel is
allocated; so is a side over ``max_side``: a 842-byte 32767×8 PNG passes the pixel limit but aborts the
process inside MediaPipe's OpenCV warps), then a truncation check, then the actual decode (JPEG with
libjpeg-turbo in strict mode, which refuses data corrupt in the middle that a lenient decoder turns
into grey blocks; the rest with OpenCV), then EXIF orientation so a phone photo is upright for the
model, then a downscale of anything larger than ``infer_max_side`` (the model looks at 192-224 px
crops; more pixels only cost time and memory, and keep OpenCV far from its 32767 px limits).
"""

from __future__ import annotations

import functools
import io
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from hgr.common.errors import (
    CorruptImage,
    EmptyImage,
    ImageSideTooLarge,
    ImageTooLarge,
    TooManyPixels,
    UnsupportedImage,
)

if TYPE_CHECKING:
    from hgr.common.config import Settings

# We enforce our own pixel limit (configurable); Pillow's global one would raise a different error.
Image.MAX_IMAGE_PIXELS = None

ACCEPTED_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "WEBP": "webp", "BMP": "bmp"}
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True, slots=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_side: int = 16_384  # refused beyond (OpenCV's warps abort at 32767)
    infer_max_side: int = 4096  # downscaled beyond, before inference

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        """The limits the service enforces (MAX_IMAGE_SIZE, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, INFER_MAX_SIDE)."""
        return cls(settings.max_image_size, settings.max_image_pixels, settings.max_image_side,
                   settings.infer_max_side)


@dataclass(frozen=True, slots=True)
class DecodedImage:
    rgb: np.ndarray  # H×W×3 uint8, upright, at most ``infer_max_side`` on its longer side
    format: str  # jpeg | png | webp | bmp, or rgb: packed pixels from the edge's camera reader (``unpack_rgb``)
    decode_ms: float
    size: tuple[int, int]  # (width, height) of the upright image as sent (before any downscale)


@dataclass(frozen=True, slots=True)
class ImageHeader:
    format: str
    width: int
    height: int
    orientation: int  # EXIF orientation 1..8 (1 = as stored)


def read_header(data: bytes, limits: ImageLimits) -> ImageHeader:
    """Validate everything that can be known without decoding pixels."""
    if not data:
        raise EmptyImage("the image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"the image is {len(data)} bytes; the limit is {limits.max_bytes} bytes")
    plain = _plain_jpeg_size(data)
    pil_format: str | None
    if plain is not None:
        pil_format, (width, height), orientation = "JPEG", plain, 1
    else:
        try:
            with Image.open(io.BytesIO(data)) as img:
                pil_format, (width, height) = img.format, img.size
                orientation = img.getexif().get(_EXIF_ORIENTATION, 1) if pil_format in ("JPEG", "MPO", "WEBP") else 1
        except UnidentifiedImageError:
            raise UnsupportedImage("unrecognised image data; send JPEG, PNG, WebP or BMP") from None
        except Exception as exc:  # noqa: BLE001 - Pillow raises assorted errors on malformed headers
            raise CorruptImage(f"the image header is malformed ({exc.__class__.__name__})") from None
    fmt = ACCEPTED_FORMATS.get(pil_format or "")
    if fmt is None:
        raise UnsupportedImage(f"{pil_format} images are not accepted; send JPEG, PNG, WebP or BMP")
    check_size(width, height, limits, "image")
    if _is_truncated(fmt, data):
        raise CorruptImage(f"the {fmt.upper()} data is truncated")
    return ImageHeader(fmt, width, height, orientation if orientation in range(1, 9) else 1)


def _plain_jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a JPEG with no EXIF segment, from libjpeg-turbo's header parser: a few µs against
    Pillow's 0.07-0.17 ms (docs/benchmarks.md), on every camera frame. None when Pillow must look: not a JPEG,
    an EXIF segment (its orientation matters), or anything libjpeg or the segment walk finds unusual (Pillow
    then names the error)."""
    if not data.startswith(b"\xff\xd8\xff") or _has_exif(data):
        return None
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    return width, height


def _has_exif(data: bytes) -> bool:
    """Whether the JPEG's header segments (before its first scan) hold an EXIF APP1; True when they cannot be
    walked (let Pillow decide)."""
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # a fill byte before the marker
            i += 1
            continue
        if marker == 0xDA:  # start of scan: the header segments are over
            return False
        if marker == 0xE1 and data[i + 4:i + 10] == b"Exif\x00\x00":
            return True
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return True


def _is_truncated(fmt: str, data: bytes) -> bool:
    # Decoders happily return a half-grey picture for a cut-off file; the model would then count
    # fingers on garbage. Each format has an end marker or a declared length to check.
    if fmt == "jpeg":
        return not data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9")
    if fmt == "png":
        return b"IEND" not in data[-16:]
    if fmt == "webp":
        return len(data) < int.from_bytes(data[4:8], "little") + 8
    if fmt == "bmp":
        return len(data) < int.from_bytes(data[2:6], "little")
    return False


def decode_image(data: bytes | memoryview, limits: ImageLimits = ImageLimits(), *,
                 reduce_min_side: int = 0) -> DecodedImage:
    """``reduce_min_side`` > 0: a JPEG may be decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, cheaper
    than decoding everything and resizing) as long as its shorter side stays at least that many pixels.
    Stream frames only (STREAM_PIPELINE=litert, REDUCED_DECODE_MIN_SIDE): measured in docs/benchmarks.md.
    A view (a worker's task as it came) is copied to bytes once, here, for the header reader and the decoders."""
    start = time.perf_counter()
    data = bytes(data)  # bytes come back as they are
    header = read_header(data, limits)
    factor = reduce_factor(header.width, header.height, reduce_min_side) if header.format == "jpeg" else 1
    rgb = _decode_jpeg(data, header, factor) if header.format == "jpeg" else None
    if rgb is None:
        rgb = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
    if rgb is None or rgb.size == 0:
        raise CorruptImage(f"the {header.format.upper()} data could not be decoded")
    rgb = apply_orientation(rgb, header.orientation)
    size = (rgb.shape[1], rgb.shape[0])
    if factor > 1:  # the size as sent, not as decoded (rotated as the pixels were)
        size = (header.height, header.width) if header.orientation >= 5 else (header.width, header.height)
    rgb = downscale(rgb, limits.infer_max_side)
    return DecodedImage(np.ascontiguousarray(rgb), header.format, (time.perf_counter() - start) * 1000, size)


def check_size(width: int, height: int, limits: ImageLimits, what: str) -> None:
    """An ``ImageError`` unless a ``width``×``height`` picture has pixels and is within ``limits``' pixel count
    and side (``what``: "image" or "frame", as the message names it)."""
    if width <= 0 or height <= 0:
        raise EmptyImage(f"the {what} has no pixels ({width}×{height})")
    if width * height > limits.max_pixels:
        raise TooManyPixels(f"the {what} is {width}×{height} = {width * height} pixels; "
                            f"the limit is {limits.max_pixels}")
    if max(width, height) > limits.max_side:
        raise ImageSideTooLarge(f"the {what} is {width}×{height}; each side must be at most {limits.max_side} px")


def unpack_rgb(data: bytes | memoryview, shape: tuple[int, int],
               limits: ImageLimits = ImageLimits()) -> DecodedImage:
    """Packed RGB pixels (``shape`` = (height, width), row after row) as a ``DecodedImage``: a camera frame the
    edge decoded itself (common/inference/messages.py). Trusted in-process bytes, still checked as an image would
    be — sides, pixel count, exact length — so a malformed task is an ``ImageError``, never a reshape crash.
    No copy: the array is a view of ``data`` (read-only as a worker gets it). ``decode_ms`` is this unpacking's
    time (microseconds)."""
    start = time.perf_counter()
    height, width = shape
    check_size(width, height, limits, "frame")
    pixels = np.frombuffer(data, np.uint8)  # its bytes, whatever the view's shape
    if pixels.size != width * height * 3:
        raise CorruptImage(f"the frame is {pixels.size} bytes; {width}×{height} RGB pixels are {width * height * 3}")
    rgb = downscale(pixels.reshape(height, width, 3), limits.infer_max_side)
    return DecodedImage(rgb, "rgb", (time.perf_counter() - start) * 1000, (width, height))


# libjpeg's warnings that mean the entropy-coded data is damaged (JWRN_HIT_MARKER, JWRN_JPEG_EOF, …): the
# decoder would fill the rest with flat blocks. Any other complaint (an odd JFIF version, CMYK) falls back
# to OpenCV, which is lenient.
_CORRUPT_JPEG = ("Corrupt JPEG data", "Premature end of JPEG file", "Bogus", "Invalid")


def reduce_factor(width: int, height: int, min_side: int) -> int:
    """The largest of 8, 4, 2 (else 1) that keeps the shorter side of the decoded image ≥ ``min_side``."""
    if min_side <= 0:
        return 1
    short = min(width, height)
    return next((f for f in (8, 4, 2) if -(-short // f) >= min_side), 1)


def _decode_jpeg(data: bytes, header: ImageHeader, factor: int = 1) -> np.ndarray | None:
    """RGB pixels by libjpeg-turbo in strict mode (no slower than OpenCV's decoder: docs/benchmarks.md "Strict
    JPEG decoding"), CorruptImage on damaged data, None when OpenCV should try instead. ``factor`` > 1
    decodes at 1/factor scale (libjpeg picks the smallest scale M/8 meeting the minimum sides: exactly that)."""
    try:
        scaled = {"min_height": -(-header.height // factor), "min_width": -(-header.width // factor)} if factor > 1 \
            else {}
        rgb: np.ndarray = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True, **scaled)
    except ValueError as exc:
        if str(exc).startswith(_CORRUPT_JPEG):
            raise CorruptImage(f"the JPEG data is corrupt ({str(exc)[:80]})") from None
        return None
    return rgb


def downscale(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """``rgb`` with its longer side at most ``max_side`` (area interpolation, aspect kept, sides ≥ 1)."""
    height, width = rgb.shape[:2]
    longer = max(width, height)
    if longer <= max_side:
        return rgb
    scale = max_side / longer
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip per EXIF orientation (1-8) so the picture is upright."""
    if orientation == 2:
        return cv2.flip(img, 1)
    if orientation == 3:
        return cv2.rotate(img, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(img, 0)
    if orientation == 5:
        return cv2.flip(cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE), 1)
    if orientation == 6:
        return cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.flip(cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE), 1)
    if orientation == 8:
        return cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return img


# Exposure brackets for a second look at a still where no hand was found: gamma 2 darkens (a pale hand
# against an overexposed window gets its contrast back), gamma 0.5 brightens (a backlit, nearly black
# hand). Pixel positions do not change, so landmarks found on a bracket belong to the original image.
EXPOSURE_BRACKETS = (2.0, 0.5)


@functools.cache
def _gamma_lut(gamma: float) -> np.ndarray:
    return np.round(np.linspace(0.0, 1.0, 256) ** gamma * 255).astype(np.uint8)


def with_gamma(rgb: np.ndarray, gamma: float) -> np.ndarray:
    """``rgb`` with every channel value v (0..1) mapped to v ** gamma: > 1 darker, < 1 brighter."""
    return cv2.LUT(rgb, _gamma_lut(gamma))
