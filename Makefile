# Two entry points (see README): `make demo` runs a small real training on a local Ray; `make test` runs the suite.
# Each creates the virtual environment it needs from nothing. torch is pinned to the CPU build.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e ".[dev]" $(TORCH_PIN)
	touch $@

.PHONY: install demo test test-all lint bench
install: $(BIN)/.installed

demo: install
	$(BIN)/python examples/quickstart.py

# The CI suite: everything but the `slow` end-to-end runs (live `ray job submit`, driver crash + resume,
# two-node cluster, 1M-row streaming), which `make test-all` adds.
test: install
	$(BIN)/ruff check raystx tests examples bench jobs
	$(BIN)/ruff format --check raystx tests examples bench jobs
	$(BIN)/python -m pytest -q -m "not slow" --durations=15 tests

test-all: install
	$(BIN)/ruff check raystx tests examples bench jobs
	$(BIN)/python -m pytest -q --durations=25 tests

lint: install
	$(BIN)/ruff check raystx tests examples bench jobs
	$(BIN)/ruff format --check raystx tests examples bench jobs

bench: install
	$(BIN)/python bench/run_all.py --data-dir ../shared/data
