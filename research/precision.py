"""Lower precision for the hand pipeline's two models (issue 24), each candidate held to the gate against the
fp32 LiteRT path and timed against it in the same run.

    nice -n 19 python -m research.precision > precision.json        # stills, fixtures, timing (HGR_MODEL_PATH)
    nice -n 19 python -m research.precision --clips 100 > p.json    # and camera clips from 100 photos
    python -m research.precision --markdown p.json                  # the table in docs/accuracy.md

Needs, beyond the lock, ``ai-edge-quantizer`` (the int8 candidates, static ones included) and ``openvino`` (the
bf16 ones), imported only when a candidate needs them; a candidate whose package is missing is reported as skipped.

Candidates, per model (palm detector, landmark model), each on one model with the other at fp32, and on both:

- ``int8_conv2d``: dynamic-range int8 (int8 weights per output channel, float activations quantized on the
  fly) on CONV_2D only, run by LiteRT as the service runs it (XNNPACK). The bundle's weights are float16
  constants behind DEQUANTIZE ops, which the quantizer leaves alone, so they are folded to float32 first
  (``fold_fp16``, exact). Depthwise convolutions stay float: their hybrid kernel is not XNNPACK's and runs
  about twice as slow as fp32 (measured while choosing; ``int8_all`` shows it); so do the landmark model's
  four FULLY_CONNECTED heads (``int8_conv`` shows why: in int8 they move the world landmarks the count is
  read from);
- ``int8_conv``: the same on CONV_2D and FULLY_CONNECTED;
- ``int8_all``: the quantizer's ``dynamic_wi8_afp32`` recipe as is (every supported op), after the fold;
- ``ov_f32``: OpenVINO's CPU plugin at f32: what the runtime alone changes, and the noise floor of the gate
  (its outputs differ from LiteRT's by ~1e-4 crop pixels, so the photos it flips are on a knife's edge);
- ``ov_bf16``: OpenVINO at ``INFERENCE_PRECISION_HINT=bf16`` (AMX/AVX512-BF16 on this CPU);
- ``ov_bf16_endsN``: the same, with the layers at both ends kept in f32: every layer up to and including the
  N-th convolution counted from the input, and every layer from the N-th last convolution or matmul before
  each output on (``keep_f32``; N = 1, 2, 4, 8). OpenVINO 2026.4's Python API cannot set the attribute
  that does this (a string under its rt_info key is ignored), so the model goes through IR: the ``precise``
  rt_info attribute (``ov::disable_fp16_compression``, which the CPU plugin also honours for bf16) is
  written into the IR's XML on those layers and the IR read back;
- ``int8_static``: static (full) int8, run by LiteRT/XNNPACK with its QS8 kernels: int8 weights per output
  channel and int8 activations per tensor (asymmetric), their ranges calibrated on the inputs the fp32 pipeline
  fed the model on half of the photos (``calibration_split``: half of each recording session, drawn with
  ``--calibration-seed``; the gate is reported on all photos and on the other half alone, "held-out"). The
  quantizer (``static_int8``) runs a model only through a signature and reads every tensor while calibrating,
  so the folded model loses the emptied float16 tensors (``prune_unused``) and gains a signature over its graph
  (``with_signature``); its input and outputs stay float (a QUANTIZE after the input, a DEQUANTIZE before
  each output) so the pipeline feeds it unchanged. Ops the quantizer does not support stay float between
  DEQUANTIZE and QUANTIZE: the palm detector's 31 PRELUs (ai-edge-quantizer 0.10.0 has no PRELU);
- ``int8_static_endsN``: the same, with the ops at both ends kept float as ``ov_bf16_endsN`` picks them (on
  the tflite graph, ``float_ends``: CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED are the heavy ops; N = 1,
  2, 4);
- ``int8_static_minmax``, ``int8_static_minmax_ends4``: the same two with each activation's range the extremes
  over the calibration inputs; the quantizer's own rule (the others) averages each input's min and max
  (0.95 old + 0.05 new), so values beyond saturate.

The gate (issue 24), each candidate against the fp32 LiteRT path (``research.engine_parity.compare``, with
``Detector.detect_bytes`` as the service answers a still, ``num_hands=2``, exposure retry on):

- stills (the labelled photos): finger counts agree on ≥ 99 % of photos; counted right on at least as many
  photos as fp32 minus one; median landmark gap ≤ 0.5 % (of the hand, stricter than of the crop); hands
  detected on as many photos ± 1;
- fixtures (tests/fixtures/landmarks.json, the fp32 landmarks the unit tests count): the candidate's count
  against the one the fixture's hand gives, per photo (fp32 itself is listed for scale);
- the control: fp32 on the photos as decoded, moved one pixel (``shifted_photos``): how many answers a
  change far smaller than a camera's noise moves, for scale;
- camera clips (``--clips N``): ``loadtest/clips.py`` one-hand clips of the first N photos the stills judge
  counts right, through the edge's stream path (tracking) as ``research/tracking.py`` runs them; counts
  agree with fp32's on ≥ 99 % of frames.

Timing: each model alone, one thread, on the crops the pipeline fed it on the first photos, candidates
interleaved round-robin with fp32 in the same process so a busy machine slows all alike; the ratio is fp32's
median over the candidate's (> 1: faster), with the ratio of p10s, steadier on a shared machine. Model bytes
are built from the bundle in memory and pinned by sha256 in the report (OpenVINO: of the IR it compiles,
node names left out, since it numbers them by a process-wide counter; and of the tflite it read).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from unittest import mock

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert.tools import flatbuffer_utils

from hgr.common.config import Settings, load_settings
from hgr.common.inference import stream_pipeline
from hgr.common.inference.fingers import count_fingers, fingers_up
from hgr.common.inference.hands import pipeline as hand_pipeline
from hgr.common.inference.hands.bundle import Models, read_models
from hgr.common.inference.hands.openvino_models import PRECISE, OpenVinoModel, marked_ir
from hgr.common.inference.hands.runtime import REFERENCE, Choice
from hgr.common.inference.images import ImageLimits, decode_image
from hgr.common.inference.model import model_paths
from research.accuracy import Photo, detect_all, load_photos
from research.engine_parity import compare
from research.paths import DEFAULT_PHOTOS, ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "landmarks.json"
MODELS = ("palm", "landmark")
VARIANTS = ("int8_conv2d", "int8_conv", "int8_all", "ov_f32", "ov_bf16", "ov_bf16_ends1", "ov_bf16_ends2",
            "ov_bf16_ends4", "ov_bf16_ends8", "int8_static", "int8_static_ends1", "int8_static_ends2",
            "int8_static_ends4", "int8_static_minmax", "int8_static_minmax_ends4")
# ``keep_f32``'s (first, last) per variant.
ENDS = {f"ov_bf16_ends{n}": (n, n) for n in (1, 2, 4, 8)}
# Static int8: heavy layers kept float at each end (0: none, only the model's float input and outputs), and
# each tensor's range over the calibration inputs: the quantizer's moving average of their min/max, or min/max.
STATIC = {"int8_static": (0, "average"), **{f"int8_static_ends{n}": (n, "average") for n in (1, 2, 4)},
          "int8_static_minmax": (0, "minmax"), "int8_static_minmax_ends4": (4, "minmax")}
HEAVY_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")  # what "the first/last N layers" counts
TIMED_INPUTS = 8  # crops per model for the timing
Record = dict[str, Any]


class Missing(RuntimeError):
    """An optional package a candidate needs is not installed."""


# --- model bytes ------------------------------------------------------------------------------------------

def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
    # The pin: the IR as read, less the node names (OpenVINO numbers them by a process-wide counter).
    pin = sha256(re.sub(r' name="[^"]*"', "", xml).encode() + ir.with_suffix(".bin").read_bytes())
    config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1}

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


# --- the gate ---------------------------------------------------------------------------------------------

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


def fixture_agreement(records: Sequence[Record]) -> dict[str, Any]:
    """Photos whose total count equals the one the fixture's hands give (photos the fixture lists)."""
    fixture = {p["file"]: p for p in json.loads(FIXTURE.read_text())["photos"]}
    same, differ = 0, []
    listed = [r for r in records if r["file"] in fixture]
    for r in listed:
        expected = sum(count_fingers(fingers_up(h["world_landmarks"] or h["landmarks"]))
                       for h in fixture[r["file"]]["hands"])
        if sum(h["fingers"] for h in r["hands"]) == expected:
            same += 1
        else:
            differ.append(r["file"])
    return {"photos": len(listed), "same_count": same, "differ": differ}


def verdict(stills: dict[str, Any], clips: dict[str, Any] | None) -> dict[str, bool]:
    n = stills["photos"]
    gate = {
        "count_99": stills["same_count"] >= math.ceil(0.99 * n),
        "correct": stills["correct"]["ours"] >= stills["correct"]["reference"] - 1,
        "gap_0.5": (stills["landmark_gap"]["median"] or 0.0) <= 0.005,
        "detected": abs(stills["detected"]["ours"] - stills["detected"]["reference"]) <= 1,
    }
    if clips is not None:
        gate["clips_99"] = clips["same_frames"] >= math.ceil(0.99 * clips["frames"])
    gate["pass"] = all(gate.values())
    return gate


def clip_counts(settings: Settings, paths: dict[str, str], clips: Sequence[Any],
                built: tuple[Built, Built]) -> list[tuple[int, ...]]:
    """total_fingers per frame of each clip through the edge's stream path (tracking), as research/tracking.py."""
    from research.tracking import Runner

    with serving(*built):
        runner = Runner(settings, paths)
        try:
            return [runner.edge(clip).counts for clip in clips]
        finally:
            runner.close()


def render_clips(settings: Settings, model_path: str, folder: Path, photos: int, hold: int,
                 seed: int) -> list[Any]:
    """One-hand clips of the first ``photos`` labelled photos the stills judge counts right."""
    from hgr.loadtest import camera
    from hgr.loadtest import clips as camclips

    judge = camera.StillJudge(settings, model_path)
    sensor = camclips.Sensor()
    out = []
    try:
        source = camclips.SceneSource(folder, judge, seed, sensor)
        for n, (file, label) in enumerate(camclips.read_labels(folder)):
            still = source.still(file, label)
            if still.right:
                scene = [camclips.Scene(still.image, label, 1, file)]
                out.append(camclips.render_clip(file, "one_hand", scene, hold=hold, sensor=sensor,
                                                seed=seed * 1000 + n))
            if len(out) == photos:
                break
    finally:
        judge.close()
    return out


def shifted_photos(limits: ImageLimits, folder: Path, photos: Sequence[Photo], target: Path,
                   pixels: int = 1) -> Path:
    """The photos as the service decodes them, moved ``pixels`` left (the last column repeated), saved
    losslessly (PNG) under their names in ``target``: the control, how many counts a change far below what a
    camera's noise does flips at fp32 (``pixels=0`` flips none: the round trip is lossless)."""
    import cv2

    target.mkdir(parents=True, exist_ok=True)
    (target / "labels.csv").write_bytes((folder / "labels.csv").read_bytes())
    for p in photos:
        rgb = decode_image((folder / p.file).read_bytes(), limits).rgb
        moved = np.concatenate([rgb[:, pixels:], rgb[:, rgb.shape[1] - pixels:]], axis=1) if pixels else rgb
        ok, png = cv2.imencode(".png", cv2.cvtColor(moved, cv2.COLOR_RGB2BGR))
        assert ok
        (target / p.file).write_bytes(png.tobytes())
    return target


# --- timing -----------------------------------------------------------------------------------------------

def time_models(runners: dict[str, Any], inputs: Sequence[np.ndarray], seconds: float) -> dict[str, Any]:
    """ms per invoke, round-robin over ``runners`` (fp32 among them), the starting runner rotating each round."""
    names = list(runners)
    times: dict[str, list[float]] = {n: [] for n in names}
    for n in names:  # warm-up
        runners[n].set_tensor(int(runners[n].get_input_details()[0]["index"]), inputs[0])
        runners[n].invoke()
    deadline = time.monotonic() + seconds
    rounds = 0
    while rounds < 3 or (time.monotonic() < deadline and rounds < 10_000):
        x = inputs[rounds % len(inputs)]
        for k in range(len(names)):
            name = names[(rounds + k) % len(names)]
            it = runners[name]
            it.set_tensor(int(it.get_input_details()[0]["index"]), x)
            start = time.perf_counter()
            it.invoke()
            times[name].append((time.perf_counter() - start) * 1000)
        rounds += 1

    def pct(values: list[float], q: float) -> float:
        s = sorted(values)
        return s[min(len(s) - 1, int(q * len(s)))]

    base = times["fp32"]
    return {n: {"calls": len(v), "p10_ms": round(pct(v, 0.1), 3), "p50_ms": round(pct(v, 0.5), 3),
                "speed_p50": round(pct(base, 0.5) / pct(v, 0.5), 3),
                "speed_p10": round(pct(base, 0.1) / pct(v, 0.1), 3)} for n, v in times.items()}


# --- the run ----------------------------------------------------------------------------------------------

def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for package in ("ai-edge-litert", "ai-edge-quantizer", "openvino", "numpy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def candidates(variants: Sequence[str]) -> list[tuple[str, str]]:
    """(palm variant, landmark variant): each variant on one model, then on both."""
    out = []
    for v in variants:
        out += [(v, "fp32"), ("fp32", v), (v, v)]
    return out


def calibration_split(photos: Sequence[Photo], seed: int) -> set[str]:
    """The files that calibrate the static int8 candidates: half of each recording session (rounded up), drawn
    with ``seed``. By session so both halves hold every lighting and background (one source is one session of
    60 photos: a split by session would leave it out of one half); the other half is the held-out set the gate
    also reports on alone."""
    import random

    sessions: dict[tuple[str, str], list[str]] = {}
    for p in photos:
        sessions.setdefault((p.source, p.session), []).append(p.file)
    rng = random.Random(seed)
    chosen: set[str] = set()
    for key in sorted(sessions):
        files = sorted(sessions[key])
        rng.shuffle(files)
        chosen.update(files[:(len(files) + 1) // 2])
    return chosen


def run(folder: Path, variants: Sequence[str], *, clip_photos: int, clip_candidates: Sequence[str],
        hold: int, seconds: float, log: Callable[[str], None], calibration_seed: int = 0) -> dict[str, Any]:
    # The IR files the OpenVINO candidates are read from, and the shifted photos: all read within this run.
    with tempfile.TemporaryDirectory(prefix="hgr-precision-") as tmp:
        return _run(Path(tmp), folder, variants, clip_photos=clip_photos, clip_candidates=clip_candidates,
                    hold=hold, seconds=seconds, log=log, calibration_seed=calibration_seed)


def _run(workdir: Path, folder: Path, variants: Sequence[str], *, clip_photos: int,
         clip_candidates: Sequence[str], hold: int, seconds: float, log: Callable[[str], None],
         calibration_seed: int) -> dict[str, Any]:
    settings = load_settings()
    paths = model_paths(settings)
    model_path = paths[settings.model_variant]  # HGR_MODEL_PATH, as the service resolves it
    bundle = Path(model_path)
    palm_bytes, landmark_bytes = read_models(bundle)
    source = {"palm": palm_bytes, "landmark": landmark_bytes}
    built: dict[tuple[str, str], Built] = {}
    models: dict[str, dict[str, Any]] = {m: {} for m in MODELS}

    def make(model: str, variant: str, calibration: Sequence[np.ndarray] = ()) -> None:
        try:
            b = built[model, variant] = build(variant, source[model], workdir, calibration)
            models[model][variant] = {"sha256": b.sha256, "note": b.note}
        except Missing as e:
            models[model][variant] = {"skipped": str(e)}
            log(f"{model} {variant}: skipped ({e})")

    for model in MODELS:
        for variant in ("fp32", *variants):
            if variant not in STATIC:
                make(model, variant)
    photos: list[Photo] = load_photos(folder)
    calibrating = calibration_split(photos, calibration_seed)
    held_out = [p.file for p in photos if p.file not in calibrating]
    calibration: dict[str, list[np.ndarray]] = {"palm": [], "landmark": []}
    if any(v in STATIC for v in variants):
        log(f"static int8: calibrating on {len(calibrating)} photos")
        inputs = (Built(lambda: Recorder(built["palm", "fp32"].make(), calibration["palm"], 10_000), ""),
                  Built(lambda: Recorder(built["landmark", "fp32"].make(), calibration["landmark"], 10_000), ""))
        with serving(*inputs):
            detect_all(folder, [p for p in photos if p.file in calibrating])
        for model in MODELS:
            for variant in variants:
                if variant in STATIC:
                    make(model, variant, calibration[model])
    log(f"fp32 on {len(photos)} photos")
    crops: dict[str, list[np.ndarray]] = {"palm": [], "landmark": []}
    recording = (Built(lambda: Recorder(built["palm", "fp32"].make(), crops["palm"]), ""),
                 Built(lambda: Recorder(built["landmark", "fp32"].make(), crops["landmark"]), ""))
    with serving(*recording):
        reference = detect_all(folder, photos)
    report: dict[str, Any] = {
        "photos": str(folder), "bundle": {"path": str(bundle), "sha256": sha256(bundle.read_bytes())},
        "versions": versions(), "models": models, "reference_fixtures": fixture_agreement(reference),
        "calibration": {"seed": calibration_seed, "photos": sorted(calibrating), "held_out": held_out,
                        "inputs": {m: len(v) for m, v in calibration.items()}},
        "candidates": {},
    }
    shifted = shifted_photos(ImageLimits.from_settings(settings), folder, photos, workdir / "shifted")
    fp32 = (built["palm", "fp32"], built["landmark", "fp32"])
    with serving(*fp32):
        control = detect_all(shifted, photos)
    report["control_shifted_1px"] = {"stills": compare(control, reference), "fixtures": fixture_agreement(control)}
    clips = render_clips(settings, model_path, folder, clip_photos, hold, seed=1) if clip_photos else []
    reference_clips = clip_counts(settings, paths, clips, fp32) if clips else []
    for palm, landmark in candidates(variants):
        if ("palm", palm) not in built or ("landmark", landmark) not in built:
            continue
        name = f"palm={palm} landmark={landmark}"
        log(name)
        pair = (built["palm", palm], built["landmark", landmark])
        with serving(*pair):
            records = detect_all(folder, photos)
        stills = compare(records, reference)
        clip_figures = None
        if clips and (palm in clip_candidates or landmark in clip_candidates):
            counts = clip_counts(settings, paths, clips, pair)
            frames = sum(len(c) for c in reference_clips)
            clip_figures = {"clips": len(clips), "frames": frames,
                            "same_frames": sum(a == b for ours, ref in zip(counts, reference_clips, strict=True)
                                               for a, b in zip(ours, ref, strict=True))}
        report["candidates"][name] = {"stills": stills, "fixtures": fixture_agreement(records),
                                      "clips": clip_figures, "gate": verdict(stills, clip_figures)}
        if palm in STATIC or landmark in STATIC:  # the same figures on the photos that did not calibrate it
            keep = set(held_out)
            ours, ref = ([r for r in rs if r["file"] in keep] for rs in (records, reference))
            held = compare(ours, ref)
            report["candidates"][name]["held_out"] = {"stills": held, "fixtures": fixture_agreement(ours),
                                                      "reference_fixtures": fixture_agreement(ref),
                                                      "gate": verdict(held, None)}
    log("timing")
    report["timing"] = {}
    for model in MODELS:
        runners = {v: built[model, v].make() for v in ("fp32", *variants) if (model, v) in built}
        report["timing"][model] = time_models(runners, crops[model], seconds)
    return report


def table(report: dict[str, Any]) -> str:
    """The candidates × gate figures × speed as a Markdown table (docs/accuracy.md)."""
    timing = report["timing"]

    def speed(model: str, variant: str) -> str:
        t = timing[model].get(variant)
        return "" if variant == "fp32" or t is None else f"{model} {t['speed_p50']:.2f}× ({t['speed_p10']:.2f}×)"

    rows = [("| palm / landmark | same count | counted right (fp32) | with a hand (fp32) | landmark gap median / "
             "worst | fixtures (fp32) | clip frames agreeing | gate | speed, p50 (p10) |"),
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    fixtures = report["reference_fixtures"]["same_count"]
    control = report.get("control_shifted_1px")
    if control:
        s, g = control["stills"], control["stills"]["landmark_gap"]
        rows.append(f"| fp32 / fp32 on the photos moved 1 px (control) | {s['same_count']}/{s['photos']} | "
                    f"{s['correct']['ours']} ({s['correct']['reference']}) | {s['detected']['ours']} "
                    f"({s['detected']['reference']}) | {100 * (g['median'] or 0):.3f} % / {100 * g['worst']:.1f} % | "
                    f"{control['fixtures']['same_count']} ({fixtures}) | | | |")

    def row(label: str, c: dict[str, Any], fixtures: int, speeds: str) -> str:
        s, clips, gate = c["stills"], c.get("clips"), c["gate"]
        g = s["landmark_gap"]
        failed = [k for k, ok in gate.items() if k != "pass" and not ok]
        clip = f"{clips['same_frames']}/{clips['frames']} ({100 * clips['same_frames'] / clips['frames']:.1f} %)" \
            if clips else ""
        return (f"| {label} | {s['same_count']}/{s['photos']} | {s['correct']['ours']} "
                f"({s['correct']['reference']}) | {s['detected']['ours']} ({s['detected']['reference']}) | "
                f"{100 * (g['median'] or 0):.3f} % / {100 * g['worst']:.1f} % | {c['fixtures']['same_count']} "
                f"({fixtures}) | {clip} | {'pass' if gate['pass'] else 'fails ' + ', '.join(failed)} | {speeds} |")

    for name, c in report["candidates"].items():
        palm, landmark = (part.split("=")[1] for part in name.split())
        rows.append(row(f"{palm} / {landmark}", c, fixtures,
                        "; ".join(x for x in (speed("palm", palm), speed("landmark", landmark)) if x)))
        if "held_out" in c:  # static int8: the photos that did not calibrate it
            held = c["held_out"]
            rows.append(row(f"{palm} / {landmark}, held-out photos only", held,
                            held["reference_fixtures"]["same_count"], ""))
    return "\n".join(rows) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.precision", description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_PHOTOS, help="photos with labels.csv")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--clips", type=int, default=0, metavar="N", help="camera clips from N photos (0: none)")
    parser.add_argument("--clip-variants", default="ov_f32,ov_bf16,ov_bf16_ends2,ov_bf16_ends8",
                        help="candidates that use one of these also run the clips")
    parser.add_argument("--hold", type=int, default=30, help="frames per clip")
    parser.add_argument("--calibration-seed", type=int, default=0,
                        help="which half of each session calibrates the static int8 candidates")
    parser.add_argument("--seconds", type=float, default=20.0, help="timing per model")
    parser.add_argument("--markdown", type=Path, metavar="REPORT", help="print a saved report as a table, run nothing")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(table(json.loads(args.markdown.read_text())))
        return 0
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    report = run(args.folder, variants, clip_photos=args.clips, clip_candidates=args.clip_variants.split(","),
                 hold=args.hold, seconds=args.seconds, log=lambda m: print(m, file=sys.stderr, flush=True),
                 calibration_seed=args.calibration_seed)
    sys.stdout.write(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
