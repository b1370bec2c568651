# The two commands of the README: `make run` (the all-in-one service) and `make test` (the whole suite).
# Both create .venv on first use from the lock (requirements-test.txt, exact versions with hashes) and
# make it again when the lock or pyproject.toml changes. `make lock` refreshes the lock; `make test-latest`
# runs the suite on the newest releases within pyproject's ranges (docs/deployment.md "Dependencies").

VENV   ?= .venv
PY     := $(VENV)/bin/python
SHARED ?= ../shared
LATEST ?= .venv-latest

# Use the project's shared model bundle when it is next to the checkout (developers, CI); otherwise
# `hgr` finds, downloads or builds the model itself (see README "Model").
ifneq ($(wildcard $(SHARED)/models/hand_landmarker.task),)
export HGR_MODEL_PATH ?= $(abspath $(SHARED)/models/hand_landmarker.task)
endif

# Tools installed with the package (hgr, hadolint from the test extras) are found without activating.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: run test check checks install lock test-latest images bench docs-ui clean

# Exactly the lock, nothing else: a new venv, every package at its pinned version and hash, no resolution
# (--no-deps: the lock is the whole closure). The lock leaves out opencv-contrib-python, the GUI build of
# OpenCV that mediapipe asks for; the headless build it holds provides the same `cv2`.
$(VENV)/.installed: pyproject.toml requirements-test.txt
	python3 -m venv --clear $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements-test.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -c "import cv2, mediapipe; print('cv2', cv2.__version__, '| mediapipe', mediapipe.__version__)"
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/hgr up

test: install checks

# Static checks first (seconds): ruff over the tree, mypy --strict over the package, research/ and the tests
# (one run, configured in [tool.mypy]); then every test, with the coverage of the test process (servers
# started as processes are not counted) against the floor in [tool.coverage.report].
checks:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -ra --cov --cov-report=term:skip-covered

# The fast tier while you work: the same static checks, then the tests that need no service, no model and
# no server process (tests/conftest.py holds each test to that), in about a minute.
check: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -ra -m "not service" -p no:cacheprovider

# Both lock files from one resolution: requirements-test.txt (runtime + test + the build backend) first,
# then requirements.txt (runtime + build backend, what the images install) constrained to the same versions.
# Universal (every platform and Python the ranges admit), hashes for every file, no index or path of
# this machine in the output. Besides pyproject.toml, uv reads LOCK_EXTRA: the build backend, and
# backports-strenum below 1.3 (ai-edge-litert asks for it on every Python; 1.3 declares Python < 3.11,
# an upper bound uv does not apply when it resolves).
LOCK_EXTRA = 'setuptools>=77' 'backports-strenum<1.3'
UV_COMPILE = $(VENV)/bin/uv pip compile pyproject.toml - --generate-hashes --universal --python-version 3.11 \
	--no-emit-package opencv-contrib-python --custom-compile-command 'make lock' -q
lock: install
	printf '%s\n' $(LOCK_EXTRA) | $(UV_COMPILE) --upgrade --extra test --extra openvino -o requirements-test.txt
	printf '%s\n' $(LOCK_EXTRA) | $(UV_COMPILE) -c requirements-test.txt --extra openvino -o requirements.txt

# The newest releases within pyproject's ranges, in a venv of their own, then the whole suite on them.
test-latest:
	python3 -m venv --clear $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q -e '.[test]'
	@# mediapipe pulls in opencv-contrib-python; keep the headless build the project declares.
	$(LATEST)/bin/python -m pip uninstall -q -y opencv-contrib-python opencv-python
	$(LATEST)/bin/python -m pip install -q --force-reinstall --no-deps \
	  "opencv-python-headless==$$($(LATEST)/bin/python -m pip show opencv-python-headless | sed -n 's/^Version: //p')"
	$(LATEST)/bin/python -m pip list --format=freeze > $(LATEST)/versions.txt
	HGR_DEPS=latest $(MAKE) checks VENV=$(LATEST)

# Both images from the lock (stand-in base images where no registry is reachable), then the smoke test.
images: install
	deploy/dev/stand-in-bases.sh
	$(PY) -m pytest -q -ra tests/test_scenario_images.py

# The package's 36 sample photos, or the full labelled set beside the checkout when it is there.
bench: install
	$(VENV)/bin/hgr bench $(if $(wildcard ../shared/data/hands/labels.csv),--photos ../shared/data/hands)

# Refresh the Swagger UI the hub serves at /docs (hub/docs_ui/, from npm's swagger-ui-dist; records version
# and SHA-256 in hub/docs_ui/vendored.txt, which tests/test_apidocs.py checks). `make docs-ui UI=5.35.0` pins one.
docs-ui:
	deploy/dev/docs-ui.sh $(UI)

clean:
	rm -rf $(VENV) $(LATEST) .pytest_cache artifacts
