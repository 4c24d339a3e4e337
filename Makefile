# Every target makes its own .venv, so a fresh clone needs nothing but python3.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.core: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.  The
# TensorFlow tests use tensorflow-cpu.  Both stay cached in .venv.
$(VENV)/.dev: $(VENV)/.core
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]' tensorflow-cpu==2.21.0
	touch $@

demo: $(VENV)/.core
	$(BIN)/python examples/quickstart.py

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .venv-peers build *.egg-info
