# hermetry — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HERMES_AGENT_VERSION := 0.19.0

.PHONY: demo test lint bench clean engines

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

test: lint engines
	$(VENV)/bin/pytest

$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e '.[bench]'
	touch $@

# `make bench` (~10 min; fixtures cached in bench/.cache/); `make bench BENCH_ARGS=--quick` (1-2 min)
bench: $(VENV)/.bench-installed
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
