# Two commands set up everything on first use and skip what is already done:
#   make train      the main job: `pysnn train` (HLL pred-sim MLP on digits); ARGS="..." adds flags
#   make test       the test suite;                                           ARGS="..." adds pytest flags
# First use creates .venv with the CPU torch build and the test dependencies,
# then compiles the kernels ahead of time in editable mode, so the tests and
# the command line import this checkout and its compiled pysnn/_C.
# Override the interpreter or the torch requirement:
#   make test PYTHON=python3.12 TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV ?= .venv
ARGS ?=
PY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.pysnn-deps
BUILD_STAMP := $(VENV)/.pysnn-built
SOURCES := $(shell find csrc -type f) setup.py pyproject.toml pysnn/_build.py

.PHONY: train test build lint clean

train: $(BUILD_STAMP)
	$(VENV)/bin/pysnn train $(ARGS)

test: $(BUILD_STAMP)
	$(PY) -m pytest $(ARGS)

build: $(BUILD_STAMP)

lint: $(DEPS_STAMP)
	scripts/check_format.sh

$(DEPS_STAMP): requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -r requirements-dev.txt
	# --no-deps: never a second torch (nor Tonic's audio stack, librosa and numba, unused here).
	# Peers the tests and `pysnn bench lif --peers` compare against; nirtorch, the independent
	# NIR interpreter of the tests; Tonic, the reader of the event data sets, and what it imports.
	$(PY) -m pip install -q --no-deps spikingjelly loguru snntorch nirtorch tonic importRosbag expelliarmus
	touch $@

# ninja (from requirements-dev.txt) compiles the sources in parallel; an
# incremental rebuild recompiles only what changed.
$(BUILD_STAMP): $(DEPS_STAMP) $(SOURCES)
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	touch $@

clean:
	rm -rf build pysnn/_C*.so *.egg-info
