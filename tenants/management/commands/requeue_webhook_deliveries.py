"""manage.py requeue_webhook_deliveries: give back the webhook deliveries a dead worker or a lost
task left behind (``tenants.deliveries.sweep``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from connectsite.diagnostics import database_label, reason
from tenants import deliveries


class Command(BaseCommand):
    help = (
        "Give back the webhook deliveries left behind: an attempt still processing more than "
        "TENANT_WEBHOOK_PROCESSING_TIMEOUT plus a grace after it started (its task worker died) is "
        "counted as failed and retried, and a pending delivery overdue by as long (its task was "
        "lost: a worker died between taking the task and claiming the delivery, or the RQ backend "
        "lost the job) is queued again. An extra task is harmless: only one claims a delivery. The "
        "workers' watchdog tasks do the same while deliveries arrive; run this from cron every few "
        "minutes for the quiet periods."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            queued = deliveries.sweep()
        except DatabaseError as exc:
            raise CommandError(f"database error: {database_label()}: {reason(exc)}") from exc
        except deliveries.EnqueueFailed as exc:
            raise CommandError(f"the task backend refused a task ({exc}): check TASKS_RQ_URL") from exc
        self.stdout.write(f"deliveries given back or queued again: {queued}")
