#!/usr/bin/env bash
# make run: migrate, then serve on $HOST:$PORT with one task worker beside the server (it processes
# webhook deliveries); Ctrl-C stops both. DEBUG is on unless the shell sets it.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
export DEBUG=${DEBUG:-1}

$PY manage.py migrate --noinput

# The worker runs in its own process group, so that stopping it stops its reloader's child too.
# The settings (environment, then .env) say which task backend is in use.
rq=$($PY manage.py shell -v0 --no-startup -c 'from tenants.tasks import uses_database_backend; print(0 if uses_database_backend() else 1)')
if [ "$rq" = 1 ]; then
  worker_command=(manage.py rqworker --with-scheduler --job-class django_tasks_rq.Job default)
else
  worker_command=(manage.py db_worker --interval 0.5)
fi
setsid "$PY" "${worker_command[@]}" &
worker=$!
echo "task worker (pid $worker): ${worker_command[*]}"
stop_worker() {
  kill -TERM -- "-$worker" 2>/dev/null || true
  wait "$worker" 2>/dev/null || true
}
trap stop_worker EXIT

# runserver in the foreground: Ctrl-C ends it, and the trap then stops the worker.
$PY manage.py runserver "$HOST:$PORT" || true
