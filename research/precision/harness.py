"""The service's own pipeline on a candidate's models, and the inputs it feeds them (the crops timed, the
calibration)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast
from unittest import mock

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from hgr.common.inference import stream_pipeline
from hgr.common.inference.hands import pipeline as hand_pipeline
from hgr.common.inference.hands.bundle import Models
from hgr.common.inference.hands.runtime import REFERENCE, Choice
from research.precision.candidates import Built

TIMED_INPUTS = 8  # crops per model for the timing


@contextmanager
def serving(palm: Built, landmark: Built) -> Iterator[None]:
    """Every HandPipeline made meanwhile (the Detector's, the stream path's) runs these two models, and the
    service's own choice (INFERENCE_PRECISION, with its start-up check) is the reference: these models are it."""
    def load(bundle: str | Path, threads: int = 1, choice: Choice = REFERENCE) -> Models:
        return Models(cast(Interpreter, palm.make()), cast(Interpreter, landmark.make()))

    with mock.patch.object(hand_pipeline, "load_models", load), \
            mock.patch.object(stream_pipeline, "choose_here", lambda runtime, precision: REFERENCE):
        yield


class Recorder:
    """An interpreter that keeps the first ``limit`` inputs it is given (the crops timed later, the calibration)."""

    def __init__(self, inner: Any, keep: list[np.ndarray], limit: int = TIMED_INPUTS) -> None:
        self._inner, self._keep, self._limit = inner, keep, limit

    def set_tensor(self, index: int, value: np.ndarray) -> None:
        if len(self._keep) < self._limit:
            self._keep.append(value.copy())
        self._inner.set_tensor(index, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
