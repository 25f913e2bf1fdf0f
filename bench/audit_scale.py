"""Admin pages over a large audit history (issue 12, item 2): PostgreSQL, loopback, bounded.

    createdb -h 127.0.0.1 -U postgres connect_scale
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/connect_scale \\
        .venv/bin/python bench/audit_scale.py --rows 10000000

Migrates the database named in DATABASE_URL, fills tenants_lifecycleevent
with --rows rows spread over 60 days (mixed outcomes, reasons, tenants; a tenth verified) with one
generate_series INSERT, then times each admin page an operator opens (median of 3, in-process
test client as a superuser; the dashboard is computed at each render, never taken from the
cache; it first tallies the last 31 days, over as many renders as that takes). Drop the database afterwards:
dropdb -h 127.0.0.1 -U postgres NAME.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

PAGES = {
    "admin index (dashboard)": "/admin/",
    "failed verifications": "/admin/audit/failedverification/",
    "lifecycle events": "/admin/audit/lifecycleevent/",
    "installations": "/admin/tenants/installation/",
    "one tenant's page": None,
}
FILL = """
INSERT INTO tenants_lifecycleevent
    (client_key, event_type, outcome, reason, detail, key_id, token_fingerprint, remote_addr, path,
     actor, body, verified, count, last_seen_at, created_at)
SELECT 'tenant-' || (i %% 5000),
       (ARRAY['installed','uninstalled','enabled','disabled','webhook'])[1 + i %% 5],
       (ARRAY['accepted','rejected','rejected','ignored'])[1 + i %% 4],
       CASE WHEN i %% 4 IN (1, 2) THEN (ARRAY['bad_signature','qsh_mismatch','method_not_allowed',
            'authorization_header_missing','unknown_kid'])[1 + i %% 5] ELSE '' END,
       '', '', '', ('203.0.113.' || (i %% 250))::inet, '/lifecycle/installed', '', NULL, i %% 10 = 0, 1, NULL,
       now() - (i %% (60 * 86400)) * interval '1 second'
FROM generate_series(1, %s) AS i
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from audit.models import LifecycleEvent
    from tenants import services
    from tenants.models import Installation

    setup_test_environment()
    call_command("migrate", verbosity=0)
    if LifecycleEvent.objects.count() < args.rows:
        started = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute(FILL, [args.rows])
            cursor.execute("ANALYZE tenants_lifecycleevent")
        print(f"filled {args.rows:,} rows in {time.monotonic() - started:.0f} s")
        services.install(
            {
                "clientKey": "tenant-7",
                "sharedSecret": "s" * 40,
                "baseUrl": "https://t7.atlassian.net",
                "key": "django-connect-app",
                "eventType": "installed",
            }
        )
    user = User.objects.filter(username="scale").first() or User.objects.create_superuser("scale", "", "x")
    client = Client()
    client.force_login(user)
    PAGES["one tenant's page"] = (
        f"/admin/tenants/installation/{Installation.objects.get(client_key='tenant-7').pk}/change/"
    )
    from django.core.cache import cache

    from audit.models import AuditTally, AuditTallyMark

    cache.clear()
    AuditTally.objects.all().delete()  # as right after the upgrade that brought tallies
    AuditTallyMark.objects.all().delete()
    renders = []
    while True:
        started = time.perf_counter()
        html = client.get("/admin/").content.decode()
        renders.append(time.perf_counter() - started)
        if 'id="dashboard-counting"' not in html:
            break
    print(
        f"{'dashboard, first tally':<28} {len(renders)} renders, {sum(renders):.1f} s in all, "
        f"the longest {max(renders) * 1000:.0f} ms"
    )
    for name, path in PAGES.items():
        times = []
        for _ in range(3):
            cache.delete("connect:dashboard")  # each render computes the dashboard, none is cached
            started = time.perf_counter()
            response = client.get(path)
            times.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise SystemExit(f"{path}: HTTP {response.status_code}")
        first, median = times[0] * 1000, statistics.median(times) * 1000
        print(f"{name:<28} first {first:6.0f} ms, median of 3 {median:6.0f} ms   {path}")


if __name__ == "__main__":
    main()
