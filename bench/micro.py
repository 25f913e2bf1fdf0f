"""pyperf micro-benchmarks of `make bench`: verification alone, no HTTP, no database.

    .venv/bin/python bench/micro.py --fast -o OUT.json      (bench/bench.py runs it)

One webhook token (HS256, iss/iat/exp/qsh) checked three ways:
- ``jwt.decode``: signature and times only, the floor any verifier pays;
- ``lifecycle.protocol.verify_token``: the token verification (algorithm pinned, claims, times,
  lifetime, the qsh of the request);
- ``lifecycle.verification.verify``: the whole check of a webhook request, made once (method,
  headers, the 1.5 KB body parsed and bounded, the token and its qsh, the tenant as a worker
  remembers it).
pyperf spawns its own worker processes, calibrates the loops and reports mean and stdev.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402
import jwt  # noqa: E402
import pyperf  # noqa: E402

django.setup()

from django.test import RequestFactory  # noqa: E402
from django.urls import resolve  # noqa: E402

from audit.records import AuditContext  # noqa: E402
from connect_testkit import sign_tenant  # noqa: E402
from lifecycle import policy, protocol, verification  # noqa: E402
from tenants.fields import SealedSecret, get_secret_box  # noqa: E402
from tenants.models import Installation  # noqa: E402
from tenants.tenant_cache import VerifiedTenant, tenant_cache  # noqa: E402

CLIENT_KEY = "micro-bench"
SECRET = "micro-bench-secret-0123456789abcdef0123456789abcdef"  # noqa: S105 - a bench tenant
PATH = "/webhooks/jira:issue_created"
TOKEN = sign_tenant(SECRET, client_key=CLIENT_KEY, method="POST", url=PATH, lifetime=3000)
CANONICAL = protocol.canonical_request("POST", PATH, "")
QSH = protocol.query_string_hash(CANONICAL)
POLICY = verification.claim_rules(require_aud=False)
BODY = (ROOT / "bench" / "webhook.json").read_bytes()

# The tenant as a worker remembers it after its first webhook: no database here.
tenant = Installation(
    id=1,
    client_key=CLIENT_KEY,
    state=Installation.State.INSTALLED,
    suspended=False,
    shared_secret=SealedSecret(get_secret_box().encrypt(SECRET, CLIENT_KEY)),
)
tenant_cache.put(CLIENT_KEY, VerifiedTenant(tenant, SECRET))
factory = RequestFactory()
ROUTE = resolve(PATH)


def bare() -> None:
    jwt.decode(TOKEN, SECRET, algorithms=["HS256"], options={"verify_aud": False})


def token() -> None:
    protocol.verify_token(
        TOKEN, SECRET, algorithm="HS256", policy=POLICY, expected_qsh=QSH, canonical=CANONICAL
    )


CALL = factory.post(
    PATH,
    data=BODY,
    content_type="application/json",
    HTTP_AUTHORIZATION=f"JWT {TOKEN}",
    HTTP_X_ATLASSIAN_WEBHOOK_IDENTIFIER="micro-1",
)
CALL.resolver_match = ROUTE  # the middleware's request carries its route (the event name)


def request() -> None:
    verification.verify(CALL, policy.WEBHOOK, AuditContext(event="webhook", path=PATH, remote_addr=None))


if __name__ == "__main__":
    json.loads(BODY)  # the body file is the one bench.py sends
    runner = pyperf.Runner()
    runner.bench_func("jwt.decode", bare)
    runner.bench_func("protocol.verify_token", token)
    runner.bench_func("verification.verify", request)
