#!/usr/bin/env bash
# Run by both Dockerfiles' build stage on /opt/venv: `deploy/slim-venv.sh KEEP_FALLBACK [GONE...]`.
# The serving path runs the LiteRT pipeline for stills and streams alike; MediaPipe Tasks is only the
# fallback engine (STREAM_PIPELINE=mediapipe). Unless KEEP_FALLBACK is `true`, mediapipe goes with the
# packages only it requires (~200 MB: matplotlib, fontTools, …; docs/deployment.md "Image size").
# `pip check` then proves nothing left behind needs what went, but hgr's own declared mediapipe (the project
# keeps it: the reference, the fallback) and the GONE packages the Dockerfile removed itself (the hub's av).
set -euo pipefail
keep_fallback=$1
shift
if [ "$keep_fallback" != true ]; then
  pip uninstall -y mediapipe matplotlib fonttools kiwisolver contourpy cycler pyparsing python-dateutil six \
    absl-py sounddevice cffi pycparser
fi
gone=mediapipe
for name in "$@"; do gone="$gone\\|$name"; done
broken="$(pip check | grep -v -e "^hgr [0-9.]* requires \\($gone\\), which is not installed" || true)"
if [ -n "$broken" ] && [ "$broken" != "No broken requirements found." ]; then
  echo "$broken"
  exit 1
fi
# What the servers import at start, imported once here: a missing library fails the build, not the container.
python -c "import hgr.servers, hgr.common.inference.engine, hgr.common.inference.hands"
pip uninstall -y pip setuptools
