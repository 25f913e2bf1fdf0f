"""Django-side helpers of the benchmark, run with the benchmark's environment (see bench.py).

    python bench/djtasks.py seed PARAMS.json    # bulk-create tenants, print {"created", "seconds"}
    python bench/djtasks.py micro PARAMS.json   # verification micro-benchmark, print µs per call
    python bench/djtasks.py lookup PARAMS.json  # the tenant lookup over given tenants, µs per call

Both print one JSON object on stdout. PARAMS.json is written by bench.py into its temporary folder.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import os
import statistics
import sys
import time
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "connectsite.settings")

import django  # noqa: E402

django.setup()

import jwt  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402
from django.test import RequestFactory  # noqa: E402
from django.urls import resolve  # noqa: E402
from django.utils import timezone  # noqa: E402

from audit.models import LifecycleEvent  # noqa: E402
from audit.records import AuditContext  # noqa: E402
from lifecycle import protocol, verification  # noqa: E402
from lifecycle.policy import WEBHOOK  # noqa: E402
from tenants import services  # noqa: E402

try:  # the task pipeline (issue 15); bench.py may run this file against an older checkout
    from tenants import deliveries
except ImportError:  # pragma: no cover
    deliveries = None  # type: ignore[assignment]
from tenants.models import Installation, WebhookDelivery  # noqa: E402


def tenant_key(index: int) -> str:
    return f"bench-tenant-{index:06d}"


def tenant_secret(seed: str, client_key: str) -> str:
    """The same derivation as bench.py: each tenant has its own 64-hex-digit sharedSecret."""
    return hmac.new(seed.encode(), client_key.encode(), hashlib.sha256).hexdigest()


def seed(params: dict[str, Any]) -> dict[str, Any]:
    """bulk_create tenants [start, start+count); EncryptedSecretField.pre_save encrypts each secret."""
    start, count, batch = int(params["start"]), int(params["count"]), int(params.get("batch", 2000))
    app_key = str(params["app_key"])
    now = timezone.now()
    began = time.perf_counter()
    created = 0
    for first in range(start, start + count, batch):
        rows = []
        for index in range(first, min(first + batch, start + count)):
            client_key = tenant_key(index)
            rows.append(
                Installation(
                    client_key=client_key,
                    app_key=app_key,
                    shared_secret=tenant_secret(params["seed"], client_key),
                    base_url=f"https://bench-{index:06d}.atlassian.net",
                    display_url=f"https://bench-{index:06d}.atlassian.net",
                    product_type="jira",
                    description="Atlassian JIRA at https://bench.atlassian.net",
                    server_version="100000",
                    plugins_version="1001.0.0-SNAPSHOT",
                    last_event_type="installed",
                    enabled=True,
                    installed_at=now,
                    secret_updated_at=now,
                )
            )
        created += len(Installation.objects.bulk_create(rows))
    return {"created": created, "seconds": round(time.perf_counter() - began, 3)}


def _per_call_us(stmt: Any, min_seconds: float = 0.25, repeat: int = 5) -> dict[str, float]:
    """Microseconds per call: best and median of ``repeat`` timings of a loop of >= min_seconds."""
    timer = timeit.Timer(stmt)
    number, elapsed = 1, 0.0
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= min_seconds:
            break
        number *= 2 if elapsed > min_seconds / 10 else 10
    runs = [timer.timeit(number) / number * 1e6 for _ in range(repeat)]
    return {"best_us": round(min(runs), 2), "median_us": round(statistics.median(runs), 2), "loops": number}


def micro(params: dict[str, Any]) -> dict[str, Any]:
    """The verification functions against a bare jwt.decode, and the database steps around them.

    Rows named "what-if" measure a change the app does not make (yet): numbers for proposals.
    """
    token, secret, client_key = params["token"], params["secret"], params["client_key"]
    body = Path(params["body_file"]).read_bytes()
    request = RequestFactory().post(
        params["path"],
        data=body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"JWT {token}",
        HTTP_X_ATLASSIAN_WEBHOOK_IDENTIFIER="micro-1",
    )
    _ = request.body  # read once; Django caches it, as it does for a served request
    request.resolver_match = resolve(params["path"])  # the webhook's event name, as a served request has
    canonical = verification.canonical_request(request)
    expected_qsh = protocol.query_string_hash(canonical)
    rules = verification.claim_rules(require_aud=False)
    installation = Installation.objects.get(client_key=client_key)
    install_body = json.loads(params["installed_body"])
    fields = getattr(
        verification, "TENANT_FIELDS", ("id", "client_key", "state", "suspended", "shared_secret")
    )
    counter = itertools.count()

    # What-if connections: prepared statements, and commits that do not wait for the WAL flush.
    # Extra aliases of this process only; the server under test never uses them.
    for alias, options in (
        ("bench_prepared", {"server_side_binding": True, "prepare_threshold": 5}),
        ("bench_async_commit", {"options": "-c synchronous_commit=off"}),
    ):
        settings_dict = copy.deepcopy(connections["default"].settings_dict)
        settings_dict["OPTIONS"] = {**settings_dict.get("OPTIONS", {}), **options}
        connections.settings[alias] = settings_dict

    def audit_kwargs() -> dict[str, Any]:
        return {
            "event_type": "installed",
            "outcome": "accepted",
            "client_key": client_key,
            "detail": "Reinstalled or updated.",
            "key_id": "bench/kid",
            "token_fingerprint": "0123456789abcdef",
            "remote_addr": "127.0.0.1",
            "path": "/lifecycle/installed",
            "body": install_body,
        }

    def install() -> None:
        # As the middleware runs the view: the audit row in the same transaction as the change.
        with transaction.atomic():
            services.install(install_body)
            LifecycleEvent.objects.record(**audit_kwargs())

    def roundtrip() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    def delivery(using: str = "default") -> None:
        WebhookDelivery(
            installation=installation, event="jira:issue_created", identifier=f"micro-{next(counter)}"
        ).save(using=using)

    def record_webhook() -> None:
        record = getattr(deliveries, "record_webhook", None) if deliveries else None
        if record is not None:  # the delivery, its encrypted body and its task, one transaction
            record(
                installation,
                event="jira:issue_created",
                identifier=f"micro-{next(counter)}",
                retry_count=0,
                raw_body=body.decode() if isinstance(body, bytes) else str(body),
            )
        else:  # before the task pipeline: the delivery INSERT alone
            services.record_webhook(
                installation,
                event="jira:issue_created",
                identifier=f"micro-{next(counter)}",
                retry_count=0,
                body={},
                body_size=len(body),
            )

    manager = Installation.objects
    if hasattr(manager, "for_verification"):  # the app's own hot-path lookup

        def lookup(alias: str = "default") -> Any:
            return lambda: manager.db_manager(alias).for_verification(client_key)

        lookup_label = "tenant lookup as the app does it: Installation.objects.for_verification"
    else:

        def lookup(alias: str = "default") -> Any:
            queryset = manager.using(alias).filter(client_key=client_key).only(*fields)
            return lambda: next(iter(queryset[:1]), None)

        lookup_label = "tenant lookup as the app does it: filter(client_key=...).only(...)[:1]"

    cases = [
        ("jwt_decode_bare", "jwt.decode(token, secret, algorithms=['HS256']): the floor",
         lambda: jwt.decode(token, secret, algorithms=["HS256"])),
        ("protocol_verify_token", "lifecycle.protocol.verify_token (HS256, qsh given)",
         lambda: protocol.verify_token(token, secret, algorithm="HS256", policy=rules,
                                       expected_qsh=expected_qsh, canonical=canonical)),
        ("qsh_of_request", "canonical request + qsh of the HttpRequest",
         lambda: protocol.query_string_hash(verification.canonical_request(request))),
        ("secret_decrypt", "Installation.reveal_shared_secret() (Fernet)", installation.reveal_shared_secret),
        ("verify_webhook", "verification.verify(WEBHOOK): the middleware's whole check, body included",
         lambda: verification.verify(request, WEBHOOK, AuditContext(event="webhook"))),
        ("pg_roundtrip", "SELECT 1: one round trip (what a connection health check costs)", roundtrip),
        ("lookup_orm_full_row", "tenant lookup through the ORM, every column: .filter(...).first()",
         lambda: Installation.objects.filter(client_key=client_key).first()),
        ("lookup_app", lookup_label, lookup()),
        ("whatif_lookup_prepared", "what-if: the same, server-side binding + prepared statements",
         lookup("bench_prepared")),
        ("record_webhook", "record_webhook: the delivery (+ its sealed body and task, where they exist)",
         record_webhook),
        ("insert_plain", "WebhookDelivery(...).save() in autocommit (an INSERT and its commit)", delivery),
        ("whatif_insert_async_commit", "what-if: the same with synchronous_commit=off",
         lambda: delivery("bench_async_commit")),
        ("install", "tenants.services.install, same body again (the signed-install upsert)", install),
        ("audit_row", "LifecycleEvent.objects.record, on its own (one commit)",
         lambda: LifecycleEvent.objects.record(**audit_kwargs())),
    ]  # fmt: skip
    for fn in (cases[0][2], cases[1][2], cases[4][2], cases[5][2]):  # every path must accept the token
        fn()
    # One database connection throughout, as a gunicorn worker keeps one.
    return {name: {"label": label, **_per_call_us(fn)} for name, label, fn in cases}


def lookup(params: dict[str, Any]) -> dict[str, Any]:
    """The app's tenant lookup, round-robin over the given client keys (µs per call)."""
    keys = itertools.cycle(params["client_keys"])
    manager = Installation.objects
    if hasattr(manager, "for_verification"):

        def find() -> None:
            if manager.for_verification(next(keys)) is None:
                raise LookupError("a benchmark tenant is missing")

    else:

        def find() -> None:
            if Installation.objects.filter(client_key=next(keys)).first() is None:
                raise LookupError("a benchmark tenant is missing")

    return {"tenants": Installation.objects.count(), **_per_call_us(find)}


if __name__ == "__main__":
    task, params_file = sys.argv[1], sys.argv[2]
    params = json.loads(Path(params_file).read_text())
    result = {"seed": seed, "micro": micro, "lookup": lookup}[task](params)
    print(json.dumps(result))
