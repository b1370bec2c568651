"""What the strict JPEG check costs. Prints JSON.

    python -m research.decode [--duration 10] [--photos DIR]

``common.inference.images`` decodes JPEG with libjpeg-turbo in strict mode (simplejpeg), which refuses data damaged in
the middle (a file cut short and given a new ``FFD9`` end marker) that OpenCV's decoder silently fills with
grey. This decodes the labelled photos (``--photos``, as sent: full size) both ways, alternating
rounds for about ``--duration`` seconds, and reports milliseconds per image and the ratio strict / OpenCV
(the same photos, the same process, the same minute). It also checks that the strict path refuses the
forged files the other one accepts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hgr.common.errors import CorruptImage
from hgr.common.inference.images import decode_image
from hgr.loadtest.rest import load_photos
from research.paths import DEFAULT_PHOTOS


def _opencv(data: bytes) -> Any:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)


def _round(photos: list[bytes], decode: Any) -> float:
    start = time.perf_counter()
    for data in photos:
        decode(data)
    return (time.perf_counter() - start) * 1000 / len(photos)


def measure(photos: list[bytes], duration: float) -> dict[str, Any]:
    for data in photos[:3]:  # warm both decoders
        _opencv(data)
        decode_image(data)
    opencv_ms: list[float] = []
    strict_ms: list[float] = []
    end = time.perf_counter() + max(2.0, duration)
    while time.perf_counter() < end:
        opencv_ms.append(_round(photos, _opencv))
        strict_ms.append(_round(photos, decode_image))  # header checks + strict decode, as served
    forged = [data[: len(data) // 2] + b"\xff\xd9" for data in photos]
    refused = 0
    for data in forged:
        try:
            decode_image(data)
        except CorruptImage:
            refused += 1
    opencv, strict = min(opencv_ms), min(strict_ms)  # the least disturbed round of each (shared machines)
    print(f"decode: OpenCV {opencv:.2f} ms, strict {strict:.2f} ms per photo; {refused}/{len(forged)} forged refused",
          file=sys.stderr)
    return {"photos": len(photos), "rounds": len(strict_ms), "opencv_ms_per_image": round(opencv, 3),
            "strict_ms_per_image": round(strict, 3), "ratio_strict_to_opencv": round(strict / opencv, 3),
            "forged_refused": refused, "forged": len(forged),
            "forged_opencv_decoded": sum(_opencv(data) is not None for data in forged)}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m research.decode", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help="seconds of alternating rounds (default 10)")
    p.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="folder of JPEG photos")
    args = p.parse_args(argv)
    print(json.dumps(measure(load_photos(args.photos), args.duration), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
