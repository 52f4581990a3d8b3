# Development entry points. `make run` and `make test` work on a fresh machine with only
# Python 3.11+, git and make: both create .venv on first use and reinstall when pyproject.toml
# changes. Every recipe line must succeed; no failure is ignored (no `-` prefixes, no `|| true`).

PYTHON ?= python3
VENV = .venv
STAMP = $(VENV)/.installed
PYTEST_ARGS ?=
SERVE_ARGS ?=

.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
.PHONY: help venv run test lint bench clean

help:
	@echo "make run    start the IdP on http://localhost:8000 (SQLite, dev key-encryption key)"
	@echo "make test   ruff, mypy and the whole pytest suite (PYTEST_ARGS=... to pass options)"
	@echo "make lint   ruff and mypy only"
	@echo "make bench  token endpoint benchmark"
	@echo "make venv   create/refresh $(VENV)"
	@echo "make clean  remove $(VENV), caches and build output (keeps idp.db and keys/)"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/python -m pip install -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

run: venv
	$(VENV)/bin/idp serve $(SERVE_ARGS)

lint: venv
	$(VENV)/bin/ruff check idp tests bench
	$(VENV)/bin/mypy

# pytest's own exit code decides: 1 (failures), 2 (interrupted), 5 (no tests collected), ...
test: lint
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: venv
	$(VENV)/bin/python bench/token_bench.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
