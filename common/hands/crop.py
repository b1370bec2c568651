"""Model inputs cut from the image along an ROI, and model outputs projected back onto the image.

MediaPipe's ImageToTensorCalculator (OpenCV path): the ROI's corners (cv::boxPoints of the rotated rect in
pixels) are mapped onto the tensor's corners, the image is resampled bilinearly, and values are scaled to
[0, 1]. The palm detector looks at the whole image letterboxed into a square (keep_aspect_ratio, border
zero); the landmark model at the hand ROI (already square in pixels; border replicate, the default).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from hgr.common.hands.roi import Roi


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


def crop(rgb: np.ndarray, roi: Roi, size: int, *, zero_border: bool) -> np.ndarray:
    """The model input for ``roi``: (1, size, size, 3) float32 in [0, 1]."""
    height, width = rgb.shape[:2]
    border = cv2.BORDER_CONSTANT if zero_border else cv2.BORDER_REPLICATE
    out = cv2.warpAffine(rgb, crop_matrix(roi, width, height, size), (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=border, borderValue=(0, 0, 0))
    tensor = out.astype(np.float32)
    tensor *= 1.0 / 255.0
    return tensor[None]


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
