# Two commands set up a fresh machine: `make run` (server on SQLite) and `make test` (the suite).
# Both create .venv from requirements*.txt on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
HOST   ?= 127.0.0.1
PORT   ?= 8000
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/connect
PYTEST_ARGS ?=

.PHONY: run demo bench test test-sqlite test-postgres lint browser-deps venv clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

## run: migrate and serve on http://127.0.0.1:8000 (SQLite, DEBUG, development defaults)
run: $(STAMP)
	DEBUG=$${DEBUG:-1} $(PY) manage.py migrate --noinput
	DEBUG=$${DEBUG:-1} $(PY) manage.py runserver $(HOST):$(PORT)

## demo: run the server for the simulator, play every scenario against it, keep serving (Ctrl-C)
demo: $(STAMP)
	bash scripts/demo.sh

## bench: benchmark against atlassian-connect-express (PostgreSQL + Redis; prints a table, writes bench/RESULTS.md)
bench: $(STAMP)
	bash bench/run.sh

## test: lint, Django checks, migrations check, then the suite on SQLite and on PostgreSQL
test: lint browser-deps test-sqlite test-postgres

## browser-deps: Debian's chromium + chromium-driver for the admin browser test (skipped without them)
browser-deps:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	else echo "installing chromium and chromium-driver for the browser test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
	    >/dev/null 2>&1 || echo "could not install chromium: the browser test will be skipped"; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py check --fail-level WARNING
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py makemigrations --check --dry-run

test-sqlite: $(STAMP)
	env -u DATABASE_URL $(PY) -m pytest $(PYTEST_ARGS)

test-postgres: $(STAMP)
	DATABASE_URL=$(PG_TEST_URL) $(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis test-output
