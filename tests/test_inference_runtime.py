"""INFERENCE_RUNTIME × INFERENCE_PRECISION (issue 24): the choice's rules on any CPU, the OpenVINO models with their
end layers kept f32 (and the library internal that keeps them), the start-up check against fp32 and its fallback,
and what a real pool reports. bf16 arithmetic exists only on CPUs with avx512_bf16 or amx_bf16: elsewhere OpenVINO
runs f32 for a bf16 hint, and these tests assert that instead (what hgr reports is what the plugin runs)."""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from hgr.common import metrics
from hgr.common.config import load_settings
from hgr.common.inference import messages as m
from hgr.common.inference.hands.check import CHECK_PHOTOS, check_images, checked_pipeline, counts
from hgr.common.inference.hands.openvino_models import (
    GATED_IR,
    KEEP_F32_ENDS,
    MARKED,
    compile_model,
    ir_digest,
    keep_f32,
    mark_f32,
    marked_ir,
    read,
)
from hgr.common.inference.hands.pipeline import HandPipeline
from hgr.common.inference.hands.runtime import REFERENCE, Choice, choose, cpu_flags, has_bf16
from hgr.common.inference.pool import InferencePool
from hgr.common.inference.worker import inference
from hgr.common.options import DetectOptions, default_options

BF16 = frozenset({"avx2", "avx512_bf16"})
AVX2 = frozenset({"avx2", "fma"})
HERE_BF16 = has_bf16(cpu_flags())


@pytest.mark.parametrize(("runtime", "precision", "flags", "openvino", "chosen"), [
    ("auto", "auto", BF16, True, "openvino/bf16"),   # the default where it pays
    ("auto", "auto", AVX2, True, "litert/fp32"),     # ... and where it does not: OpenVINO f32 is no faster
    ("auto", "auto", BF16, False, "litert/fp32"),    # not installed (the default images)
    ("auto", "fp32", BF16, True, "litert/fp32"),
    ("auto", "bf16", AVX2, True, "openvino/bf16"),   # asked for: the plugin runs f32 there, and says so
    ("litert", "auto", BF16, True, "litert/fp32"),
    ("litert", "fp32", BF16, True, "litert/fp32"),
    ("openvino", "auto", BF16, True, "openvino/bf16"),
    ("openvino", "auto", AVX2, True, "openvino/fp32"),
    ("openvino", "fp32", BF16, True, "openvino/fp32"),
])
def test_the_choice_follows_the_settings_and_the_cpu(runtime: str, precision: str, flags: frozenset[str],
                                                     openvino: bool, chosen: str) -> None:
    assert choose(runtime, precision, flags=flags, openvino=openvino).name == chosen


@pytest.mark.parametrize(("runtime", "precision", "named"), [
    ("litert", "bf16", "LiteRT runs these models in fp32 only"),
    ("openvino", "auto", "HGR_OPENVINO=true"),
    ("auto", "bf16", "pip install 'hgr[openvino]'"),
    ("auto", "int8", "unknown"),
])
def test_a_choice_that_cannot_be_met_is_an_error_that_says_why(runtime: str, precision: str, named: str) -> None:
    with pytest.raises(ValueError, match="INFERENCE_") as e:
        choose(runtime, precision, flags=BF16, openvino=runtime == "litert")
    assert named in str(e.value)


def test_cpu_flags_are_the_first_processors(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n"
                                      "flags\t\t: fpu\n")
    assert cpu_flags(tmp_path / "cpuinfo") == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "absent") == frozenset()


def test_the_start_up_check_refuses_a_choice_the_settings_cannot_meet(tmp_path: Path) -> None:
    from hgr.startup import check_startup

    env = {"HGR_MODEL_PATH": "", "HGR_MODEL_CACHE_DIR": str(tmp_path)}
    (problem,) = check_startup("edge", {**env, "INFERENCE_RUNTIME": "litert", "INFERENCE_PRECISION": "bf16"},
                               env_file=None).errors
    assert problem.startswith("INFERENCE_PRECISION=bf16 needs INFERENCE_RUNTIME=openvino")
    assert check_startup("edge", {**env, "INFERENCE_RUNTIME": "openvino"}, env_file=None).errors == []
    bf16 = check_startup("edge", {**env, "INFERENCE_PRECISION": "bf16"}, env_file=None)
    assert bf16.errors == []
    assert any("no bf16 arithmetic" in w for w in bf16.warnings) == (not HERE_BF16), bf16.warnings
    # the fallback engine runs its own models: the inference settings are not its
    assert check_startup("edge", {**env, "STREAM_PIPELINE": "mediapipe", "INFERENCE_RUNTIME": "litert",
                                  "INFERENCE_PRECISION": "bf16"}, env_file=None).errors == []


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




def _models(model_path: str) -> dict[str, bytes]:
    with zipfile.ZipFile(model_path) as z:
        return {"palm": z.read("hand_detector.tflite"), "landmark": z.read("hand_landmarks_detector.tflite")}


def test_openvino_keeps_the_marked_end_layers_f32(model_path: str) -> None:
    # The library internal the bf16 path stands on (pyproject bounds openvino below its next release): the IR
    # reader turns the `precise` attribute into the node's rt_info, on exactly the layers keep_f32 names.
    for name, tflite in _models(model_path).items():
        graph = read(tflite, 2)
        marked = [op for op in graph.get_ops() if MARKED in op.get_rt_info()]
        assert 0 < len(marked) < len(graph.get_ops()) // 2, name
        assert not any(MARKED in op.get_rt_info() for op in read(tflite, None).get_ops())
        # and the plugin says what it runs: bf16 only where the CPU computes in it
        assert compile_model(tflite, name, "bf16").precision == ("bf16" if HERE_BF16 else "fp32")
        fp32 = compile_model(tflite, name, "fp32")
        assert fp32.precision == "fp32"
        # one thread per worker, not pinned: pinned, every worker process's stream sat on the same first core
        assert fp32.compiled.get_property("INFERENCE_NUM_THREADS") == 1
        assert fp32.compiled.get_property("ENABLE_CPU_PINNING") is False


def test_the_ir_built_at_start_up_is_the_one_the_gate_passed(model_path: str, tmp_path: Path) -> None:
    # Built from the pinned bundle as every worker builds it: the bytes research.precision held to the gate. A new
    # OpenVINO release that writes the IR otherwise lands here first, before any count moves.
    for name, tflite in _models(model_path).items():
        folder = tmp_path / name
        folder.mkdir()
        ends = KEEP_F32_ENDS[name]
        assert ir_digest(marked_ir(tflite, (ends, ends), folder)) == GATED_IR[name], name


def _pipe(model_path: str, choice: Choice, min_detection: float = 0.5) -> HandPipeline:
    return HandPipeline(model_path, min_detection=min_detection, choice=choice)


def _counting_differently(model_path: str, asked: Choice, made: list[HandPipeline]) -> Callable[[Choice], HandPipeline]:
    """A real candidate that answers differently: ``asked`` with a palm threshold that finds no hand (each pipeline
    made is appended to ``made``)."""
    def make(choice: Choice) -> HandPipeline:
        made.append(_pipe(model_path, choice, min_detection=0.9999 if choice == asked else 0.5))
        return made[-1]

    return make


def test_the_check_photos_have_one_photo_for_each_count_and_fp32_finds_hands_on_them(model_path: str) -> None:
    images = check_images()
    labels = [line.split(",")[1] for line in (CHECK_PHOTOS / "labels.csv").read_text().splitlines()[1:]]
    assert sorted(labels) == ["0", "1", "2", "3", "4", "5"] and len(images) == 6
    pipe = _pipe(model_path, REFERENCE)
    found = [counts(pipe, rgb, 0.5) for _, rgb in images]
    assert sum(1 for c in found if c) >= 5, found  # a check on photos without hands would check nothing


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_openvino_passes_the_check_and_serves(model_path: str, precision: str) -> None:
    asked = Choice("openvino", precision)
    checked = checked_pipeline(lambda c: _pipe(model_path, c), asked, 0.5)
    assert checked.fallback == "" and checked.asked == asked
    assert checked.pipeline.choice == Choice("openvino", precision if HERE_BF16 else "fp32")


def test_a_candidate_that_counts_differently_falls_back_to_fp32_loudly(
        model_path: str, caplog: pytest.LogCaptureFixture) -> None:
    asked = Choice("openvino", "fp32")
    made: list[HandPipeline] = []
    with caplog.at_level(logging.ERROR, logger="hgr.inference"):
        checked = checked_pipeline(_counting_differently(model_path, asked, made), asked, 0.5)
    assert checked.pipeline.choice == REFERENCE and checked.pipeline is made[0]
    assert checked.fallback.startswith("openvino/fp32 counted differently from fp32 on ")
    assert "p_0001.jpg: [] (fp32: [5])" in checked.fallback, checked.fallback
    assert "falls back to litert/fp32" in caplog.text
    with pytest.raises(RuntimeError, match="closed"):  # the refused pipeline is let go
        counts(made[1], check_images()[0][1], 0.5)


def test_a_candidate_that_cannot_load_falls_back_too(model_path: str) -> None:
    def make(choice: Choice) -> HandPipeline:
        return _pipe(model_path if choice == REFERENCE else str(CHECK_PHOTOS / "labels.csv"), choice)

    checked = checked_pipeline(make, Choice("openvino", "bf16"), 0.5)
    assert checked.pipeline.choice == REFERENCE
    assert checked.fallback.startswith("openvino/bf16 could not be loaded: ")
    assert "not a model bundle" in checked.fallback


def test_the_reference_is_not_checked_against_itself(model_path: str) -> None:
    made: list[Choice] = []

    def make(choice: Choice) -> HandPipeline:
        made.append(choice)
        return _pipe(model_path, choice)

    checked = checked_pipeline(make, REFERENCE, 0.5)
    assert made == [REFERENCE] and checked.fallback == ""


async def test_a_pool_reports_what_its_workers_run(model_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_RUNTIME", "openvino")
    monkeypatch.setenv("INFERENCE_PRECISION", "auto")
    settings = load_settings()
    pool = InferencePool(settings, {"full": model_path}, service="test_runtime", workers=1)
    await pool.start()
    try:
        runs = f"openvino/{'bf16' if HERE_BF16 else 'fp32'}"
        assert pool.stats()["inference"] == {"asked": runs, "running": {runs: 1}, "fallbacks": []}
        runtime, precision = runs.split("/")
        assert metrics.INFERENCE_WORKERS.labels("test_runtime", runtime, precision)._value.get() == 1
        assert metrics.INFERENCE_FALLBACK.labels("test_runtime")._value.get() == 0
        photo = CHECK_PHOTOS / "p_0001.jpg"  # five fingers (labels.csv)
        result = await pool.submit(photo.read_bytes(), default_options(settings))
        assert [h["fingers"] for h in result["hands"]] == [5]
        # A worker that fell back says so; /status and the gauge show it (the reason as the worker gave it).
        pool._worker_ready(0, m.Ready(1, m.Inference("full", "litert", "fp32", runs, "p_0001.jpg: [4] (fp32: [5])")))
        assert pool.stats()["inference"]["fallbacks"] == ["full: p_0001.jpg: [4] (fp32: [5])"]
        assert metrics.INFERENCE_FALLBACK.labels("test_runtime")._value.get() == 1
        assert metrics.INFERENCE_WORKERS.labels("test_runtime", "litert", "fp32")._value.get() == 1
        if runs != "litert/fp32":  # what no worker runs any more has no series
            assert REGISTRY.get_sample_value("hgr_inference_workers", {"service": "test_runtime", "runtime": runtime,
                                                                       "precision": precision}) is None
    finally:
        await pool.close()


async def test_a_pool_hears_of_another_variant_when_a_worker_makes_it(
        model_path: str, lite_model_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lite variant's pipeline is made and checked on its first frame, after Ready: the worker says what runs
    it (a VariantReady, before that frame's answer), and the pool counts it as it counts the default's."""
    monkeypatch.setenv("INFERENCE_RUNTIME", "openvino")
    monkeypatch.setenv("INFERENCE_PRECISION", "auto")
    settings = load_settings()
    pool = InferencePool(settings, {"full": model_path, "lite": lite_model_path}, service="test_variants", workers=1)
    await pool.start()
    runs = f"openvino/{'bf16' if HERE_BF16 else 'fp32'}"
    runtime, precision = runs.split("/")
    try:
        assert [i.variant for i in pool._inference[0]] == ["full"]  # lite not made yet
        photo = (CHECK_PHOTOS / "p_0001.jpg").read_bytes()  # five fingers
        result = await pool.submit(photo, DetectOptions(model="lite"))
        assert [h["fingers"] for h in result["hands"]] == [5]
        # heard before the frame's answer: the check passed, and one worker still counts once
        assert pool._inference[0] == [m.Inference("full", runtime, precision, runs),
                                      m.Inference("lite", runtime, precision, runs)]
        assert pool.stats()["inference"] == {"asked": runs, "running": {runs: 1}, "fallbacks": []}
        assert metrics.INFERENCE_WORKERS.labels("test_variants", runtime, precision)._value.get() == 1
        assert metrics.INFERENCE_FALLBACK.labels("test_variants")._value.get() == 0
        # A lite check that refused the candidate (a real one: the palm threshold that finds no hand), told as the
        # worker tells it: the worker runs both kinds, counted once each, and one fallback, named by its variant.
        asked = Choice(runtime, precision)
        made: list[HandPipeline] = []
        checked = checked_pipeline(_counting_differently(lite_model_path, asked, made), asked, 0.5)
        checked.pipeline.close()
        pool._variant_ready(0, inference("lite", checked))
        stats = pool.stats()["inference"]
        assert stats["running"] == {runs: 1, "litert/fp32": 1}
        assert stats["fallbacks"] == [f"lite: {checked.fallback}"] and "p_0001.jpg: [] (fp32: [5])" in checked.fallback
        assert metrics.INFERENCE_WORKERS.labels("test_variants", "litert", "fp32")._value.get() == 1
        assert metrics.INFERENCE_FALLBACK.labels("test_variants")._value.get() == 1
    finally:
        await pool.close()
    # a worker gone takes its variants with it
    assert pool.stats()["inference"] == {"asked": None, "running": {}, "fallbacks": []}
    assert metrics.INFERENCE_FALLBACK.labels("test_variants")._value.get() == 0
    assert REGISTRY.get_sample_value("hgr_inference_workers", {"service": "test_variants", "runtime": runtime,
                                                               "precision": precision}) is None
