# The README's two commands: `make demo` and `make test`. Each sets up what it needs on a
# fresh clone (a virtual environment in .venv, pinned by constraints.txt) and then runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= tf-cpu,onnx,dev
PYTEST_ARGS ?=
# test processes in parallel: up to 4 (each imports torch and TensorFlow, ~2 GB)
JOBS ?= $(shell $(PYTHON) -c "import os; print(min(4, os.cpu_count() or 1))")

.PHONY: demo test test-fast fuzz setup onnx2tf docs bench clean zoo zoo-smoke zoo-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# one stamp per set of extras: make demo installs less than make test
$(VENV)/.installed-%: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$*]"
	touch $@

setup: $(VENV)/.installed-$(EXTRAS)

demo: $(VENV)/.installed-tf-cpu
	$(BIN)/xlate demo

# onnx2tf (the ONNX fallback's converter) lives in its own venv: it pins an older TensorFlow stack
onnx2tf:
	PYTHON311=$(PYTHON) bash scripts/setup_onnx2tf.sh

test: setup onnx2tf zoo-venv
	$(BIN)/python -m pytest -q -n $(JOBS) $(PYTEST_ARGS)
	$(ZOO) scripts/zoo.py run --smoke --jobs $(ZOO_JOBS)

test-fast: setup
	$(BIN)/python -m pytest -q -n $(JOBS) -m "not slow" $(PYTEST_ARGS)

# damaged copies of every input format through load and the xlate executable: zero hangs, zero
# tracebacks, nothing written (the fixed CI corpus is tests/test_fuzz.py); FUZZ_ARGS e.g. --seed 7
FUZZ_ARGS ?=
fuzz: setup
	$(BIN)/python scripts/fuzz.py $(FUZZ_ARGS)

docs: setup
	$(BIN)/python scripts/gen_support.py

# The real-model zoo (torchvision, timm, Hugging Face) lives in its own venv: real torchvision
# needs torch 2.14.1. `make zoo` converts every model (67 min on 2 cores on 2026-12-05) and rewrites
# docs/zoo.md; `make zoo-smoke` (part of `make test`) converts 12 of them and fails unless all pass.
ZOO := .venv-zoo/bin/python
ZOO_JOBS ?= $(shell $(PYTHON) -c "import os; print(min(2, os.cpu_count() or 1))")

zoo-venv:
	PYTHON311=$(PYTHON) bash scripts/setup_zoo.sh

zoo: zoo-venv
	$(ZOO) scripts/zoo.py run --jobs $(ZOO_JOBS)

zoo-smoke: zoo-venv
	$(ZOO) scripts/zoo.py run --smoke --jobs $(ZOO_JOBS)

bench: setup
	$(BIN)/python scripts/bench.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
