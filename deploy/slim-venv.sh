#!/usr/bin/env bash
# Run by both Dockerfiles' build stage on /opt/venv: `slim-venv.sh KEEP_FALLBACK KEEP_OPENVINO [GONE...]`.
# The lock installs everything; this takes out what an image does not serve with (docs/deployment.md "Image size"):
# - KEEP_FALLBACK (HGR_FALLBACK_ENGINE): the serving path runs the LiteRT pipeline for stills and streams alike;
#   MediaPipe Tasks is only the fallback engine (STREAM_PIPELINE=mediapipe). Unless `true`, mediapipe goes with
#   the packages only it requires (~200 MB: matplotlib, fontTools, …).
# - KEEP_OPENVINO (HGR_OPENVINO): OpenVINO runs the hand models in bf16 (INFERENCE_RUNTIME=openvino), worth it
#   only on CPUs with avx512_bf16/amx_bf16; elsewhere the images run LiteRT fp32. Unless `true`, openvino and
#   openvino-telemetry (which only it requires) go (185 MB; kept, it loses its GPU and NPU plugins, 64 MB, below).
# GONE: packages the Dockerfile removed itself (the hub's av), so that `pip check` does not count them.
# Then, in every image, files no serving path opens, and the symbol tables of the shared libraries (below); last,
# the checks run the bundle's two hand models, which the Dockerfile has put at /opt/hgr/models before this.
# Each flag is `true` or `false`, nothing else: a `--build-arg HGR_OPENVINO=1` would otherwise build, silently,
# an image without what it asked for.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: slim-venv.sh KEEP_FALLBACK KEEP_OPENVINO [GONE...]" >&2
  exit 64
fi
keep_fallback=$1
keep_openvino=$2
shift 2
for flag in "$keep_fallback" "$keep_openvino"; do
  if [ "$flag" != true ] && [ "$flag" != false ]; then
    echo "slim-venv.sh: '$flag' is neither true nor false (HGR_FALLBACK_ENGINE, HGR_OPENVINO)" >&2
    exit 64
  fi
done
if [ "$keep_fallback" != true ]; then
  pip uninstall -y mediapipe matplotlib fonttools kiwisolver contourpy cycler pyparsing python-dateutil six \
    absl-py sounddevice cffi pycparser
fi
if [ "$keep_openvino" != true ]; then
  pip uninstall -y openvino openvino-telemetry
fi
# `pip check` then proves nothing left behind needs what went, but for two known gaps: hgr's own declared mediapipe
# (the project keeps it: the reference, the fallback) and the GONE packages; and, where the fallback stays,
# mediapipe's opencv-contrib-python (the GUI build the lock leaves out: the headless build provides the same cv2).
# openvino needs no exception: hgr asks for it only in its extra `openvino`, which pip check does not hold an
# installation to (a kept openvino without openvino-telemetry would still be caught).
gone=mediapipe
for name in "$@"; do gone="$gone\\|$name"; done
broken="$(pip check | grep -v -e "^hgr [0-9.]* requires \\($gone\\), which is not installed" \
  -e "^mediapipe [0-9.]* requires opencv-contrib-python, which is not installed" || true)"
if [ -n "$broken" ] && [ "$broken" != "No broken requirements found." ]; then
  echo "$broken"
  exit 1
fi
site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
# LiteRT's WebGPU accelerator (19 MB) is loaded only for a GPU-accelerated CompiledModel; hgr runs the hand models
# on the CPU through the Interpreter (XNNPACK), which never opens it (a detection without it logs the same lines).
rm -f "$site/ai_edge_litert/libLiteRtWebGpuAccelerator.so"
# LiteRT's ahead-of-time tooling for NPUs: tools/apply_plugin_main (8.3 MB), which only ai_edge_litert.aot runs
# (as a subprocess), and the vendors' compiler plugins (vendors/*/compiler/, 4.4 MB), which only an Environment
# (a CompiledModel's) looks up. The Interpreter opens neither: a detection on both hand models opens and runs
# nothing under tools/ or vendors/ (strace of `hgr detect`, on LiteRT and on OpenVINO).
rm -rf "$site/ai_edge_litert/tools/apply_plugin_main" "$site"/ai_edge_litert/vendors/*/compiler
if [ "$keep_openvino" = true ]; then
  # The images serve on the CPU plugin alone: the GPU and NPU plugins (52 MB) find no OpenCL or NPU driver in a
  # container, cache.json (8.8 MB) is the GPU plugin's kernel-tuning table (no other library names it), and
  # include/ holds C++ headers for building against OpenVINO (3.2 MB). The checks below compile both hand models.
  rm -rf "$site/openvino/libs/libopenvino_intel_gpu_plugin.so" "$site/openvino/libs/libopenvino_intel_npu_plugin.so" \
    "$site/openvino/libs/cache.json" "$site/openvino/include"
  # OpenVINO reads hgr's models through two front ends only: tensorflow_lite (the bundle's tflite) and ir (the IR
  # that openvino_models.py writes and reads back for bf16). The others, ONNX, PaddlePaddle, PyTorch, TensorFlow,
  # JAX and GGUF (19 MB), and their Python packages under frontend/ (3.7 MB) read formats hgr never has. The
  # front-end manager lists what is in libs/; the one import of them, `import openvino`'s model converter (ovc),
  # takes the TensorFlow package's absence as "no TensorFlow bindings" (an ImportError it catches). Checked below:
  # exactly those two front ends are left, and both hand models are read from the tflite (f32) and the IR (bf16).
  rm -rf "$site"/openvino/libs/libopenvino_{onnx,paddle,pytorch,tensorflow,jax,gguf}_frontend.so* \
    "$site"/openvino/frontend/{onnx,paddle,pytorch,tensorflow,jax}
fi
# The wheels' shared libraries keep their symbol tables and debug sections (uvloop's loop.so: 13.6 MB, 1.6 MB
# without; PyAV's modules, PIL, yaml, LiteRT's wrapper, OpenCV's codecs: ~55 MB in all). `strip --strip-unneeded`
# drops only what neither the dynamic loader nor an import needs (the dynamic symbol table stays), as
# distributions strip their own packages. Not every file survives it: numpy's openblas and gfortran, relinked by
# the wheel's repair tool (patchelf), no longer load once stripped ("ELF load command address/offset not
# page-aligned"). So each library is stripped into a copy, and the copy replaces it only if it is smaller and the
# dynamic loader loads it (dlopen in a fresh process); anything strip refuses, gains nothing on (most are stripped
# already), or fails to load stays as shipped (so also what does not load here even unstripped: LiteRT's unused
# Intel dispatch library, and with the fallback engine libmediapipe.so, whose libEGL only the runtime stage installs).
# The imports and inferences below then run on the stripped files.
loads() { python -c 'import ctypes, sys; ctypes.CDLL(sys.argv[1])' "$1"; }  # (a function: quiet if it aborts)
stripped=0
saved=0
kept=""
while IFS= read -r -d '' lib; do
  copy="$lib.stripped"
  if ! strip --strip-unneeded -o "$copy" "$lib" 2>/dev/null \
      || [ "$(stat -c %s "$copy")" -ge "$(stat -c %s "$lib")" ]; then
    rm -f "$copy"
  elif ! loads "$copy" 2>/dev/null; then
    rm -f "$copy"
    kept="$kept ${lib#"$site/"}"
  else
    saved=$((saved + $(stat -c %s "$lib") - $(stat -c %s "$copy")))
    chmod --reference="$lib" "$copy"
    mv "$copy" "$lib"
    stripped=$((stripped + 1))
  fi
done < <(find /opt/venv -type f \( -name '*.so' -o -name '*.so.*' \) -print0)
echo "slim-venv.sh: stripped $stripped shared libraries (-$((saved / 1000000)) MB); left as shipped, not loadable once stripped:$kept"
# What the servers import at start, imported once here: a missing library fails the build, not the container.
python -c "import hgr.servers, hgr.common.inference.engine, hgr.common.inference.hands"
# Both hand models load and run once on LiteRT, as every worker does at start (the stripped LiteRT, no WebGPU).
python - <<'PY'
import numpy as np
from ai_edge_litert.interpreter import Interpreter
from hgr.common.inference.hands.bundle import read_models
for model in read_models("/opt/hgr/models/hand_landmarker.task"):
    interpreter = Interpreter(model_content=model, num_threads=1)
    interpreter.allocate_tensors()
    first = interpreter.get_input_details()[0]
    interpreter.set_tensor(first["index"], np.full(first["shape"], 0.5, np.float32))
    interpreter.invoke()
PY
if [ "$keep_openvino" = true ]; then
  # The same for the bf16 path: the CPU plugin is the one device left, and both hand models compile and run on it
  # at both precisions (where the CPU lacks bf16 arithmetic the plugin runs f32, as it does at run time).
  python - <<'PY'
import numpy as np
import openvino
from hgr.common.inference.hands.bundle import read_models
from hgr.common.inference.hands.openvino_models import compile_model
devices = openvino.Core().available_devices
assert devices == ["CPU"], devices
readers = sorted(openvino.frontend.FrontEndManager().get_available_front_ends())
assert readers == ["ir", "tflite"], readers
for name, model in zip(("palm", "landmark"), read_models("/opt/hgr/models/hand_landmarker.task")):
    for precision in ("fp32", "bf16"):
        compiled = compile_model(model, name, precision)
        compiled.set_tensor(0, np.full((1, 192, 192, 3) if name == "palm" else (1, 224, 224, 3), 0.5, np.float32))
        compiled.invoke()
PY
fi
pip uninstall -y pip setuptools
