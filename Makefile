# The two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install demo test test-postgres lint format

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

install: $(VENV)/.installed node_modules/.installed

# The demo's message callbacks may go to a receiver on this machine over http;
# production refuses both unless these are set (hyperpers/settings.py).
demo: install
	MESSAGE_CALLBACK_ALLOW_HTTP=$${MESSAGE_CALLBACK_ALLOW_HTTP:-true} \
	MESSAGE_CALLBACK_ALLOW_PRIVATE=$${MESSAGE_CALLBACK_ALLOW_PRIVATE:-true} \
	$(PY) manage.py demo

test: install
	$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(VENV)/bin/djlint templates --lint
	$(PY) manage.py makemigrations --check --dry-run

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
