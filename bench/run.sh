#!/usr/bin/env bash
# `make bench`: load-test the verified endpoints (gunicorn + PostgreSQL + Redis) against
# atlassian-connect-express, print the table and write bench/RESULTS.md. Not part of `make test`.
# Needs the project's .venv (make venv), PostgreSQL on 127.0.0.1:5432 (user postgres, trust),
# Redis on 127.0.0.1:6379, node + npm; installs wrk with apt-get when it is missing.
# Options go to bench/bench.py, e.g. `bash bench/run.sh --duration 5 --skip-ace`, or via BENCH_ARGS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${VENV:-.venv}/bin/python"
if [ ! -x "$PY" ]; then
  echo "bench: $PY is missing; create the virtualenv first (make venv)" >&2
  exit 1
fi
# shellcheck disable=SC2086 # BENCH_ARGS is a list of options
exec "$PY" bench/bench.py ${BENCH_ARGS:-} "$@"
