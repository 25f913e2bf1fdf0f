"""Run the background tasks a test has queued, with the real worker: for tests of webhook
receivers (``tenants.signals.webhook_received`` runs in the task worker, not in the request).

    from connect_testkit.tasks import run_due_tasks

    response = client.post("/webhooks/jira:issue_created", ...)   # 204: stored, queued
    run_due_tasks()                                                # your receiver runs now

Runs ``manage.py db_worker --batch`` (the database task backend, the default) until no task is
due; a retry delayed by ``TENANT_WEBHOOK_RETRY_DELAY`` runs only when due (set it to 0 in a test).
"""

from __future__ import annotations

from unittest import mock

from django.core.management import call_command


def run_due_tasks() -> int:
    """Run every due task; returns how many task rows are left unfinished (not yet due).

    The worker closes "obsolete" database connections between tasks, which inside a test's
    transaction would close the test's own connection: that call is skipped here.
    """
    from django_tasks_db.management.commands import db_worker
    from django_tasks_db.models import DBTaskResult

    with mock.patch.object(db_worker, "close_old_connections", lambda: None):
        call_command(
            "db_worker", "--batch", "--no-startup-delay", "--interval", "0", "--no-reload", verbosity=0
        )
    return DBTaskResult.objects.exclude(status__in=["SUCCESSFUL", "FAILED"]).count()
