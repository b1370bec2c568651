"""Int8 models made by ai-edge-quantizer (not in the lock: ``Missing`` where it is not installed): dynamic-range,
and static with calibrated activation ranges."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from research.precision.tflite import SIGNATURE, float_ends, fold_fp16, prune_unused, with_signature
from research.precision.variants import Missing


def dynamic_int8(model: bytes, ops: Sequence[str] | None) -> bytes:
    """Dynamic-range int8 (per-channel weights) of the float32 ``model``: on ``ops`` (TFLite op names), or every
    op the quantizer supports (``dynamic_wi8_afp32``) when None."""
    try:
        from ai_edge_quantizer import qtyping, quantizer, recipe, recipe_manager
    except ImportError as e:
        raise Missing(f"ai-edge-quantizer is not installed ({e}): pip install ai-edge-quantizer") from None
    if ops is None:
        chosen = recipe.dynamic_wi8_afp32()
    else:
        manager = recipe_manager.RecipeManager()
        for op in ops:
            manager.add_dynamic_config(regex=".*", operation_name=qtyping.TFLOperationName(op), num_bits=8)
        chosen = manager.get_quantization_recipe()
    q = quantizer.Quantizer(bytearray(model))
    q.load_quantization_recipe(chosen)
    return bytes(q.quantize(enable_progress_report=False).quantized_model)


def static_int8(model: bytes, calibration: Sequence[np.ndarray], ends: int, ranges: str = "average"
                ) -> tuple[bytes, int]:
    """Static int8 of the bundle's ``model`` (int8 weights per output channel, int8 activations per tensor with
    ranges from ``calibration``, the model's inputs as the pipeline fed them), float input and outputs (a
    QUANTIZE after the input, DEQUANTIZE before each output: the pipeline feeds it unchanged), the ops of
    ``float_ends(…, ends, ends)`` left float (none when ``ends`` is 0). ``ranges``: ``average``, the quantizer's
    own (each tensor's min and max averaged over the inputs, ``min = 0.95 min + 0.05 new``: values beyond
    saturate), or ``minmax`` (the extremes over all inputs). Returns the model and how many ops stayed float on
    purpose."""
    try:
        from ai_edge_quantizer import algorithm_manager, calibrator, qtyping, quantizer, recipe_manager
        from ai_edge_quantizer.utils import qsv_utils
    except ImportError as e:
        raise Missing(f"ai-edge-quantizer is not installed ({e}): pip install ai-edge-quantizer") from None
    folded = with_signature(prune_unused(fold_fp16(model)))
    manager = recipe_manager.RecipeManager()
    manager.add_static_config(".*", qtyping.TFLOperationName.ALL_SUPPORTED, activation_num_bits=8,
                              weight_num_bits=8)
    no = algorithm_manager.AlgorithmName.NO_QUANTIZE
    for io in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
        manager.add_quantization_config(".*", io, algorithm_key=no)
    kept = float_ends(folded, ends, ends) if ends else []
    if kept:  # a later scope overrides an earlier one where both match
        manager.add_quantization_config("^(?:" + "|".join(re.escape(k) for k in kept) + ")$",
                                        qtyping.TFLOperationName.ALL_SUPPORTED, algorithm_key=no)
    q = quantizer.Quantizer(bytearray(folded))
    q.load_quantization_recipe(manager.get_quantization_recipe())
    [name] = Interpreter(model_content=folded).get_signature_runner(SIGNATURE).get_input_details()
    data = {SIGNATURE: [{name: x} for x in calibration]}
    if ranges == "average":
        qsvs = q.calibrate(data, num_threads=1)
    else:  # Quantizer.calibrate takes no update rule; its Calibrator does
        calib = calibrator.Calibrator(folded, num_threads=1, qsv_update_func=qsv_utils.min_max_update)
        calib.calibrate(data, manager)
        qsvs = calib.get_model_qsvs()
    return bytes(q.quantize(qsvs, enable_progress_report=False).quantized_model), len(kept)
