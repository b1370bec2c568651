"""The bundle's tflite models rewritten as bytes (their flatbuffers, through LiteRT's tools), each rewrite exact:
float16 weights folded to float32, unused tensors pruned, a signature added; and which ops a model keeps float
at both ends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

HEAVY_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")  # what "the first/last N layers" counts


def fold_fp16(model: bytes) -> bytes:
    """``model`` with every DEQUANTIZE of a float16 constant replaced by the float32 constant it computes.

    The bundle stores its weights this way; quantizers only see float32 constants. Exact: float16 → float32
    is lossless, and the runtime did the same conversion at load time."""
    m = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    dequantize = {i for i, code in enumerate(m.operatorCodes)
                  if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.DEQUANTIZE}
    for graph in m.subgraphs:
        kept = []
        for op in graph.operators:
            if op.opcodeIndex in dequantize:
                source, target = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
                data = m.buffers[source.buffer].data
                if source.type == schema.TensorType.FLOAT16 and data is not None and len(data):
                    weights = np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.float16).astype(np.float32)
                    folded = schema.BufferT()
                    folded.data = np.frombuffer(weights.tobytes(), np.uint8)
                    m.buffers.append(folded)
                    target.buffer = len(m.buffers) - 1
                    m.buffers[source.buffer].data = None  # the float16 copy is no longer read
                    continue
            kept.append(op)
        graph.operators = kept
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def prune_unused(model: bytes) -> bytes:
    """``model`` without the tensors no op, input or output refers to (``fold_fp16`` leaves the float16 ones,
    emptied, behind; the quantizer's calibrator reads every tensor and fails on an empty one)."""
    m = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    for graph in m.subgraphs:
        used = {int(i) for i in (*graph.inputs, *graph.outputs)}
        for op in graph.operators:
            used |= {int(i) for i in (*op.inputs, *op.outputs) if i >= 0}
        new = {old: n for n, old in enumerate(sorted(used))}
        graph.tensors = [graph.tensors[i] for i in sorted(used)]
        graph.inputs = [new[int(i)] for i in graph.inputs]
        graph.outputs = [new[int(i)] for i in graph.outputs]
        for op in graph.operators:
            op.inputs = [new[int(i)] if i >= 0 else -1 for i in op.inputs]
            op.outputs = [new[int(i)] for i in op.outputs]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


SIGNATURE = "serving_default"


def with_signature(model: bytes) -> bytes:
    """``model`` with a signature over its one graph's inputs and outputs: the bundle's models have none, and the
    quantizer's calibrator runs a model only through a signature."""
    m = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    graph = m.subgraphs[0]

    def tensors(ids: Sequence[int]) -> list[Any]:
        out = []
        for i in ids:
            t = schema.TensorMapT()
            t.name, t.tensorIndex = _name(graph.tensors[int(i)]), int(i)
            out.append(t)
        return out

    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = SIGNATURE, 0
    signature.inputs, signature.outputs = tensors(graph.inputs), tensors(graph.outputs)
    m.signatureDefs = [signature]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def _name(tensor: Any) -> str:
    return tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)


def float_ends(model: bytes, first: int, last: int) -> list[str]:
    """The quantizer's scopes (output tensor names, each followed by ";") of the ops to keep float: those with at
    most ``first`` heavy ops (``HEAVY_OPS``, itself included) on their longest path from the input, or at most
    ``last`` on their longest path to an output, as ``keep_f32`` picks OpenVINO's layers."""
    m = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    graph = m.subgraphs[0]
    heavy_codes = {getattr(schema.BuiltinOperator, name) for name in HEAVY_OPS}
    ops = graph.operators  # in execution order: every op after the ops that feed it
    heavy = [max(m.operatorCodes[op.opcodeIndex].builtinCode, m.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode)
             in heavy_codes for op in ops]
    producer = {int(t): n for n, op in enumerate(ops) for t in op.outputs}
    consumers: dict[int, list[int]] = {}
    for n, op in enumerate(ops):
        for t in op.inputs:
            if int(t) in producer:
                consumers.setdefault(producer[int(t)], []).append(n)
    from_input: list[int] = []
    for n, op in enumerate(ops):
        from_input.append(heavy[n] + max((from_input[producer[int(t)]] for t in op.inputs if int(t) in producer),
                                         default=0))
    to_output = [0] * len(ops)
    for n in reversed(range(len(ops))):
        to_output[n] = heavy[n] + max((to_output[c] for c in consumers.get(n, [])), default=0)
    return [";".join(_name(graph.tensors[int(t)]) for t in op.outputs) + ";"
            for n, op in enumerate(ops) if from_input[n] <= first or to_output[n] <= last]
