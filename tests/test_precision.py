"""research/precision.py's pure parts (issue 24): folding the bundle's fp16 weights is exact, and the layers
kept in f32 under OpenVINO bf16 are the ones its docstring says. The candidates themselves need packages the
lock does not hold; docs/accuracy.md "Lower precision (issue 24)" has a run."""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert.tools import flatbuffer_utils

from hgr.common.inference.hands.bundle import read_models
from research.precision import fold_fp16, keep_f32, mark_f32

# Parameter → conv 1 → relu → conv 2 → conv 3 → Result, each conv with a weight Const → Convert.
TOY = """<net><layers>
<layer id="0" name="in" type="Parameter" version="opset1"></layer>
<layer id="1" name="c1" type="Convolution" version="opset1"></layer>
<layer id="2" name="r" type="Relu" version="opset1"></layer>
<layer id="3" name="c2" type="Convolution" version="opset1"></layer>
<layer id="4" name="c3" type="Convolution" version="opset1">
<rt_info><attribute name="fused_names" version="0" value="c3"/></rt_info></layer>
<layer id="5" name="out" type="Result" version="opset1"></layer>
<layer id="6" name="w1" type="Const" version="opset1"></layer>
<layer id="7" name="d1" type="Convert" version="opset1"></layer>
<layer id="8" name="w3" type="Const" version="opset1"></layer>
<layer id="9" name="d3" type="Convert" version="opset1"></layer>
</layers><edges>
<edge from-layer="0" from-port="0" to-layer="1" to-port="0"/>
<edge from-layer="6" from-port="0" to-layer="7" to-port="0"/>
<edge from-layer="7" from-port="1" to-layer="1" to-port="1"/>
<edge from-layer="1" from-port="2" to-layer="2" to-port="0"/>
<edge from-layer="2" from-port="1" to-layer="3" to-port="0"/>
<edge from-layer="3" from-port="2" to-layer="4" to-port="0"/>
<edge from-layer="8" from-port="0" to-layer="9" to-port="0"/>
<edge from-layer="9" from-port="1" to-layer="4" to-port="1"/>
<edge from-layer="4" from-port="2" to-layer="5" to-port="0"/>
</edges></net>"""


def test_keep_f32_takes_the_ends_and_not_the_weights_of_the_first_layer() -> None:
    # conv 1 and what follows it up to conv 2 (one heavy layer from the input), conv 3 and its weights'
    # conversion (one heavy layer to the output); conv 1's weight conversion is not reached from the input
    assert keep_f32(TOY, 1, 1) == {"1", "2", "4", "9"}
    assert keep_f32(TOY, 2, 0) == {"1", "2", "3"}
    assert keep_f32(TOY, 0, 0) == set()


def test_mark_f32_adds_the_attribute_to_those_layers_only() -> None:
    marked = mark_f32(TOY, {"1", "4"})
    attribute = '<attribute name="precise" version="0"/>'
    assert marked.count(attribute) == 2
    assert f'type="Convolution" version="opset1"><rt_info>{attribute}</rt_info></layer>' in marked  # a new block
    assert f'<rt_info>{attribute}<attribute name="fused_names"' in marked  # into the existing one
    assert marked.replace(attribute, "").replace("<rt_info></rt_info>", "") == TOY


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
