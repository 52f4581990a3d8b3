# Development entry points. `make run` and `make test` work on a fresh machine with only
# Python 3.11+, git and make: both create .venv on first use and reinstall when pyproject.toml
# changes. Every recipe line must succeed; no failure is ignored (no `-` prefixes, no `|| true`).

PYTHON ?= python3
VENV = .venv
STAMP = $(VENV)/.installed
PYTEST_ARGS ?=
# pytest-xdist workers: one per core of the 2-core machines this runs on.
TEST_WORKERS ?= 2
SERVE_ARGS ?=
# The example app's registration (client id and secret), made once by `make example-rp`.
EXAMPLE_CLIENT = examples/.rp-client.json
# Where the examples listen (the example programs read the same variables).
EXAMPLE_API_URL ?= http://localhost:8001
EXAMPLE_RP_URL ?= http://localhost:8002
EXAMPLE_ENV = EXAMPLE_API_URL=$(EXAMPLE_API_URL) EXAMPLE_RP_URL=$(EXAMPLE_RP_URL)

.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
.PHONY: help venv run test lint bench clean example-api example-rp translations

help:
	@echo "make run    start the IdP on http://localhost:8000 (SQLite, dev key-encryption key)"
	@echo "make test   ruff, mypy and the whole pytest suite (PYTEST_ARGS=... to pass options)"
	@echo "make lint   ruff and mypy only"
	@echo "make translations  extract the pages' words, update and compile the catalogues"
	@echo "make bench  token endpoint benchmark"
	@echo "make example-api  the example protected API on http://localhost:8001 (IdP running)"
	@echo "make example-rp   register and run the example web app on http://localhost:8002"
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
	$(VENV)/bin/ruff check idp tests bench examples
	$(VENV)/bin/mypy
	$(VENV)/bin/hadolint Dockerfile

# pytest's own exit code decides: 1 (failures), 2 (interrupted), 5 (no tests collected), ...
test: lint
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The catalogues in idp/web/locale: messages.pot from the templates and N_() in the code, each
# language's messages.po updated from it (translate the new entries), then compiled to the
# committed messages.mo, so an install needs no build step.
LOCALE_DIR = idp/web/locale
translations: venv
	$(VENV)/bin/pybabel extract -F babel.cfg -k N_ --no-location --sort-output \
		--project idp --copyright-holder "idp contributors" -o $(LOCALE_DIR)/messages.pot .
	$(VENV)/bin/pybabel update -i $(LOCALE_DIR)/messages.pot -d $(LOCALE_DIR) --no-fuzzy-matching \
		--ignore-obsolete
	$(VENV)/bin/pybabel compile -d $(LOCALE_DIR) --statistics

example-api: venv
	$(EXAMPLE_ENV) $(VENV)/bin/python -m examples.api

example-rp: venv $(EXAMPLE_CLIENT)
	$(EXAMPLE_ENV) EXAMPLE_CLIENT_FILE=$(EXAMPLE_CLIENT) $(VENV)/bin/python -m examples.rp

# The secret is the app's own credential: readable by this user only, git-ignored.
$(EXAMPLE_CLIENT): | venv
	umask 077 && $(VENV)/bin/idp clients create --name "Example app" \
	    --redirect-uri $(EXAMPLE_RP_URL)/callback \
	    --post-logout-redirect-uri $(EXAMPLE_RP_URL)/signed-out \
	    --grant-type authorization_code --grant-type refresh_token \
	    --scope openid --scope profile --scope email --scope offline_access --scope notes.read --scope roles \
	    --audience $(EXAMPLE_API_URL) --json > $@

bench: venv
	$(VENV)/bin/python bench/token_bench.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
