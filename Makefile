# The few targets a newcomer needs. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit integration bench deps dev clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

dev: $(STAMP)

## demo: a local Synapse + the bridge on SQLite, with a therapist and a patient to log in as
demo: $(STAMP)
	$(BIN)/python -m dev.demo --dir demo

## deps: what the test suite needs besides Python packages (ffmpeg, Chromium, Synapse, Node packages)
deps: $(STAMP)
	command -v ffprobe >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg)
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)
	$(BIN)/python -c 'from dev.devhs import ensure_synapse; ensure_synapse()'
	cd tests/interop && npm ci --no-audit --no-fund --loglevel=error
	cd tests/web/a11y && npm ci --no-audit --no-fund --loglevel=error

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy bridge dev

## test: lint, types, then every test (unit + integration against real Synapse, SMTP, ffmpeg, PostgreSQL)
test: deps lint typecheck
	$(BIN)/pytest -q

unit: $(STAMP)
	$(BIN)/pytest -q tests/core tests/pipeline

bench: deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
