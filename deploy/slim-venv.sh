#!/usr/bin/env bash
# Run by both Dockerfiles' build stage on /opt/venv: `slim-venv.sh KEEP_FALLBACK KEEP_OPENVINO [GONE...]`.
# The lock installs everything; this takes out what an image does not serve with (docs/deployment.md "Image size"):
# - KEEP_FALLBACK (HGR_FALLBACK_ENGINE): the serving path runs the LiteRT pipeline for stills and streams alike;
#   MediaPipe Tasks is only the fallback engine (STREAM_PIPELINE=mediapipe). Unless `true`, mediapipe goes with
#   the packages only it requires (~200 MB: matplotlib, fontTools, …).
# - KEEP_OPENVINO (HGR_OPENVINO): OpenVINO runs the hand models in bf16 (INFERENCE_RUNTIME=openvino), worth it
#   only on CPUs with avx512_bf16/amx_bf16; elsewhere the images run LiteRT fp32. Unless `true`, openvino and
#   openvino-telemetry (which only it requires) go (185 MB).
# GONE: packages the Dockerfile removed itself (the hub's av), so that `pip check` does not count them.
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
# What the servers import at start, imported once here: a missing library fails the build, not the container.
python -c "import hgr.servers, hgr.common.inference.engine, hgr.common.inference.hands"
if [ "$keep_openvino" = true ]; then
  # The same for the bf16 path: the runtime imports and its CPU plugin (the one device the images serve on) loads.
  python -c "import openvino; devices = openvino.Core().available_devices; assert 'CPU' in devices, devices"
fi
pip uninstall -y pip setuptools
