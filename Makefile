# The quick start is `make demo` then `make test`; .ci/run calls `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test dev serve bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

## setup: a .venv with the package and its test tools
setup: $(STAMP)

## demo: seed drift into the SQLite catalog and the bundled emulator, run reconcile_catalog, print the drift
demo: setup
	$(BIN)/recon-pipeline demo

## test: the whole suite (emulator over HTTP, SQLite, PostgreSQL, Dagster in a temp DAGSTER_HOME)
test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -p no:cacheprovider

## dev: the Dagster UI on http://127.0.0.1:3000 with the emulator running
dev: setup
	$(BIN)/recon-pipeline dev

## serve: production-style: dagster-webserver + dagster-daemon on deploy/dagster.yaml (needs DAGSTER_POSTGRES_URL)
serve: setup
	$(BIN)/recon-pipeline serve

## bench: the benchmarks under bench/ (results go to bench/RESULTS.md by hand)
bench: setup
	$(BIN)/python bench/bench_diff.py
	$(BIN)/python bench/bench_snapshot.py
	$(BIN)/python bench/bench_emulator.py

clean:
	rm -rf $(VENV) data .dagster_home
