"""research.precision's own part (issue 24): folding the bundle's fp16 weights is exact, and so is what the
static int8 candidates do to the folded model before the quantizer sees it (unused tensors dropped, a signature
added); which ops they keep float; the calibration half; the harness's models reach the pipeline. The layers kept
f32 under OpenVINO bf16 are tested with the code that serves them (tests/test_inference_runtime.py); the int8
candidates need ai-edge-quantizer, which the lock does not hold; docs/accuracy.md "Lower precision" has a run."""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert.tools import flatbuffer_utils

from hgr.common.inference.hands.bundle import read_models
from hgr.common.inference.hands.pipeline import HandPipeline
from research.accuracy import Photo
from research.precision.calibration import calibration_split
from research.precision.candidates import Built, _litert
from research.precision.harness import serving
from research.precision.tflite import SIGNATURE, float_ends, fold_fp16, prune_unused, with_signature


def outputs_of(model: bytes, x: np.ndarray) -> list[np.ndarray]:
    it = Interpreter(model_content=model, num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]).copy() for d in it.get_output_details()]


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


def test_prune_and_signature_are_exact(model_path: str) -> None:
    _, landmark = read_models(model_path)
    folded = fold_fp16(landmark)
    ready = with_signature(prune_unused(folded))
    before, after = (flatbuffer_utils.read_model_from_bytearray(bytearray(m)) for m in (folded, ready))
    assert len(after.subgraphs[0].tensors) < len(before.subgraphs[0].tensors)  # the emptied float16 ones
    x = np.random.default_rng(0).random((1, 224, 224, 3), np.float32)
    for a, b in zip(outputs_of(folded, x), outputs_of(ready, x), strict=True):
        np.testing.assert_array_equal(a, b)
    runner = Interpreter(model_content=ready).get_signature_runner(SIGNATURE)
    assert list(runner.get_input_details()) == ["input_1"]
    assert len(runner.get_output_details()) == 4


def test_float_ends_grow_from_both_ends(model_path: str) -> None:
    _, landmark = read_models(model_path)
    ready = with_signature(prune_unused(fold_fp16(landmark)))
    m = flatbuffer_utils.read_model_from_bytearray(bytearray(ready))
    graph = m.subgraphs[0]
    ends = {n: float_ends(ready, n, n) for n in (1, 2, 4)}
    assert set(ends[1]) < set(ends[2]) < set(ends[4])
    first = graph.operators[0]
    assert ";".join(graph.tensors[t].name.decode() for t in first.outputs) + ";" in ends[1]  # the first conv
    # every op that writes an output is kept (the four heads and what follows them)
    outputs = {int(t) for t in graph.outputs}
    writers = [op for op in graph.operators if outputs & {int(t) for t in op.outputs}]
    assert len(writers) == 4
    for op in writers:
        assert ";".join(graph.tensors[t].name.decode() for t in op.outputs) + ";" in ends[1]


def test_calibration_split_halves_each_session() -> None:
    photos = [Photo(f"p{i}.jpg", 1, source, session, "")
              for i, (source, session) in enumerate([("a", "1")] * 5 + [("a", "2")] * 4 + [("b", "1")] * 1)]
    chosen = calibration_split(photos, seed=0)
    assert chosen == calibration_split(photos, seed=0)
    assert sum(p.file in chosen for p in photos[:5]) == 3
    assert sum(p.file in chosen for p in photos[5:9]) == 2
    assert photos[9].file in chosen
    assert any(calibration_split(photos, seed=s) != chosen for s in range(1, 10))


def test_serving_reaches_the_pipeline(model_path: str) -> None:
    palm, landmark = read_models(model_path)
    made = _litert(palm).make(), _litert(landmark).make()
    built = Built(lambda: made[0], ""), Built(lambda: made[1], "")
    with serving(*built):
        pipe = HandPipeline(model_path)
    assert pipe._palm is made[0]
