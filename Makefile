# The quick start is `make demo` then `make test`; .ci/run calls `make lint`, `make test` and `make bench-smoke`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST := $(BIN)/python -m pytest -q -n 2 --dist loadfile -p no:cacheprovider

.PHONY: setup demo test test-fast lint dev serve bench bench-smoke clean

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

## test: the whole suite (emulator over HTTP, SQLite, PostgreSQL, MariaDB, Dagster in a temp DAGSTER_HOME, faults)
test: setup
	$(PYTEST)

## test-fast: logic, emulator, catalog and migrations; no Dagster instance, no server process (under a minute)
test-fast: setup
	$(PYTEST) -m "not slow"

## lint: ruff and mypy, zero findings
lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

## dev: the Dagster UI on http://127.0.0.1:3000 with the emulator running
dev: setup
	$(BIN)/recon-pipeline dev

## serve: production-style: dagster-webserver + dagster-daemon on deploy/dagster.yaml (needs DAGSTER_POSTGRES_URL)
serve: setup
	$(BIN)/recon-pipeline serve

## bench: the benchmarks under bench/ at their recorded sizes (results go to bench/RESULTS.md by hand)
bench: setup
	$(BIN)/python bench/bench_diff.py
	$(BIN)/python bench/bench_snapshot.py
	$(BIN)/python bench/bench_reconcile.py
	$(BIN)/python bench/bench_emulator.py
	$(BIN)/python bench/bench_budget.py

## bench-smoke: every benchmark at its small size, asserting its correctness checks (no timing)
bench-smoke: setup
	$(BIN)/python bench/bench_diff.py --smoke
	$(BIN)/python bench/bench_snapshot.py --smoke
	$(BIN)/python bench/bench_reconcile.py --smoke
	$(BIN)/python bench/bench_emulator.py --smoke
	$(BIN)/python bench/bench_budget.py --smoke
	$(BIN)/python bench/bench_outbox.py --smoke
	$(BIN)/python bench/bench_repair.py --smoke
	$(BIN)/python bench/bench_sync_latency.py --smoke
	$(BIN)/python bench/bench_capture.py --smoke
	$(BIN)/python bench/drill_outage.py --smoke
	$(BIN)/python bench/soak.py --smoke

clean:
	rm -rf $(VENV) data .dagster_home .dagster_serve .ruff_cache .mypy_cache
