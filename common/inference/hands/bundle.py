"""Open a MediaPipe hand-landmarker bundle (.task, a zip) and load its two models with the chosen runtime."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from hgr.common.inference.hands.runtime import REFERENCE, Choice

PALM_MODEL = "hand_detector.tflite"
LANDMARK_MODEL = "hand_landmarks_detector.tflite"


class ModelRunner(Protocol):
    """What the pipeline calls on a model: LiteRT's ``Interpreter``, or ``openvino_models.OpenVinoModel``."""

    def get_input_details(self) -> list[dict[str, Any]]: ...
    def get_output_details(self) -> list[dict[str, Any]]: ...
    def set_tensor(self, tensor_index: int, value: np.ndarray, /) -> None: ...
    def invoke(self) -> None: ...
    def get_tensor(self, tensor_index: int, /) -> np.ndarray: ...


@dataclass(frozen=True)
class Models:
    palm: ModelRunner  # 1×192×192×3 float [0, 1] → boxes 1×2016×18, scores 1×2016×1
    landmark: ModelRunner  # 1×224×224×3 float [0, 1] → landmarks 63, presence 1, handedness 1, world 63
    choice: Choice = REFERENCE  # what runs them: for OpenVINO, what its plugin runs, not only what was asked


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


def load_models(bundle: str | Path, threads: int = 1, choice: Choice = REFERENCE) -> Models:
    palm, landmark = read_models(bundle)
    if choice.runtime == "openvino":
        from hgr.common.inference.hands.openvino_models import compile_model  # the optional extra

        ov_palm = compile_model(palm, "palm", choice.precision, threads)
        ov_landmark = compile_model(landmark, "landmark", choice.precision, threads)
        ran = "bf16" if "bf16" in (ov_palm.precision, ov_landmark.precision) else "fp32"
        return Models(ov_palm, ov_landmark, Choice("openvino", ran))
    litert_palm = Interpreter(model_content=palm, num_threads=threads)
    litert_landmark = Interpreter(model_content=landmark, num_threads=threads)
    litert_palm.allocate_tensors()
    litert_landmark.allocate_tensors()
    return Models(litert_palm, litert_landmark, REFERENCE)
