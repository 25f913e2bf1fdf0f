# Two commands set up a fresh machine: `make run` (server and task worker on SQLite) and `make test`
# (the suite).
# Both create .venv from requirements*.txt on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
HOST   ?= 127.0.0.1
PORT   ?= 8000
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/connect
PYTEST_ARGS ?=

.PHONY: run demo bench test test-sqlite test-postgres lint test-deps venv clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

## run: migrate, then serve on http://127.0.0.1:8000 with one task worker (SQLite, DEBUG); Ctrl-C stops both
run: $(STAMP)
	HOST=$(HOST) PORT=$(PORT) bash scripts/run.sh

## demo: run the server for the simulator, play every scenario against it, keep serving (Ctrl-C)
demo: $(STAMP)
	bash scripts/demo.sh

## bench: every performance target against atlassian-connect-express, in one run (PostgreSQL + Redis, then SQLite; prints the table and the verdicts, rewrites the Results of bench/RESULTS.md)
bench: $(STAMP)
	bash bench/run.sh

## test: lint, Django checks, migrations check, then the suite on SQLite and on PostgreSQL
test: lint test-deps test-sqlite test-postgres

## test-deps: Debian's chromium + chromium-driver (admin browser test) and nginx-light (the
## recommended proxy, tests/test_nginx_proxy.py); each test is skipped, saying why, without them
test-deps:
	@missing=""; \
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || missing=" chromium chromium-driver"; \
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || missing="$$missing nginx-light"; \
	if [ -n "$$missing" ]; then echo "installing$$missing for the browser and proxy tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) \
	    >/dev/null 2>&1 || echo "could not install$$missing: their tests will be skipped"; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	DATABASE_URL=sqlite:///:memory: DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py check --fail-level WARNING
	DATABASE_URL=sqlite:///:memory: DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py makemigrations --check --dry-run

test-sqlite: $(STAMP)
	env -u DATABASE_URL $(PY) -m pytest $(PYTEST_ARGS)

test-postgres: $(STAMP)
	DATABASE_URL=$(PG_TEST_URL) $(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis test-output
