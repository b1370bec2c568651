"""One model of one variant built from the bundle's bytes: how to make a fresh runner of it (LiteRT, or OpenVINO's
CPU plugin through the service's own IR build), and what pins it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from hgr.common.inference.hands.openvino_models import (
    PRECISE,
    OpenVinoModel,
    compile_config,
    ir_digest,
    marked_ir,
)
from research.precision.quantize import dynamic_int8, static_int8
from research.precision.tflite import fold_fp16
from research.precision.variants import ENDS, STATIC, Missing


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _openvino() -> Any:
    try:
        import openvino
    except ImportError as e:
        raise Missing(f"openvino is not installed ({e}): pip install openvino") from None
    return openvino


@dataclass(frozen=True)
class Built:
    """One model of one variant: how to make a fresh runner, and what pins it."""

    make: Callable[[], Any]  # () -> an Interpreter-like object, tensors allocated
    sha256: str
    note: str = ""


def _litert(data: bytes, note: str = "") -> Built:
    def make() -> Any:
        it = Interpreter(model_content=data, num_threads=1)
        it.allocate_tensors()
        return it

    return Built(make, sha256(data), note)


def _ov(data: bytes, hint: str, ends: tuple[int, int] | None, workdir: Path) -> Built:
    ov = _openvino()
    core = ov.Core()
    name = f"{sha256(data)[:16]}-{hint}-{ends[0]}-{ends[1]}" if ends else f"{sha256(data)[:16]}-{hint}"
    folder = workdir / name
    folder.mkdir()
    ir = marked_ir(data, ends, folder)  # the service's own IR build
    xml = ir.read_text()
    note = f"openvino {ov.__version__}, {hint}"
    if ends:
        note += (f", {xml.count(PRECISE)} of {xml.count('<layer ')} layers kept f32 (first={ends[0]}, "
                 f"last={ends[1]})")
    model = core.read_model(ir)  # now: the files are not read again
    pin = ir_digest(ir)  # the pin, as openvino_models.GATED_IR holds the shipped pair's
    config = compile_config(hint)

    def make() -> Any:
        return OpenVinoModel(core.compile_model(model, "CPU", config))

    return Built(make, pin, note + f"; from the tflite {sha256(data)}")


def build(variant: str, model: bytes, workdir: Path, calibration: Sequence[np.ndarray] = ()) -> Built:
    if variant == "fp32":
        return _litert(model, "the bundle's")
    if variant == "int8_conv2d":
        return _litert(dynamic_int8(fold_fp16(model), ["CONV_2D"]))
    if variant == "int8_conv":
        return _litert(dynamic_int8(fold_fp16(model), ["CONV_2D", "FULLY_CONNECTED"]))
    if variant == "int8_all":
        return _litert(dynamic_int8(fold_fp16(model), None))
    if variant in STATIC:
        ends, ranges = STATIC[variant]
        data, kept = static_int8(model, calibration, ends, ranges)
        return _litert(data, f"static int8 calibrated on {len(calibration)} inputs ({ranges} ranges), "
                             f"{kept} ops kept float")
    if variant.startswith("ov_"):
        return _ov(model, "bf16" if "bf16" in variant else "f32", ENDS.get(variant), workdir)
    raise ValueError(variant)
