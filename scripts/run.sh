#!/usr/bin/env bash
# make run: migrate, then serve on $HOST:$PORT with one task worker beside the server (it processes
# webhook deliveries). Ctrl-C stops both; if either stops on its own, the other is stopped too and
# the script says which. DEBUG is on unless the shell sets it.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
export DEBUG=${DEBUG:-1}

$PY manage.py migrate --noinput

# The settings (environment, then .env) say which task backend is in use.
rq=$($PY manage.py shell -v0 --no-startup -c 'from tenants.tasks import uses_database_backend; print(0 if uses_database_backend() else 1)')
if [ "$rq" = 1 ]; then
  worker_command=(manage.py rqworker --with-scheduler --job-class django_tasks_rq.Job default)
else
  # No autoreload: a reload would kill a task mid-attempt. Restart make run after editing receivers.
  worker_command=(manage.py db_worker --interval 0.5 --no-reload)
fi

# Each runs in its own process group, so that stopping it stops its children too.
setsid "$PY" "${worker_command[@]}" &
worker=$!
echo "task worker (pid $worker): ${worker_command[*]}"
setsid "$PY" manage.py runserver "$HOST:$PORT" &
server=$!

stop() {  # $1: a process group; TERM (a worker finishes its task), then KILL after 10 s
  kill -TERM -- "-$1" 2>/dev/null || return 0
  for _ in $(seq 1 50); do
    kill -0 -- "-$1" 2>/dev/null || return 0
    sleep 0.2
  done
  echo "pid $1 did not stop within 10 s: killed" >&2
  kill -KILL -- "-$1" 2>/dev/null || true
}
stopped=0
stop_all() {
  [ "$stopped" = 1 ] && return
  stopped=1
  stop "$server"
  stop "$worker"
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

# Whichever ends first, say so and stop the other.
set +e
wait -n "$server" "$worker"
code=$?
set -e
if ! kill -0 "$worker" 2>/dev/null; then
  echo "the task worker exited ($code): webhook deliveries would not be processed; stopping the server" >&2
else
  echo "the server exited ($code); stopping the task worker" >&2
fi
exit "$code"
