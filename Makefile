# The README's two commands: `make demo` and `make test`. Each sets up what it needs on a
# fresh clone (a virtual environment in .venv, pinned by constraints.txt) and then runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= tf-cpu,onnx,dev
PYTEST_ARGS ?=

.PHONY: demo test test-fast setup docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-$(EXTRAS): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $@

setup: $(VENV)/.installed-$(EXTRAS)

demo: EXTRAS = tf-cpu
demo: setup
	$(BIN)/xlate demo

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

docs: setup
	$(BIN)/python scripts/gen_support.py

bench: setup
	$(BIN)/python scripts/bench.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
