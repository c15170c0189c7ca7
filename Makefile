# Everything bootstraps itself: a fresh machine needs only Python 3.11 and 3.13.
#   make bench   the main job: the side-by-side comparison, quick mode (2 to 2.5 minutes on a
#                fresh clone); progress, a closing summary, full tables in comparison-results/
#   make bench-full   the same at full size (about 17 minutes); BENCH_ARGS="--out docs/results"
#                refreshes the committed copy the docs show
#   make test    the whole test suite: ruff, mypy --strict, pytest on 3.11 and 3.13, the RxPY
#                bridges on the oldest reactivex, docs
.PHONY: test bench bench-full lint typecheck pytest pytest313 pytest-rx-oldest docs clean

PY311 := $(shell .ci/find-python 3.11)
PY313 := $(shell .ci/find-python 3.13)
VENV := .venv
VENV313 := .venv313
# the oldest reactivex the rx extra allows (>=4.0) that installs: the RxPY bridges' tests on it
VENVRX := .venv-rx-oldest
RX_OLDEST := 4.0.4
# the benchmark needs only its extras, not the development tools: it reuses .venv when
# `make test` has built it, and otherwise builds its own .venv-bench
VENVBENCH := .venv-bench
BENCH_VENV := $(if $(wildcard $(VENV)/.ok),$(VENV),$(VENVBENCH))
BENCH_ARGS :=

$(VENV)/.ok: pyproject.toml
	rm -rf $(VENV)
	$(PY311) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q -U "pip>=25.1"
	$(VENV)/bin/python -m pip install -q -e ".[bench,rx,dask,prometheus,otel,progress]" --group dev
	touch $@

$(VENV313)/.ok: pyproject.toml
	rm -rf $(VENV313)
	$(PY313) -m venv $(VENV313)
	$(VENV313)/bin/python -m pip install -q -U "pip>=25.1"
	$(VENV313)/bin/python -m pip install -q -e ".[bench,rx,dask,prometheus,otel,progress]" --group dev --group docs
	touch $@

$(VENVRX)/.ok: pyproject.toml
	rm -rf $(VENVRX)
	$(PY311) -m venv $(VENVRX)
	$(VENVRX)/bin/python -m pip install -q -U "pip>=25.1"
	$(VENVRX)/bin/python -m pip install -q -e . "reactivex==$(RX_OLDEST)" --group test
	touch $@

$(VENVBENCH)/.ok: pyproject.toml
	rm -rf $(VENVBENCH)
	$(PY311) -m venv $(VENVBENCH)
	$(VENVBENCH)/bin/python -m pip install -q --disable-pip-version-check -e ".[bench,rx,dask]"
	touch $@

lint: $(VENV)/.ok
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.ok
	$(VENV)/bin/mypy --strict rxpipe tests/typing/flow_types.py

pytest: $(VENV)/.ok
	$(VENV)/bin/python -m pytest

pytest313: $(VENV313)/.ok
	$(VENV313)/bin/python -m pytest

pytest-rx-oldest: $(VENVRX)/.ok
	$(VENVRX)/bin/python -m pytest -q tests/interop tests/test_comparisons_rx.py

docs: $(VENV313)/.ok
	$(VENV313)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html

test: lint typecheck pytest pytest313 pytest-rx-oldest docs

bench: $(BENCH_VENV)/.ok
	$(BENCH_VENV)/bin/python -m comparisons --quick $(BENCH_ARGS)

bench-full: $(BENCH_VENV)/.ok
	$(BENCH_VENV)/bin/python -m comparisons $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(VENV313) $(VENVRX) $(VENVBENCH) docs/_build comparison-results
