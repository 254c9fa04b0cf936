# The only commands a newcomer needs: `make demo` and `make test`.
# Both create .venv with Python 3.13 and install the three distributions into it.

# The first Python 3.13 that actually runs (a pyenv shim may exist and still fail).
PYTHON ?= $(shell for p in python3.13 $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13 2>/dev/null); do \
  "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && { echo "$$p"; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RAY_STAMP := $(VENV)/.installed-ray
SOURCES := pyproject.toml qsm_backtrader/pyproject.toml qsm_vnpy/pyproject.toml

.PHONY: demo test test-ray test-under-load install install-ray lint bench soak dist clean

demo: $(STAMP)
	$(BIN)/python -m qsm_vnpy.examples.minute_bars bars-002050.csv --days 25 --seed 3
	@# --force: one demo strategy names an engine ('ib') that is not installed, to show BLOCKED
	$(BIN)/strategy-manager --config-dir examples/demo-config examples import --force demo backtrader vnpy
	$(BIN)/strategy-manager --config-dir examples/demo-config run --clock sim --start 2026-11-24T09:00+08:00 --speed 600 --for 6.5h
	@echo "The demo's store: $(BIN)/strategy-manager --config-dir examples/demo-config status"

# Every test, the Ray executor's included (they need the ray extra, installed here).
test: $(RAY_STAMP)
	$(BIN)/python -m pytest -q

# The Ray executor's tests alone: simulated clusters (a head and 3 nodes) through node
# crashes and frozen processes, a few minutes.
test-ray: $(RAY_STAMP)
	$(BIN)/python -m pytest -q -m ray tests/scaleout

install-ray: $(RAY_STAMP)

$(RAY_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[ray]'
	@$(BIN)/python -c 'import ray' || { echo "Ray did not install into $(VENV) (a cp313 wheel from PyPI is needed)" >&2; exit 1; }
	touch $(RAY_STAMP)

# The suite RUNS times in a row (3 unless told) beside two CPU-bound processes (one per
# core): tests wait on conditions, never on an idle machine.
RUNS ?= 3
test-under-load: $(RAY_STAMP)
	@set -e; hogs=""; \
	for core in 1 2; do sh -c 'while :; do :; done' & hogs="$$hogs $$!"; done; \
	trap 'kill $$hogs 2>/dev/null' EXIT INT TERM; \
	for run in $$(seq $(RUNS)); do echo "--- make test beside two CPU hogs: run $$run of $(RUNS)"; $(MAKE) --no-print-directory test; done

install: $(STAMP)

$(STAMP): $(SOURCES)
	@if [ -z "$(PYTHON)" ]; then \
	  echo "Python 3.13 not found. Install it (e.g. 'pyenv install 3.13') or run 'make PYTHON=/path/to/python3.13'." >&2; \
	  exit 1; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e ./qsm_backtrader -e ./qsm_vnpy
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check strategy_manager qsm_backtrader qsm_vnpy tests examples benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

soak: $(STAMP)
	$(BIN)/python -m tests.reliability.soak --kills 30 --outage 30 --flap 120 --write docs/reliability.md

# The three wheels, for `pip install --find-links dist "quant-strategy-manager[all]"`.
# Stale build/ folders are removed first: setuptools would put deleted files back in.
dist: $(STAMP)
	rm -rf dist build qsm_backtrader/build qsm_vnpy/build
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist . ./qsm_backtrader ./qsm_vnpy
	@ls dist

clean:
	rm -rf $(VENV) .qsm dist build qsm_backtrader/build qsm_vnpy/build bars-*.csv
