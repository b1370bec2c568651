"""``common.inference.engine.Detector`` with the real model: the engine each ``STREAM_PIPELINE`` selects, one
result shape from both, and MediaPipe kept out of the serving processes on the default path.

How close the two engines' answers are is tests/test_engine_parity.py; the exposure retry's worth is
tests/test_accuracy.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hgr.common.config import load_settings
from hgr.common.contracts import DetectionResult
from hgr.common.errors import CorruptImage, EmptyImage
from hgr.common.inference.engine import Detector
from hgr.common.inference.images import decode_image
from hgr.loadtest.clips import SAMPLE_PHOTOS

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = SAMPLE_PHOTOS  # the 36 labelled photos the package ships
HAND = PHOTOS / "p_0001.jpg"  # one open hand, found at once by both engines
ENGINES = ("litert", "mediapipe")


def _detector(model_path: str, engine: str, **settings: Any) -> Detector:
    return Detector(load_settings({}, env_file=None, model_path=model_path, stream_pipeline=engine, **settings),
                    {"full": model_path})


@pytest.fixture(scope="module", params=ENGINES)
def detector(request: pytest.FixtureRequest, model_path: str) -> Iterator[Detector]:
    d = _detector(model_path, request.param)
    yield d
    d.close()


def _jpeg(rgb: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def _shape(result: DetectionResult) -> tuple[Any, ...]:
    """Every key, at every level, with the type of its value."""
    hands = tuple(sorted((k, type(v).__name__) for h in result["hands"] for k, v in h.items()))
    return (tuple(sorted(result)), tuple(sorted(result["timing"])), hands,
            tuple(type(v).__name__ for h in result["hands"] for v in h["fingers_up"].values()))


def test_each_setting_selects_its_engine(detector: Detector) -> None:
    litert = detector.settings.stream_pipeline == "litert"
    assert (detector.streams is not None) == litert
    frame = detector.detect_bytes(HAND.read_bytes(), stream="s")
    # A litert stream frame says what ran (tracking scheduler); a Tasks VIDEO frame does not.
    assert ("detector" in frame["timing"]) == litert
    assert len(frame["hands"]) == 1
    detector.close_stream("s")
    detector.close_stream("s")  # closing twice, or a stream never seen, is nothing


def test_a_cameras_pixels_get_the_answer_their_jpeg_decodes_to(detector: Detector) -> None:
    """A frame the edge decoded reaches the worker as packed RGB pixels (``rgb_shape``): run as they are, the
    pixels a JPEG decodes to get that JPEG's answer, from either engine; malformed pixels are an image error."""
    reduce = detector.settings.reduced_decode_min_side if detector.streams is not None else 0  # as each decodes
    for i, photo in enumerate(sorted(PHOTOS.glob("*.jpg"))[:6]):
        data = photo.read_bytes()
        rgb = decode_image(data, detector.limits, reduce_min_side=reduce).rgb
        jpeg = detector.detect_bytes(data, stream=f"jpeg-{i}")
        pixels = detector.detect_bytes(rgb.tobytes(), stream=f"rgb-{i}", rgb_shape=(rgb.shape[0], rgb.shape[1]))
        assert pixels["hands"] == jpeg["hands"] and pixels["total_fingers"] == jpeg["total_fingers"], photo.name
        assert pixels["image_size"] == jpeg["image_size"] and _shape(pixels) == _shape(jpeg)
        detector.close_stream(f"jpeg-{i}")
        detector.close_stream(f"rgb-{i}")
    with pytest.raises(CorruptImage):
        detector.detect_bytes(bytes(10), stream="bad", rgb_shape=(4, 4))
    with pytest.raises(EmptyImage):
        detector.detect_bytes(b"", stream="bad", rgb_shape=(0, 4))
    detector.close_stream("bad")


def test_a_still_has_the_same_shape_from_both_engines(model_path: str) -> None:
    """The worker, the cache and every client see one result shape, whichever engine answered."""
    hand = HAND.read_bytes()
    blank = _jpeg(np.full((240, 320, 3), 128, np.uint8))
    results: dict[str, list[DetectionResult]] = {}
    for engine in ENGINES:
        # fp32: the bound below is the engines' own (the same models, the same crop); what bf16 moves, where a
        # CPU's `auto` picks it, is held to the bars in tests/test_engine_parity.py
        d = _detector(model_path, engine, inference_precision="fp32")
        try:
            results[engine] = [d.detect_bytes(hand), d.detect_bytes(blank)]
        finally:
            d.close()
    ours, ref = results["litert"], results["mediapipe"]
    assert [_shape(r) for r in ours] == [_shape(r) for r in ref]
    assert set(ours[0]["timing"]) == {"decode_ms", "infer_ms", "total_ms"}  # a still: no stream fields
    assert ours[1]["hands"] == [] and "retry" not in ours[1]
    for a, b in zip(ours[0]["hands"], ref[0]["hands"], strict=True):
        assert (a["handedness"], a["fingers"], a["fingers_up"], a["gesture"]) == \
            (b["handedness"], b["fingers"], b["fingers_up"], b["gesture"])
        assert np.abs(np.array(a["landmarks"]) - np.array(b["landmarks"])).max() < 0.002
        assert abs(a["score"] - b["score"]) < 0.01


def test_the_exposure_retry_runs_on_the_litert_stills(model_path: str) -> None:
    """A pale hand against an overexposed window (a shipped photo) is found only on the darker bracket, and
    the result says so; without the retry it has no hand."""
    photo = (PHOTOS / "p_0021.jpg").read_bytes()
    plain = _detector(model_path, "litert", exposure_retry=False)
    retried = _detector(model_path, "litert")
    try:
        assert plain.detect_bytes(photo)["hands"] == []
        result = retried.detect_bytes(photo)
        assert result["hands"] and result["retry"] == "darker", result
    finally:
        plain.close()
        retried.close()


def test_stills_keep_hands_by_presence_not_the_tracking_threshold(model_path: str) -> None:
    """One pipeline serves stills and streams; a still takes Tasks' IMAGE threshold (MIN_HAND_PRESENCE_CONFIDENCE),
    a stream's track the stricter of it and MIN_TRACKING_CONFIDENCE."""
    d = _detector(model_path, "litert", min_tracking_confidence=1.0)  # no track can pass 1.0
    try:
        assert d.detect_bytes(HAND.read_bytes())["hands"]
        assert d.detect_bytes(HAND.read_bytes(), stream="s")["hands"] == []
    finally:
        d.close()


PROBE = textwrap.dedent("""
    import asyncio, json, sys
    from pathlib import Path

    import hgr.allinone  # noqa: F401 - the serving app (hub and edge routes), as `hgr up` imports it
    from hgr.common.config import load_settings
    from hgr.common.inference.pool import InferencePool
    from hgr.common.options import DetectOptions

    engine, model, photo = sys.argv[1:4]

    def loaded() -> bool:
        return any(m == "mediapipe" or m.startswith("mediapipe.") for m in sys.modules)

    async def main() -> dict:
        settings = load_settings({}, env_file=None, model_path=model, stream_pipeline=engine, workers=1)
        pool = InferencePool(settings, {"full": model}, service="hub", workers=1)
        await pool.start()
        try:
            data, opts = Path(photo).read_bytes(), DetectOptions(num_hands=2, model="full")
            still = await pool.submit(data, opts)
            frame = await pool.submit(data, opts, stream="probe")
            maps = Path(f"/proc/{pool.stats()['pids'][0]}/maps").read_text()
        finally:
            await pool.close()
        return {"hands": [len(still["hands"]), len(frame["hands"])], "server": loaded(),
                # importing mediapipe maps matplotlib's extensions; using its Tasks maps libmediapipe.so
                "worker": "/mediapipe/" in maps or "/matplotlib/" in maps}

    out = asyncio.run(main())
    # `hgr detect` (and the benches' raw engine) run the Detector in their own process:
    from hgr.common.inference.engine import Detector
    d = Detector(load_settings({}, env_file=None, model_path=model, stream_pipeline=engine), {"full": model})
    d.detect_bytes(Path(photo).read_bytes())
    d.close()
    out["detect"] = loaded()
    print(json.dumps(out))
""")


@pytest.mark.parametrize("engine", ENGINES)
def test_mediapipe_is_loaded_only_on_the_fallback(model_path: str, engine: str) -> None:
    """The serving process, its inference worker (which has answered a still and a stream frame) and a
    process running ``hgr detect``'s Detector load no MediaPipe by default; the fallback does (the probe's
    control: it would see MediaPipe if it were there)."""
    proc = subprocess.run([sys.executable, "-c", PROBE, engine, model_path, str(HAND)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["hands"] == [1, 1]
    fallback = engine == "mediapipe"
    assert out == {"hands": [1, 1], "server": False, "worker": fallback, "detect": fallback}
