"""Build the fake-camera video for the browser test: real hand photos, letterboxed, as a Y4M file.

Chromium's ``--use-file-for-fake-video-capture`` plays a ``.y4m`` (raw I420) or ``.mjpeg`` file in a
loop as if it were a webcam. Y4M is the format every Chromium build reads, and writing it needs
only OpenCV's colour conversion, no ffmpeg.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT = 640, 480


def letterbox(image: np.ndarray, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Scale to fit inside width×height keeping the aspect ratio; pad the rest with black."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    x0, y0 = (width - new_w) // 2, (height - new_h) // 2
    canvas[y0:y0 + new_h, x0:x0 + new_w] = resized
    return canvas


def load_letterboxed(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    return letterbox(image)


def write_y4m(frames: Iterable[np.ndarray], path: Path, fps: int) -> int:
    """Write BGR frames (all WIDTH×HEIGHT) as 4:2:0 Y4M; return the number of frames written."""
    count = 0
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            if frame.shape != (HEIGHT, WIDTH, 3):
                raise ValueError(f"frame is {frame.shape}, expected {(HEIGHT, WIDTH, 3)}")
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
            count += 1
    return count


def build_fake_camera(photos: Sequence[Path], path: Path, *, seconds_each: float = 4.0, fps: int = 10) -> Path:
    """A Y4M clip showing each photo (letterboxed to 640×480) for ``seconds_each`` seconds in turn."""
    per_photo = max(1, round(seconds_each * fps))
    stills = [load_letterboxed(p) for p in photos]
    write_y4m((still for still in stills for _ in range(per_photo)), path, fps)
    return path
