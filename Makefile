# Two commands matter: `make test` and `make report`. Both set up .venv from pyproject.toml first:
# `make report` only what a report needs (the runtime, about 0.9 GB), `make test` the developer
# tools and Spark on top (the [dev,notebook] extras: pyspark, lifetimes, pytest, nbval, ruff, JupyterLab).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
STAMP := $(VENV)/.installed

.PHONY: setup runtime test lint docs report benchmark clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUNTIME)

$(STAMP): pyproject.toml $(RUNTIME)
	$(BIN)/python -m pip install --quiet -e ".[dev,notebook]"
	touch $(STAMP)

runtime: $(RUNTIME)

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check src tests benchmarks scripts validation

# the documentation site (MkDocs, API reference from the docstrings) into build/site; strict:
# a broken link or reference fails the build
docs: setup
	$(BIN)/mkdocs build --strict --quiet

# nbval runs copies of the clean templates with their reference outputs filled in (build/nbval)
test: lint docs
	@java -version > /dev/null 2>&1 || { echo "make test needs Java 17 or newer for the Spark tests (e.g. apt-get install openjdk-17-jre-headless)"; exit 1; }
	$(BIN)/python scripts/notebook_references.py build
	MPLBACKEND=Agg $(BIN)/python -m pytest --nbval-lax --nbval-current-env
	@echo "the model tests again on one thread (numerics must not depend on the thread count)"
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 MPLBACKEND=Agg $(BIN)/python -m pytest -q -p no:cacheprovider tests/models tests/test_faults.py

report: runtime
	$(BIN)/clvmodels report --dataset cdnow-master --output reports/

benchmark: setup
	$(BIN)/python benchmarks/bench_rfm.py
	$(BIN)/python benchmarks/bench_one_pass.py --transactions 1e6 1e7 3e7 1e8
	$(BIN)/python benchmarks/bench_models.py
	$(BIN)/python benchmarks/bench_model_family.py
	$(BIN)/python benchmarks/bench_seasonal.py
	$(BIN)/python benchmarks/bench_regular.py
	$(BIN)/python benchmarks/bench_covariates.py
	$(BIN)/python benchmarks/bench_report_load.py
	$(BIN)/python benchmarks/bench_report_scale.py --transactions 1e6 1e7 3e7 1e8 --full-report
	$(BIN)/python benchmarks/bench_scoring.py --transactions 1e7 3e7 1e8 --spark 1e7

clean:
	rm -rf $(VENV) build *.egg-info
