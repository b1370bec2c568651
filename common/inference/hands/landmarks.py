"""The landmark model: one run on a 224×224 hand crop, and what its four outputs mean.

hand_landmarks_detector_graph.cc splits the outputs in model order: screen landmarks (21 × x, y, z in crop
pixels), hand presence (a probability, no activation applied), handedness (a probability; MediaPipe Tasks
0.10.x reports a hand as "Left" with score 1 - p, "Right" with score p, checked against it on the labelled
photos) and world landmarks (21 × x, y, z in metres, the crop's orientation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hgr.common.inference.hands.bundle import ModelRunner

INPUT_SIZE = 224
NUM_LANDMARKS = 21
NORMALIZE_Z = 0.4  # kLandmarksNormalizeZ: z is divided by the input width and by this


@dataclass(frozen=True)
class LandmarkOutput:
    landmarks: np.ndarray  # (21, 3) normalised to the crop; z in crop widths / NORMALIZE_Z
    world: np.ndarray  # (21, 3) metres, not yet rotated into the image
    presence: float
    right: float  # probability the hand is what MediaPipe Tasks labels "Right"


class LandmarkModel:
    """The model (a LiteRT interpreter or an OpenVINO one, ``bundle.ModelRunner``) and its tensor indices,
    resolved once."""

    def __init__(self, interpreter: ModelRunner) -> None:
        self._interpreter = interpreter
        self._input = int(interpreter.get_input_details()[0]["index"])
        self._outputs = [int(d["index"]) for d in interpreter.get_output_details()]
        if len(self._outputs) != 4:
            raise ValueError(f"landmark model has {len(self._outputs)} outputs, expected 4")

    def run(self, tensor: np.ndarray) -> LandmarkOutput:
        it = self._interpreter
        it.set_tensor(self._input, tensor)
        it.invoke()
        screen, presence, handedness, world = (it.get_tensor(i) for i in self._outputs)
        landmarks = screen.reshape(NUM_LANDMARKS, 3).astype(np.float32, copy=True)
        landmarks[:, :2] /= INPUT_SIZE
        landmarks[:, 2] /= INPUT_SIZE * NORMALIZE_Z
        return LandmarkOutput(landmarks, world.reshape(NUM_LANDMARKS, 3).astype(np.float32, copy=True),
                              float(presence.reshape(-1)[0]), float(handedness.reshape(-1)[0]))


def handedness(right: float) -> tuple[str, float]:
    """TensorsToClassificationCalculator, binary, top 1: the label and its score."""
    return ("Right", right) if right > 1.0 - right else ("Left", 1.0 - right)
