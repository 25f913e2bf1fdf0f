#!/usr/bin/env bash
# make demo: a local server (SQLite, DEBUG) that trusts the simulator's loopback key server,
# `connect_simulate all` against it, then the server keeps running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
HOST=127.0.0.1
PORT=${PORT:-8000}
KEY_PORT=${KEY_PORT:-8765}
export DEBUG=1 CONNECT_READ_DOTENV=0
export DATABASE_URL=${DEMO_DATABASE_URL:-sqlite:///$PWD/demo.sqlite3}
export CONNECT_BASE_URL=http://localhost:$PORT
export CONNECT_KEY_SERVERS=http://$HOST:$KEY_PORT

$PY manage.py migrate --noinput -v0
password=$($PY -c 'import secrets; print(secrets.token_urlsafe(12))')
DEMO_PASSWORD=$password $PY manage.py shell -v0 -c '
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
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 50); do
  curl -fsS "http://$HOST:$PORT/healthz" >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { echo "the server did not start; see demo-server.log"; exit 1; }
  sleep 0.2
done

echo
echo "== connect_simulate all (server http://$HOST:$PORT trusts key server $CONNECT_KEY_SERVERS) =="
status=0
$PY manage.py connect_simulate all --url "http://$HOST:$PORT" --key-server-port "$KEY_PORT" || status=$?

cat <<MSG

== Where to look ==
Admin:        http://$HOST:$PORT/admin/   user: demo   password: $password  (this DEBUG demo only)
  Installations ............ the simulated tenants (secrets masked), their history and deliveries
  Failed verifications ..... every rejected step above, with its reason and fix
  Install signing keys ..... the simulator's key, fetched by kid and cached
  Site administration ...... the 30-day chart of accepted and rejected lifecycle requests
Descriptor:   http://$HOST:$PORT/atlassian-connect.json
Server log:   demo-server.log       Database: ${DATABASE_URL#sqlite:///}

The server keeps running; press Ctrl-C to stop it.
MSG
if [ "$status" -ne 0 ]; then echo "(the simulation reported failures: exit $status)"; fi
wait $server
