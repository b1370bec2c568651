"""The start-up check of a lower precision: the same finger counts as fp32 on the shipped check photos, or fp32.

Issue 24's rule: a worker asked for anything but the reference (LiteRT fp32) runs the photos of
``check_photos/`` (one for each count 0–5) through both and keeps the faster path only if every photo gets the
same counts, hand by hand; otherwise it runs fp32 and says so (``Checked.fallback``: the worker's log, its
``Ready`` message, or ``VariantReady`` for a model variant made after start-up on its first frame, ``/status``
and ``hgr_inference_fallback_workers``). The photos are decoded as a still is and run as a still (palm detector →
landmarks, no exposure retry), in a few hundred milliseconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hgr.common.inference.hands.pipeline import HandPipeline
from hgr.common.inference.hands.runtime import REFERENCE, Choice
from hgr.common.inference.images import ImageLimits, decode_image
from hgr.common.inference.results import hand_to_dict, sort_hands

log = logging.getLogger("hgr.inference")

CHECK_PHOTOS = Path(__file__).with_name("check_photos")
MAX_HANDS = 2


@dataclass(frozen=True)
class Checked:
    pipeline: HandPipeline  # what serves: the asked-for choice if it passed, else the reference
    asked: Choice
    fallback: str = ""  # why the reference serves instead of ``asked`` ("" when it does not)


def check_images(folder: Path = CHECK_PHOTOS) -> list[tuple[str, np.ndarray]]:
    """(name, RGB) of the check photos, decoded as the service decodes a still."""
    return [(p.name, decode_image(p.read_bytes(), ImageLimits()).rgb) for p in sorted(folder.glob("*.jpg"))]


def counts(pipe: HandPipeline, rgb: np.ndarray, min_presence: float) -> list[int]:
    """Each hand's finger count, left to right, as a still's answer gives them."""
    hands = pipe.detect(rgb, MAX_HANDS, min_presence)
    return [h["fingers"] for h in sort_hands([hand_to_dict(h.landmarks, h.world_landmarks, h.handedness,
                                                           h.handedness_score, True) for h in hands])]


def disagreements(candidate: HandPipeline, reference: HandPipeline, images: Sequence[tuple[str, np.ndarray]],
                  min_presence: float) -> list[str]:
    """The photos on which ``candidate`` counts other than ``reference``, with both answers."""
    out = []
    for name, rgb in images:
        ours, theirs = counts(candidate, rgb, min_presence), counts(reference, rgb, min_presence)
        if ours != theirs:
            out.append(f"{name}: {ours} (fp32: {theirs})")
    return out


def checked_pipeline(make: Callable[[Choice], HandPipeline], asked: Choice, min_presence: float,
                     images: Sequence[tuple[str, np.ndarray]] | None = None) -> Checked:
    """``make(asked)`` if it counts as the reference does on the check photos, else ``make(REFERENCE)``."""
    if asked == REFERENCE:
        return Checked(make(REFERENCE), asked)
    reference = make(REFERENCE)
    try:
        candidate = make(asked)
    except Exception as exc:  # noqa: BLE001 - any failure of the faster path leaves the reference serving
        return _refused(reference, asked, f"{asked.name} could not be loaded: {exc}")
    differ = disagreements(candidate, reference, check_images() if images is None else images, min_presence)
    if not differ:
        reference.close()
        return Checked(candidate, asked)
    candidate.close()
    return _refused(reference, asked, f"{asked.name} counted differently from fp32 on {len(differ)} check "
                                      f"photo(s): {'; '.join(differ)}")


def _refused(reference: HandPipeline, asked: Choice, reason: str) -> Checked:
    log.error("inference falls back to %s: %s", REFERENCE.name, reason)
    return Checked(reference, asked, reason)
