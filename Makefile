# LogLine — the two commands that set everything up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
PROMTOOL := /usr/bin/promtool

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

# promtool checks the alert rules (tests/e2e/test_deploy.py): the Debian package `prometheus`,
# installed once when missing and we are root. Without it those tests skip (fail under CI=true).
$(PROMTOOL):
	@command -v promtool >/dev/null || if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing promtool (Debian package prometheus)"; \
	  export DEBIAN_FRONTEND=noninteractive; APT="apt-get install -y -qq --no-install-recommends"; \
	  $$APT prometheus >/dev/null || { apt-get update -qq && $$APT prometheus >/dev/null; } \
	    || echo "warning: could not install promtool; the alert rule tests will skip (fail under CI=true)"; \
	else echo "note: no promtool (apt-get install prometheus); the alert rule tests will skip (fail under CI=true)"; fi

run: $(STAMP_RUN) ## create .venv, install, start the whole system (logline up) on embedded SQLite
	$(BIN)/logline up

demo: $(STAMP_RUN) ## the library walk-through: identities, spans, proofs, bundles, in seconds
	$(BIN)/python -m logline.demo

test: $(STAMP_TEST) $(PROMTOOL) ## create .venv, install test deps, run lint, types and the whole suite
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
