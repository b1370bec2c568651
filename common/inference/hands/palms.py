"""Palm detector output → palms: SSD anchors, box decoding and weighted non-maximum suppression. Pure numpy.

Constants are MediaPipe Tasks' (hand_detector_graph.cc: SsdAnchorsCalculator, TensorsToDetectionsCalculator
and NonMaxSuppressionCalculator options). Coordinates here are normalised to the detector's 192×192 input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

INPUT_SIZE = 192
STRIDES = (8, 16, 16, 16)  # SsdAnchorsCalculator: num_layers 4
MIN_SCALE, MAX_SCALE = 0.1484375, 0.75
ANCHOR_OFFSET = 0.5
NUM_BOXES, NUM_COORDS, NUM_KEYPOINTS = 2016, 18, 7
SCORE_CLIP = 100.0  # score_clipping_thresh
NMS_IOU = 0.3  # min_suppression_threshold, overlap INTERSECTION_OVER_UNION, algorithm WEIGHTED


@dataclass(frozen=True)
class Palm:
    score: float
    box: np.ndarray  # (4,) xmin, ymin, xmax, ymax
    keypoints: np.ndarray  # (7, 2) x, y; 0 is the wrist, 2 the middle finger's MCP


@cache
def ssd_anchors() -> np.ndarray:
    """The 2016 anchor centres (x, y), in the order the model emits its boxes.

    SsdAnchorsCalculator with fixed_anchor_size (every anchor is 1×1, so only centres matter), aspect ratio
    1.0 plus the interpolated-scale anchor: 2 anchors per cell for each layer of a stride, layers of equal
    stride merged into one feature map (24×24×2 + 12×12×6).
    """
    centres: list[np.ndarray] = []
    layer = 0
    while layer < len(STRIDES):
        stride = STRIDES[layer]
        per_cell = 0
        while layer < len(STRIDES) and STRIDES[layer] == stride:
            per_cell += 2  # aspect ratio 1.0 and the interpolated scale (aspect 1.0)
            layer += 1
        side = math.ceil(INPUT_SIZE / stride)
        ys, xs = np.mgrid[0:side, 0:side]
        cell = np.stack([(xs + ANCHOR_OFFSET) / side, (ys + ANCHOR_OFFSET) / side], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(cell, per_cell, axis=1).reshape(-1, 2))
    anchors = np.concatenate(centres).astype(np.float32)
    anchors.setflags(write=False)
    return anchors


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, min_score: float) -> list[Palm]:
    """TensorsToDetectionsCalculator: raw (2016, 18) boxes and (2016,) logits → palms with score ≥ ``min_score``.

    reverse_output_order: each box is (x_centre, y_centre, w, h) then 7 keypoints (x, y), offsets from the
    anchor in input pixels (x/y/w/h scale 192).
    """
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.reshape(-1), -SCORE_CLIP, SCORE_CLIP)))
    keep = np.flatnonzero(scores >= min_score)
    if keep.size == 0:
        return []
    anchors = ssd_anchors()[keep]
    raw = raw_boxes.reshape(NUM_BOXES, NUM_COORDS)[keep] / INPUT_SIZE
    centre = raw[:, :2] + anchors
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = raw[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) + anchors[:, None, :]
    return [Palm(float(scores[i]), boxes[n], keypoints[n]) for n, i in enumerate(keep)]


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.asarray(np.prod(np.clip(boxes[..., 2:] - boxes[..., :2], 0, None), axis=-1))


def _ious(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    union = _area(box) + _area(boxes) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(palms: list[Palm]) -> list[Palm]:
    """NonMaxSuppressionCalculator, WEIGHTED: each cluster (IoU > 0.3 with its best palm) becomes one palm
    whose box and keypoints are the score-weighted mean of the cluster, with the best palm's score. Best first.
    """
    order = sorted(range(len(palms)), key=lambda i: -palms[i].score)
    remaining = [palms[i] for i in order]
    out: list[Palm] = []
    while remaining:
        best = remaining[0]
        boxes = np.stack([p.box for p in remaining])
        overlap = _ious(best.box, boxes) > NMS_IOU
        cluster = [p for p, o in zip(remaining, overlap, strict=True) if o]
        if cluster:
            w = np.array([p.score for p in cluster], np.float32)[:, None]
            box = (np.stack([p.box for p in cluster]) * w).sum(axis=0) / w.sum()
            kps = (np.stack([p.keypoints for p in cluster]) * w[:, :, None]).sum(axis=0) / w.sum()
            best = Palm(best.score, box, kps)
        out.append(best)
        rest = [p for p, o in zip(remaining, overlap, strict=True) if not o]
        if len(rest) == len(remaining):  # MediaPipe's guard against a box that overlaps nothing, not even itself
            break
        remaining = rest
    return out
