#!/usr/bin/env bash
# `make bench`: this project's verified webhook against atlassian-connect-express, in one run;
# prints the table and the targets and writes bench/RESULTS.md (bench/bench.py). Not part of
# `make test`. Needs the project's .venv (make venv), PostgreSQL on 127.0.0.1:5432 (user postgres,
# trust), Redis on 127.0.0.1:6379, node and npm; installs wrk with apt-get when it is missing.
# Options go to bench/bench.py (`bash bench/run.sh --help`), e.g. `--duration 5 --skip-ace`, or
# through BENCH_ARGS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${VENV:-.venv}/bin/python"
if [ ! -x "$PY" ]; then
  echo "bench: $PY is missing; create the virtualenv first (make venv)" >&2
  exit 1
fi
if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk (apt-get)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk) >/dev/null \
    || { echo "bench: wrk is missing and could not be installed" >&2; exit 1; }
fi
# shellcheck disable=SC2086 # BENCH_ARGS is a list of options
exec "$PY" bench/bench.py ${BENCH_ARGS:-} "$@"
