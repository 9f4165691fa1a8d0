# One-command set-up for a fresh machine (Python 3.11, x86-64, CPU, root).
# Every step leaves a stamp in .venv/.stamps, so re-running `make setup` is a no-op.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
PIP     := $(VPY) -m pip
STAMPS  := $(VENV)/.stamps
GAMES   ?= 1

.PHONY: setup test play bench clean-venv FORCE
setup: $(STAMPS)/stoxbar

$(STAMPS)/venv:
	$(PY) -m venv $(VENV)
	mkdir -p $(STAMPS) && touch $@

# CPU build of torch 2.13.0: the plain pin takes the wheel that lies on this machine's disk.
$(STAMPS)/torch: $(STAMPS)/venv
	$(PIP) install "torch==2.13.0"
	touch $@

$(STAMPS)/openblas:
	@mkdir -p $(STAMPS)
	dpkg -s libopenblas-dev >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-dev)
	touch $@

# ngspice: the line-parasitics solver is validated against it by the tests (tests/test_parasitics.py).
$(STAMPS)/ngspice:
	@mkdir -p $(STAMPS)
	command -v ngspice >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ngspice)
	touch $@

# aihwkit's compiled core must match the installed torch: build 1.2.0 from its sdist against it.
# --no-deps: its metadata asks for torchvision (unused by the core, and it would replace torch).
$(STAMPS)/aihwkit: $(STAMPS)/torch $(STAMPS)/openblas
	$(PIP) install "cmake>=4.2.1" "scikit-build>=0.18.1" "pybind11>=3.0.1" ninja setuptools wheel mypy
	# its build calls `stubgen` (from mypy), so the venv's bin must be on PATH
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" MAKEFLAGS= $(PIP) install --no-build-isolation --no-deps --no-binary aihwkit "aihwkit==1.2.0"
	touch $@

# The package's module list: rewritten only when a module is added or removed (the strict editable
# install below links the files the package has, so a new module needs a re-install).
$(STAMPS)/modules: FORCE
	@mkdir -p $(STAMPS)
	@find . -name '*.py' -not -path './.venv/*' -not -path './tests/*' -not -path './benchmarks/*' \
	  -not -path './examples/*' -not -path './build/*' -not -path './runs/*' | sort > $@.new
	@cmp -s $@.new $@ || mv $@.new $@; rm -f $@.new

# stoxbar itself, editable; its dependencies except torch/aihwkit (installed above) come from pyproject.
# The editable install also builds the native kernels (setup.py: csrc/*.cpp -> stoxbar/_native*.so).
# Strict mode: the installed package is a tree of links to the package's own files only, so tests/,
# benchmarks/, examples/, setup.py's folder-mates and .venv/ are not importable as stoxbar.* (the
# repository root is the package's folder).
$(STAMPS)/stoxbar: $(STAMPS)/aihwkit $(STAMPS)/ngspice $(STAMPS)/modules pyproject.toml setup.py $(wildcard csrc/*)
	$(PIP) install $$($(VPY) -c "import tomllib;p=tomllib.load(open('pyproject.toml','rb'))['project'];print(' '.join(repr(d) for d in p['dependencies']+p['optional-dependencies']['dev'] if not d.startswith(('torch','aihwkit'))))" | tr -d "'")
	$(PIP) install --no-deps --no-build-isolation -e . --config-settings editable_mode=strict
	touch $@

test: setup
	$(VENV)/bin/python -m pytest tests

play: setup
	$(VENV)/bin/stoxbar play --games $(GAMES)

bench: setup
	$(VENV)/bin/python benchmarks/bench_tile.py
	$(VENV)/bin/python benchmarks/bench_stpn.py
	$(VENV)/bin/python benchmarks/bench_sweep.py
	$(VENV)/bin/python benchmarks/bench_analyze.py
	$(VENV)/bin/python benchmarks/bench_training_step.py --repeats 60
	$(VENV)/bin/python benchmarks/bench_parasitics.py

clean-venv:
	rm -rf $(VENV)
