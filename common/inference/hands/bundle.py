"""Open a MediaPipe hand-landmarker bundle (.task, a zip) and load its two models with LiteRT."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from ai_edge_litert.interpreter import Interpreter

PALM_MODEL = "hand_detector.tflite"
LANDMARK_MODEL = "hand_landmarks_detector.tflite"


@dataclass(frozen=True)
class Models:
    palm: Interpreter  # 1×192×192×3 float [0, 1] → boxes 1×2016×18, scores 1×2016×1
    landmark: Interpreter  # 1×224×224×3 float [0, 1] → landmarks 63, presence 1, handedness 1, world 63


def read_models(bundle: str | Path) -> tuple[bytes, bytes]:
    """The palm and landmark model files of ``bundle``; ValueError if it is not a hand-landmarker bundle."""
    try:
        with zipfile.ZipFile(bundle) as z:
            names = set(z.namelist())
            missing = {PALM_MODEL, LANDMARK_MODEL} - names
            if missing:
                raise ValueError(f"{bundle}: not a hand landmarker bundle (missing {', '.join(sorted(missing))})")
            return z.read(PALM_MODEL), z.read(LANDMARK_MODEL)
    except zipfile.BadZipFile as e:
        raise ValueError(f"{bundle}: not a model bundle ({e})") from e


def load_models(bundle: str | Path, threads: int = 1) -> Models:
    palm, landmark = read_models(bundle)
    models = Models(Interpreter(model_content=palm, num_threads=threads),
                    Interpreter(model_content=landmark, num_threads=threads))
    models.palm.allocate_tensors()
    models.landmark.allocate_tensors()
    return models
