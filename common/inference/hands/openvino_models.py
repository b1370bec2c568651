"""The bundle's two hand models on OpenVINO's CPU plugin (``INFERENCE_RUNTIME=openvino``), fp32 or bf16.

bf16 on the whole model moves finger counts (docs/accuracy.md "Lower precision"); kept in f32 are the layers at
both ends, those within ``KEEP_F32_ENDS[model]`` heavy layers (convolutions, matmuls) of the input or of an
output: 2 on both, the one pair that passed the whole answers' gate (stills, fixtures and 3000 camera-clip
frames: 208/210 stills and 99.1 % of frames counted as fp32 counts them), at 1.90x (palm) and 1.97x
(landmarks) per model. OpenVINO 2026.4's Python API cannot mark a node for this (a string under the rt_info key
is ignored), so the tflite goes through IR: the ``precise`` rt_info attribute (``ov::disable_fp16_compression``,
which the CPU plugin honours for bf16 too) is written into the IR's XML on those layers and the IR is read
back; ``read`` refuses a release that drops it (tests/test_inference_runtime.py checks it on the release the
lock holds; pyproject bounds openvino below the next). Built in memory from the bundle at start-up, every
time: nothing downloaded, nothing cached to go stale.

``OpenVinoModel`` offers the calls the pipeline makes on a LiteRT ``Interpreter`` (``bundle.ModelRunner``).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HEAVY = {"Convolution", "GroupConvolution", "MatMul"}  # what "the first/last N layers" counts
KEEP_F32_ENDS = {"palm": 2, "landmark": 2}  # per model: heavy layers kept f32 at each end (docs/accuracy.md)
# The marked IRs the gate passed (research.precision, docs/accuracy.md), built from the pinned bundle by
# ``marked_ir`` with KEEP_F32_ENDS: ``ir_digest`` of each. The service builds them in memory at start-up, so these
# pin what it runs; an OpenVINO release that writes the IR otherwise changes them (tests/test_inference_runtime.py
# fails) and the gate must run again before they move.
GATED_IR = {"palm": "967dff25fef08d5305fd03ee235bf95cf3b0e6b861dbe7ca44f56fcc4f85229d",
            "landmark": "fa6599cadd9dbd789b8d57d6ddef01ac781330d6bf1d37f8b191f58e61195746"}
PRECISE = '<attribute name="precise" version="0"/>'
HINTS = {"fp32": "f32", "bf16": "bf16"}  # hgr's names → INFERENCE_PRECISION_HINT
MARKED = "DisablePrecisionConversion_0"  # the rt_info key the IR reader turns PRECISE into


def keep_f32(xml: str, first: int = 1, last: int = 1) -> set[str]:
    """Ids of the IR layers to keep in f32: those with at most ``first`` heavy layers (itself included) on their
    longest path from the input, or at most ``last`` on their longest path to an output. Constants are left out
    (the attribute goes on the layers that compute), and the first rule counts only layers the input reaches
    (not the weights' conversions)."""
    layer = r'<layer id="(?P<id>\d+)" name="[^"]*" type="(?P<type>\w+)"'
    layers = {m["id"]: m["type"] for m in re.finditer(layer, xml)}
    edges = [(m[1], m[2]) for m in re.finditer(r'<edge from-layer="(\d+)" from-port="\d+" to-layer="(\d+)"', xml)]
    parents: dict[str, list[str]] = {i: [] for i in layers}
    children: dict[str, list[str]] = {i: [] for i in layers}
    for a, b in edges:
        parents[b].append(a)
        children[a].append(b)

    def depth(i: str, nexts: dict[str, list[str]], memo: dict[str, int]) -> int:
        # iterative post-order: the graphs are a few hundred layers deep
        stack = [(i, False)]
        while stack:
            node, ready = stack.pop()
            if node in memo:
                continue
            if ready:
                memo[node] = (layers[node] in HEAVY) + max((memo[n] for n in nexts[node]), default=0)
            else:
                stack.append((node, True))
                stack.extend((n, False) for n in nexts[node] if n not in memo)
        return memo[i]

    fed = [i for i, kind in layers.items() if kind == "Parameter"]  # what the input reaches (not the weights)
    for node in fed:
        fed.extend(n for n in children[node] if n not in fed)
    from_input: dict[str, int] = {}
    to_output: dict[str, int] = {}
    return {i for i, kind in layers.items()
            if kind not in ("Const", "Parameter", "Result")
            and ((i in fed and depth(i, parents, from_input) <= first) or depth(i, children, to_output) <= last)}


def mark_f32(xml: str, ids: set[str]) -> str:
    """The IR ``xml`` with the ``precise`` rt_info attribute on the layers ``ids``."""
    def mark(m: re.Match[str]) -> str:
        if m["id"] not in ids:
            return m[0]
        if m["rt"]:
            return m[0].replace("<rt_info>", "<rt_info>" + PRECISE, 1)
        return m["open"] + f"<rt_info>{PRECISE}</rt_info>"

    return re.sub(r'(?P<open><layer id="(?P<id>\d+)"[^>]*>)(?P<rt>\s*<rt_info>)?', mark, xml)


def marked_ir(tflite: bytes, ends: tuple[int, int] | None, folder: Path) -> Path:
    """The tflite ``tflite`` saved as IR in ``folder`` (``model.xml`` and ``model.bin``, the weights as the tflite
    has them), with ``ends`` = (first, last) its end layers (``keep_f32``) marked to stay f32; the XML's path."""
    import openvino as ov  # the optional extra: imported only when chosen

    source, ir = folder / "model.tflite", folder / "model.xml"
    source.write_bytes(tflite)
    ov.save_model(ov.Core().read_model(source), ir, compress_to_fp16=False)
    if ends is not None:
        xml = ir.read_text()
        ir.write_text(mark_f32(xml, keep_f32(xml, *ends)))
    return ir


def ir_digest(ir: Path) -> str:
    """sha256 of the IR at ``ir`` (its XML and weights), less the node names: OpenVINO numbers them by a
    process-wide counter, so the same model read twice in one process is written with other names."""
    xml = re.sub(r' name="[^"]*"', "", ir.read_text())
    return hashlib.sha256(xml.encode() + ir.with_suffix(".bin").read_bytes()).hexdigest()


def read(tflite: bytes, keep_ends: int | None) -> Any:
    """An ``openvino.Model`` of the tflite ``tflite``; with ``keep_ends``, its end layers marked to stay f32."""
    import openvino as ov

    core = ov.Core()
    with tempfile.TemporaryDirectory(prefix="hgr-openvino-") as tmp:
        if keep_ends is None:
            source = Path(tmp) / "model.tflite"
            source.write_bytes(tflite)
            return core.read_model(source)
        marked = core.read_model(marked_ir(tflite, (keep_ends, keep_ends), Path(tmp)))  # read before the folder goes
    if not any(MARKED in op.get_rt_info() for op in marked.get_ops()):
        # a release that reads the attribute otherwise would run the whole model in bf16, which moves counts
        raise RuntimeError(f"OpenVINO {ov.__version__} dropped the IR's precise attribute: no layer kept f32")
    return marked


def compile_model(tflite: bytes, model: str, precision: str, threads: int = 1) -> OpenVinoModel:
    """``model`` ("palm" or "landmark") compiled for the CPU at ``precision`` ("fp32" or "bf16")."""
    import openvino as ov

    graph = read(tflite, KEEP_F32_ENDS[model] if precision == "bf16" else None)
    return OpenVinoModel(ov.Core().compile_model(graph, "CPU", compile_config(HINTS[precision], threads)))


def compile_config(hint: str, threads: int = 1) -> dict[str, Any]:
    """The CPU plugin's config for a model at ``hint`` ("f32" or "bf16"): what the service compiles, and what
    research.precision times."""
    # No CPU pinning: OpenVINO pins a compiled model's stream to the first cores, the same ones in every worker
    # process, so two workers on two cores shared one (landmarks in two processes: ~130 inferences/s each pinned,
    # ~210 unpinned); the kernel's scheduler spreads the workers as it does LiteRT's.
    return {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
            "ENABLE_CPU_PINNING": False}


class OpenVinoModel:
    """A compiled model behind the Interpreter calls the pipeline makes (details, set_tensor, invoke,
    get_tensor), one input, outputs in the tflite's order."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled  # its properties say what the plugin made of the config
        self._request = compiled.create_infer_request()
        self._outputs = list(compiled.outputs)
        self._input: np.ndarray | None = None
        self._results: list[np.ndarray] = []
        # What the plugin runs, which is not always what was asked: without bf16 arithmetic it runs f32.
        hint = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.precision = "bf16" if hint == "bf16" else "fp32"

    def allocate_tensors(self) -> None:
        pass

    def get_input_details(self) -> list[dict[str, Any]]:
        return [{"index": 0}]

    def get_output_details(self) -> list[dict[str, Any]]:
        return [{"index": i} for i in range(len(self._outputs))]

    def set_tensor(self, index: int, value: np.ndarray) -> None:
        self._input = value

    def invoke(self) -> None:
        results = self._request.infer({0: self._input})
        self._results = [results[o] for o in self._outputs]

    def get_tensor(self, index: int) -> np.ndarray:
        return self._results[index]
