# matcli developer tasks. `make install` then `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test bench bench-full bench-direct sample lint clean

install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'

test:
	$(BIN)/python -m pytest tests

bench:
	$(BIN)/pip install -q -e '.[bench,pardiso]'
	$(BIN)/python benchmarks/run_all.py --quick

bench-direct:
	$(BIN)/pip install -q -e '.[pardiso]'
	$(BIN)/python benchmarks/bench_direct.py --full

bench-full:
	$(BIN)/pip install -q -e '.[bench,pardiso]'
	$(BIN)/python benchmarks/run_all.py --full

sample:
	$(BIN)/python sample_data/make_samples.py

lint:
	$(BIN)/python -m compileall -q matcli tests benchmarks

clean:
	rm -rf benchmarks/work .pytest_cache build *.egg-info
