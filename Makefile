# Parley developer commands. `make serve` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
JSDEPS := client_js/node_modules/.package-lock.json
WEB    := server/parley/web/static/index.html
WEBSRC := $(wildcard client_js/src/*/*.js client_js/src/*/*.css client_js/src/*/*.html) client_js/build.mjs client_js/index.d.ts

.PHONY: serve test lint typecheck pytest jstest web install install-dev js-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

## The dev and test install includes the optional `semantic` extra, so the tests exercise it.
## PyTorch's CPU build is pinned and installed first: left to resolve it, sentence-transformers
## would pull a CUDA build of several GB. `make serve` needs neither.
$(DEVSTAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,semantic]'
	touch $@ $(STAMP)

install: $(STAMP)
install-dev: $(DEVSTAMP)

## The locked npm packages of client_js/ (Yjs, esbuild, TypeScript, playwright-core). The
## browser download of playwright is never run: the tests drive Debian's chromium.
$(JSDEPS): client_js/package.json client_js/package-lock.json
	cd client_js && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
	touch $@

js-deps: $(JSDEPS)

## The JS SDK (client_js/dist/) and the browser workspace the server serves at /.
$(WEB): $(JSDEPS) $(WEBSRC)
	cd client_js && npm run build --silent

web: $(WEB)

## Run the server on the embedded default (SQLite in ./parley-data, in-memory broker).
serve: $(STAMP)
	@$(MAKE) --no-print-directory web || echo "The workspace was not built (needs Node.js 20+ and npm); the API still runs."
	$(BIN)/parley serve --demo-token

## Lint, type-check and run the whole test suite (Python, then JavaScript).
test: lint typecheck pytest jstest

lint: $(DEVSTAMP)
	$(BIN)/ruff check server tests load_tests examples
	$(BIN)/ruff format --check server tests load_tests examples

typecheck: $(DEVSTAMP)
	$(BIN)/mypy

## PYTEST_WORKERS=0 runs the suite in one process (e.g. to debug a test with -s).
PYTEST_WORKERS ?= auto
pytest: $(DEVSTAMP) $(JSDEPS) $(WEB)
	$(BIN)/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

## SDK types (tsc), SDK tests and the two-user Chromium test against real servers.
## Screenshots go to test-artifacts/screenshots/.
jstest: $(DEVSTAMP) $(WEB)
	cd client_js && npm run typecheck --silent && npm test --silent

## Load harness: the standard scenarios against Parley and a plain `websockets` baseline, one
## table (about 4 minutes; BENCH_ARGS passes options, e.g. BENCH_ARGS="fanout --duration 8").
bench: $(STAMP)
	@$(BIN)/python -c "import picows, httpx" 2>/dev/null || $(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m load_tests.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
