"""The still engine against its reference, photo by photo: LiteRT (``STREAM_PIPELINE=litert``, the default)
and MediaPipe Tasks IMAGE mode (``STREAM_PIPELINE=mediapipe``), both through ``Detector.detect_bytes``
(decode, exposure retry, result) with ``num_hands=2`` and the settings of ``load_settings()``.

    python -m research.engine_parity                          # ../shared/data/hands
    python -m research.engine_parity --folder loadtest/hands --json

Figures, with the bars of a precision change applied to the engine switch (tests/test_engine_parity.py
asserts them on every shipped photo; docs/accuracy.md "The engine" has a run):

- ``detected``: photos with a hand, per engine (ours within one photo of the reference);
- ``same_hands``: photos where both find as many hands;
- ``same_count``: photos with the same ``total_fingers`` (≥ 99 %);
- ``correct``: photos counted right (the scored hand against the label, as research/accuracy.py scores),
  per engine (ours ≥ the reference's minus one);
- ``landmark_gap``: per hand of the reference, the median over its 21 landmarks of the distance to our
  nearest hand's, as a fraction of the hand's size (the longer side of the reference's landmark box, in
  pixels); the median and the worst over hands (median ≤ 0.5 %: the landmark model's crop is about twice
  the hand, so this is stricter than "0.5 % of the crop");
- ``same_handedness``, ``same_retry``: matched hands with the same label; photos with the same ``retry``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from research.accuracy import detect_all, evaluate, load_photos
from research.paths import DEFAULT_PHOTOS

Record = dict[str, Any]


def hand_size(hand: dict[str, Any], width: int, height: int) -> float:
    """The longer side of the hand's landmark box, in pixels."""
    xs = [p[0] * width for p in hand["landmarks"]]
    ys = [p[1] * height for p in hand["landmarks"]]
    return float(max(max(xs) - min(xs), max(ys) - min(ys), 1.0))


def gap(ours: dict[str, Any], ref: dict[str, Any], width: int, height: int) -> float:
    """Median landmark distance between two hands (pixels), as a fraction of the reference hand's size."""
    d = sorted(math.hypot((a[0] - b[0]) * width, (a[1] - b[1]) * height)
               for a, b in zip(ours["landmarks"], ref["landmarks"], strict=True))
    return d[len(d) // 2] / hand_size(ref, width, height)


def _median(values: Sequence[float]) -> float | None:
    s = sorted(values)
    return None if not s else (s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2)


def compare(ours: Sequence[Record], ref: Sequence[Record]) -> dict[str, Any]:
    """The figures above for two runs over the same photos (``detect_all`` records, same order)."""
    assert [r["file"] for r in ours] == [r["file"] for r in ref]
    gaps: list[tuple[float, str]] = []
    handed = matched = 0
    differ: dict[str, list[str]] = {"hands": [], "count": [], "retry": []}
    for o, r in zip(ours, ref, strict=True):
        width, height = r["image_size"]
        if len(o["hands"]) != len(r["hands"]):
            differ["hands"].append(r["file"])
        if sum(h["fingers"] for h in o["hands"]) != sum(h["fingers"] for h in r["hands"]):
            differ["count"].append(r["file"])
        if o["retry"] != r["retry"]:
            differ["retry"].append(r["file"])
        for hand in r["hands"]:
            if not o["hands"]:
                continue
            nearest = min(o["hands"], key=lambda h: gap(h, hand, width, height))
            gaps.append((gap(nearest, hand, width, height), r["file"]))
            matched += 1
            handed += nearest["handedness"] == hand["handedness"]
    n = len(ref)
    scored_ours, scored_ref = (evaluate(rs, lambda h: int(h["fingers"]))["overall"] for rs in (ours, ref))
    worst = max(gaps, default=(0.0, ""))
    return {
        "photos": n,
        "detected": {"ours": scored_ours["detected"], "reference": scored_ref["detected"]},
        "same_hands": n - len(differ["hands"]),
        "same_count": n - len(differ["count"]),
        "correct": {"ours": scored_ours["correct"], "reference": scored_ref["correct"]},
        "landmark_gap": {"hands": len(gaps), "median": _median([g for g, _ in gaps]), "worst": worst[0],
                         "worst_file": worst[1]},
        "same_handedness": {"agree": handed, "hands": matched},
        "same_retry": n - len(differ["retry"]),
        "differ": differ,
    }


def run(folder: Path) -> dict[str, Any]:
    photos = load_photos(folder)
    return compare(detect_all(folder, photos, engine="litert"), detect_all(folder, photos, engine="mediapipe"))


def render(report: dict[str, Any]) -> str:
    n, g = report["photos"], report["landmark_gap"]
    return (f"{n} photos: detected {report['detected']['ours']} (reference {report['detected']['reference']}), "
            f"same hands {report['same_hands']}/{n}, same count {report['same_count']}/{n}, "
            f"counted right {report['correct']['ours']} (reference {report['correct']['reference']}), "
            f"landmark gap median {100 * (g['median'] or 0):.4f} % / worst {100 * g['worst']:.4f} % of the hand "
            f"({g['hands']} hands), handedness {report['same_handedness']['agree']}/"
            f"{report['same_handedness']['hands']}, same retry {report['same_retry']}/{n}; "
            f"differ: {report['differ']}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.engine_parity", description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_PHOTOS, help="photos with labels.csv")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report = run(args.folder)
    sys.stdout.write(json.dumps(report, indent=1) + "\n" if args.json else render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
