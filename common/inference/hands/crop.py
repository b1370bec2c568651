"""Model inputs cut from the image along an ROI, and model outputs projected back onto the image.

MediaPipe's ImageToTensorCalculator (OpenCV path): the ROI's corners (cv::boxPoints of the rotated rect in
pixels) are mapped onto the tensor's corners (cv::getPerspectiveTransform), the image is resampled
bilinearly (cv::warpPerspective) and values are scaled to [0, 1]. The palm detector looks at the whole
image letterboxed into a square (keep_aspect_ratio, border zero); the landmark model at the hand ROI
(already square in pixels; border replicate, the default).

The resampling is done the way the OpenCV inside MediaPipe does it, bit for bit: source coordinates
rounded to 1/32 pixel, 15-bit fixed-point bilinear weights, rounded to uint8 (checked against MediaPipe's
own preprocessing through an identity model: 0 of 110 592 values differ). The opencv-python in this venv
(4.10+) warps with different rounding — one level off in ~6 % of pixels — and the palm detector amplifies
that into ROIs up to 0.4 px and 0.3° away from MediaPipe's. So the maps are computed here and handed to
cv2.remap's fixed-point path (16-bit integer coordinates plus the 1/32 interpolation-table index).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from hgr.common.inference.hands.roi import Roi


def letterbox(width: int, height: int) -> Roi:
    """The square ROI around the whole image that keep_aspect_ratio makes of it (padding on the short side)."""
    side = max(width, height)
    return Roi(0.5, 0.5, side / width, side / height, 0.0)


def crop_matrix(roi: Roi, width: int, height: int, size: int) -> np.ndarray:
    """The 2×3 affine map from image pixels to the ``size``×``size`` tensor's pixels for ``roi``."""
    rect = ((roi.cx * width, roi.cy * height), (roi.w * width, roi.h * height), math.degrees(roi.rotation))
    corners = cv2.boxPoints(rect)  # bottom-left, top-left, top-right, bottom-right of the rotated rect
    dst = np.array([[0, size], [0, 0], [size, 0]], np.float32)
    return cv2.getAffineTransform(corners[:3].astype(np.float32), dst)


INTER_BITS = 5  # OpenCV's INTER_BITS: source coordinates in 1/32 pixel
INTER_TAB_SIZE = 1 << INTER_BITS


def _corners(roi: Roi, width: int, height: int) -> np.ndarray:
    """cv::boxPoints of the ROI in pixels, from float32 values as MediaPipe computes them (GetRoi)."""
    f = np.float32
    centre = (float(f(roi.cx) * f(width)), float(f(roi.cy) * f(height)))
    size = (float(f(roi.w) * f(width)), float(f(roi.h) * f(height)))
    angle = float(f(float(f(roi.rotation) * f(180.0)) / math.pi))  # roi.rotation * 180.f / M_PI
    return np.asarray(cv2.boxPoints((centre, size, angle)), np.float32)


def _matrix(roi: Roi, width: int, height: int, size: int) -> np.ndarray:
    """The inverse map (tensor pixel → image pixel) cv::warpPerspective uses, from the float32 corners."""
    dst = np.array([[0, size], [0, 0], [size, 0], [size, size]], np.float32)
    return np.asarray(cv2.invert(cv2.getPerspectiveTransform(_corners(roi, width, height), dst))[1])


class Cropper:
    """Model inputs of one size, cut as MediaPipe cuts them, into buffers reused from call to call.

    Fresh 224×224 float64 maps on every call cost ~550 page faults (≈ 1 ms) on their own; reused buffers
    make the exact resampling cost about what cv2.warpAffine does. Not thread-safe (one per model, per
    pipeline); a returned tensor is valid until the next call.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._axis = np.arange(size, dtype=np.float64)
        self._row, self._col = np.empty(size), np.empty(size)
        self._scale, self._fx, self._fy = (np.empty((size, size)) for _ in range(3))
        self._x, self._y, self._bits = (np.empty((size, size), np.int32) for _ in range(3))
        self._coords = np.empty((size, size, 2), np.int16)
        self._table = np.empty((size, size), np.uint16)
        self._pixels = np.empty((size, size, 3), np.uint8)
        self._tensor = np.empty((1, size, size, 3), np.float32)
        # The ROI and image size the maps were last made for: the palm detector's letterbox is the same ROI on
        # every frame of a stream's size, so its maps are made once instead of on every detector run.
        self._key: tuple[Roi, int, int] | None = None

    def _sum(self, m: np.ndarray, i: int, out: np.ndarray) -> float:
        """out = m[i,0]·u + m[i,1]·v + m[i,2] over the tensor's pixels; returns a bound of |out|."""
        np.multiply(m[i, 0], self._axis, out=self._row)
        np.multiply(m[i, 1], self._axis, out=self._col)
        self._col += m[i, 2]
        np.add(self._row[None, :], self._col[:, None], out=out)
        return float(np.abs(self._row).max() + np.abs(self._col).max())

    def maps(self, roi: Roi, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """cv2.remap's fixed-point maps: (size, size, 2) int16 pixel coordinates and (size, size) uint16
        interpolation-table indices, as cv::warpPerspective computes them (coordinates rounded to 1/32).

        The matrix comes from float32 corners, so it has a tiny perspective part (~1e-10); it is kept,
        because MediaPipe's warp keeps it too.
        """
        key = (roi, width, height)
        if key == self._key:
            return self._coords, self._table
        self._key = None  # the buffers are being rewritten
        m = _matrix(roi, width, height, self.size)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            self._sum(m, 2, self._scale)
            np.divide(INTER_TAB_SIZE, self._scale, out=self._scale)
            bound = max(self._sum(m, 0, self._fx), self._sum(m, 1, self._fy)) * float(np.abs(self._scale).max())
            self._fx *= self._scale
            self._fy *= self._scale
        if not bound < 2.0**20:  # beyond ±32 768 pixels (or not finite): clamp as OpenCV's saturate_casts do
            for f in (self._fx, self._fy):
                np.nan_to_num(f, copy=False, nan=0.0)
                np.clip(f, -(2.0**20), 2.0**20, out=f)
        for f, i, part in ((self._fx, self._x, 0), (self._fy, self._y, 1)):
            np.rint(f, out=f)
            np.copyto(i, f, casting="unsafe")
            np.right_shift(i, INTER_BITS, out=self._bits)
            np.copyto(self._coords[..., part], self._bits, casting="unsafe")
        np.bitwise_and(self._y, INTER_TAB_SIZE - 1, out=self._bits)
        np.left_shift(self._bits, INTER_BITS, out=self._bits)
        np.bitwise_and(self._x, INTER_TAB_SIZE - 1, out=self._x)
        np.bitwise_or(self._bits, self._x, out=self._bits)
        np.copyto(self._table, self._bits, casting="unsafe")
        self._key = key
        return self._coords, self._table

    def __call__(self, rgb: np.ndarray, roi: Roi, *, zero_border: bool) -> np.ndarray:
        """The model input for ``roi``: (1, size, size, 3) float32 in [0, 1]."""
        height, width = rgb.shape[:2]
        coords, table = self.maps(roi, width, height)
        border = cv2.BORDER_CONSTANT if zero_border else cv2.BORDER_REPLICATE
        cv2.remap(rgb, coords, table, cv2.INTER_LINEAR, dst=self._pixels, borderMode=border, borderValue=(0, 0, 0))
        np.multiply(self._pixels, np.float32(1.0 / 255.0), out=self._tensor[0], casting="unsafe")
        return self._tensor


def crop(rgb: np.ndarray, roi: Roi, size: int, *, zero_border: bool) -> np.ndarray:
    """The model input for ``roi``: (1, size, size, 3) float32 in [0, 1] (a fresh array; see ``Cropper``)."""
    return Cropper(size)(rgb, roi, zero_border=zero_border)


def project(points: np.ndarray, roi: Roi) -> np.ndarray:
    """LandmarkProjectionCalculator: (n, 2+) points normalised to the crop → normalised to the image.

    A third column (depth, in crop widths) is scaled like x, by the ROI's width.
    """
    c, s = math.cos(roi.rotation), math.sin(roi.rotation)
    x = points[:, 0] - 0.5
    y = points[:, 1] - 0.5
    out = np.array(points, np.float32, copy=True)
    out[:, 0] = (c * x - s * y) * roi.w + roi.cx
    out[:, 1] = (s * x + c * y) * roi.h + roi.cy
    if points.shape[1] > 2:
        out[:, 2] = points[:, 2] * roi.w
    return out


def rotate_world(points: np.ndarray, rotation: float) -> np.ndarray:
    """WorldLandmarkProjectionCalculator: world landmarks (metres) turned by the ROI's rotation in x-y."""
    c, s = math.cos(rotation), math.sin(rotation)
    out = np.array(points, np.float32, copy=True)
    out[:, 0] = c * points[:, 0] - s * points[:, 1]
    out[:, 1] = s * points[:, 0] + c * points[:, 1]
    return out
