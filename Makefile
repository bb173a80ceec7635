# Parley developer commands. `make serve` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
JSDEPS := client_js/node_modules/.package-lock.json

.PHONY: serve test lint typecheck pytest install install-dev js-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(DEVSTAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(STAMP)

install: $(STAMP)
install-dev: $(DEVSTAMP)

## The stock Yjs packages (yjs, y-websocket, ws) the end-to-end tests run in Node.
$(JSDEPS): client_js/package.json client_js/package-lock.json
	cd client_js && npm ci --no-audit --no-fund
	touch $@

js-deps: $(JSDEPS)

## Run the server on the embedded default (SQLite in ./parley-data, in-memory broker).
serve: $(STAMP)
	$(BIN)/parley serve --demo-token

## Lint, type-check and run the whole test suite.
test: lint typecheck pytest

lint: $(DEVSTAMP)
	$(BIN)/ruff check server tests load_tests examples
	$(BIN)/ruff format --check server tests load_tests examples

typecheck: $(DEVSTAMP)
	$(BIN)/mypy

pytest: $(DEVSTAMP) $(JSDEPS)
	$(BIN)/pytest $(PYTEST_ARGS)

## Load harness: the standard scenarios against Parley and a plain `websockets` baseline, one
## table (about 4 minutes; BENCH_ARGS passes options, e.g. BENCH_ARGS="fanout --duration 8").
bench: $(STAMP)
	@$(BIN)/python -c "import picows, httpx" 2>/dev/null || $(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m load_tests.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
