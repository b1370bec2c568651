"""research/precision.py's own part (issue 24): folding the bundle's fp16 weights is exact. The layers kept f32
under OpenVINO bf16 are tested with the code that serves them (tests/test_inference_runtime.py); the int8
candidates need ai-edge-quantizer, which the lock does not hold; docs/accuracy.md "Lower precision" has a run."""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert.tools import flatbuffer_utils

from hgr.common.inference.hands.bundle import read_models
from research.precision import fold_fp16


def test_fold_fp16_is_exact(model_path: str) -> None:
    _, landmark = read_models(model_path)
    folded = fold_fp16(landmark)
    m = flatbuffer_utils.read_model_from_bytearray(bytearray(folded))
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in m.operatorCodes]
    assert all(codes[op.opcodeIndex] != schema.BuiltinOperator.DEQUANTIZE for op in m.subgraphs[0].operators)
    x = np.random.default_rng(0).random((1, 224, 224, 3), np.float32)
    outputs = []
    for data in (landmark, folded):
        it = Interpreter(model_content=data, num_threads=1)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        outputs.append([it.get_tensor(d["index"]).copy() for d in it.get_output_details()])
    assert len(outputs[1]) == 4
    for a, b in zip(*outputs, strict=True):
        np.testing.assert_array_equal(a, b)
