# hermetry — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HERMES_AGENT_VERSION := 0.19.0

.PHONY: demo test test-fast test-modules lint bench clean engines

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,parquet,postgres,otlp,prometheus]' 'hermes-agent[messaging]==$(HERMES_AGENT_VERSION)'
	$(PY) -m pip check
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/hermetry demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

# PostgreSQL, Prometheus and Chromium from Debian's packages (tools/install-engines.sh; root)
engines:
	bash tools/install-engines.sh

# The whole suite: lint, types, unit and real-Hermes end-to-end tests (≈4 min).
test: lint engines
	$(VENV)/bin/pytest

# Everything that needs no real Hermes (unit, store, engine and analytics tests), in parallel
# workers: under a minute. `make test-fast FAST_ARGS=` runs it in one process.
FAST_ARGS ?= -n auto
test-fast: $(VENV)/.installed engines
	$(VENV)/bin/pytest -q -m "not hermes" -p no:cacheprovider $(FAST_ARGS)

# Each test module alone, in its own process: proves no module needs another's side effects
# (CI runs it once, after `make test`).
test-modules: $(VENV)/.installed engines
	@set -e; for module in tests/test_*.py; do \
	  echo "== $$module"; $(VENV)/bin/pytest -q -p no:cacheprovider "$$module"; done

$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e '.[bench]'
	touch $@

# `make bench` (~10 min; fixtures cached in bench/.cache/); `make bench BENCH_ARGS=--quick` (1-2 min)
bench: $(VENV)/.bench-installed
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
