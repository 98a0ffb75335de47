# LogLine — the two commands that set everything up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

.DEFAULT_GOAL := help
.PHONY: help run demo test lint typecheck bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN) ## create .venv, install, start the whole system (logline up) on embedded SQLite
	$(BIN)/logline up

demo: $(STAMP_RUN) ## the library walk-through: identities, spans, proofs, bundles, in seconds
	$(BIN)/python -m logline.demo

test: $(STAMP_TEST) ## create .venv, install test deps, run lint, types and the whole suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -n 2 tests

lint: $(STAMP_TEST) ## ruff only
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: $(STAMP_TEST) ## mypy only
	$(BIN)/mypy

bench: $(STAMP_TEST) ## run the benchmarks (see docs/PERFORMANCE.md)
	$(BIN)/python -m bench ingest
	$(BIN)/python -m bench proofs
	$(BIN)/python -m bench http-ingest
	$(BIN)/python -m bench ack-latency
	$(BIN)/python -m bench query
	$(BIN)/python -m bench fanout

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
