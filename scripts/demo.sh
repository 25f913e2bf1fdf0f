#!/usr/bin/env bash
# make demo: a local server (SQLite, DEBUG) that trusts the simulator's loopback key server,
# `connect_simulate all` against it (with its fake Jira site for the page, context and outbound
# scenarios), then the server keeps running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
HOST=127.0.0.1

# A port already in use (`make run` still open, say) would leave the simulation talking to the
# other server: take the next free port instead, and say so.
port_busy() { $PY -c 'import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); sys.exit(s.connect_ex(("127.0.0.1", int(sys.argv[1]))) != 0)' "$1"; }
free_port() { $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pick_port() {  # $1: the wanted port, $2: its name
  if port_busy "$1"; then
    local other; other=$(free_port)
    echo "port $1 is busy (is \`make run\` still open?): the demo's $2 uses port $other instead" >&2
    echo "$other"
  else
    echo "$1"
  fi
}
PORT=$(pick_port "${PORT:-8000}" server)
KEY_PORT=$(pick_port "${KEY_PORT:-8765}" "key server")
JIRA_PORT=$(pick_port "${JIRA_PORT:-8766}" "fake Jira")
# connectsite.demo_settings: the project's settings plus two demo webhook receivers that fail on
# purpose (connectsite/demo/apps.py); retries come quickly and stop after 3 attempts.
export DEBUG=1 CONNECT_READ_DOTENV=0 DJANGO_SETTINGS_MODULE=connectsite.demo_settings
export TENANT_WEBHOOK_MAX_ATTEMPTS=3 TENANT_WEBHOOK_RETRY_DELAY=1
export DATABASE_URL=${DEMO_DATABASE_URL:-sqlite:///$PWD/demo.sqlite3}
export CONNECT_BASE_URL=http://localhost:$PORT
export CONNECT_KEY_SERVERS=http://$HOST:$KEY_PORT
# The pages and outbound scenarios install a tenant whose site is the simulator's fake Jira.
export CONNECT_SIMULATED_JIRA=http://$HOST:$JIRA_PORT
# Forge remote calls (connect_simulate forge): the test kit's app id, the simulator's JWKS.
export FORGE_APP_ID=ari:cloud:ecosystem::app/3a9e1b4c-0d2f-4e6a-8b7c-5d4e3f2a1b0c
export FORGE_JWKS_URL=http://$HOST:$KEY_PORT/.well-known/jwks.json
# The demo keeps to its own settings, whatever the shell holds (a tunnel's ALLOWED_HOSTS, a cache).
export ALLOWED_HOSTS=localhost,127.0.0.1
unset CACHE_URL TASKS_RQ_URL

$PY manage.py migrate --noinput -v0
password=$($PY -c 'import secrets; print(secrets.token_urlsafe(12))')
DEMO_PASSWORD=$password $PY manage.py shell -v0 --no-startup -c '
import os
from django.conf import settings
from django.contrib.auth.models import User
assert settings.DEBUG, "the demo user is for a DEBUG demo only"
user, _ = User.objects.get_or_create(username="demo", defaults={"email": "demo@localhost"})
user.is_staff = user.is_superuser = True
user.set_password(os.environ["DEMO_PASSWORD"])
user.save()
'

$PY manage.py runserver "$HOST:$PORT" --noreload >demo-server.log 2>&1 &
server=$!
# The task worker that processes webhook deliveries, as `make run` starts one.
$PY manage.py db_worker --interval 0.2 --no-reload >demo-worker.log 2>&1 &
worker=$!
stop_all() {
  kill "$server" "$worker" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  wait "$worker" 2>/dev/null || true
}
trap stop_all EXIT INT TERM
for _ in $(seq 1 50); do
  kill -0 $server 2>/dev/null || { echo "the demo's server did not start; see demo-server.log"; exit 1; }
  curl -fsS "http://$HOST:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
kill -0 $server 2>/dev/null || { echo "the demo's server did not start; see demo-server.log"; exit 1; }

echo
echo "== connect_simulate all (server http://$HOST:$PORT trusts key server $CONNECT_KEY_SERVERS and fake Jira $CONNECT_SIMULATED_JIRA) =="
status=0
# --skip-checks: migrate above already printed the system checks' warnings once.
$PY manage.py connect_simulate all --skip-checks --url "http://$HOST:$PORT" --key-server-port "$KEY_PORT" \
  --jira-port "$JIRA_PORT" || status=$?
echo
echo "== connect_simulate deliveries (webhooks processed by the task worker; the demo's receivers fail on purpose) =="
$PY manage.py connect_simulate deliveries --skip-checks --url "http://$HOST:$PORT" --key-server-port "$KEY_PORT" \
  || status=$?
echo
echo "== connect_simulate forge (Forge remote calls: FORGE_APP_ID, JWKS at $FORGE_JWKS_URL) =="
$PY manage.py connect_simulate forge --skip-checks --url "http://$HOST:$PORT" --key-server-port "$KEY_PORT" \
  --forge-app-id "$FORGE_APP_ID" || status=$?
if ! kill -0 $server 2>/dev/null; then
  echo "the demo's server on port $PORT stopped during the simulation; see demo-server.log"
  exit 1
fi

cat <<MSG

== Where to look ==
Admin:        http://$HOST:$PORT/admin/   user: demo   password: $password  (this DEBUG demo only)
  Webhook deliveries ....... filter by state: the "demo:always-fails" one is failed after 3
                             attempts; select it and "Retry selected failed deliveries now" (it fails
                             again: its receiver always does; the retry is in the tenant's history),
                             or "Discard selected failed deliveries" (its body is dropped)
  Forge installations ...... the simulated Forge installation (Forge only), its events among the
                             webhook deliveries, its rejected calls under Failed verifications
  Installations ............ the simulated tenants (secrets masked), their history and deliveries
                             (the pages and outbound tenants' site is the fake Jira, gone now)
  Failed verifications ..... every rejected step above, with its reason and fix
  Install signing keys ..... the simulator's key, fetched by kid and cached
  Site administration ...... the 30-day chart of accepted and rejected lifecycle requests
Descriptor:   http://$HOST:$PORT/atlassian-connect.json
Server log:   demo-server.log   Worker log: demo-worker.log   Database: ${DATABASE_URL#sqlite:///}

The server keeps running; press Ctrl-C to stop it.
MSG
if [ "$status" -ne 0 ]; then echo "(the simulation reported failures: exit $status)"; fi
# Ctrl-C is how this demo ends: it stops the server, and that is no error.
trap 'kill $server $worker 2>/dev/null || true' INT TERM
code=0
wait $server || code=$?
kill "$worker" 2>/dev/null || true
wait $server 2>/dev/null || true  # a Ctrl-C interrupts the first wait before the server has gone
echo
if [ "$code" -eq 0 ] || [ "$code" -eq 1 ] || [ "$code" -ge 128 ]; then
  echo "demo stopped"
  exit 0
else
  echo "the demo's server exited with $code; see demo-server.log"
  exit "$code"
fi
