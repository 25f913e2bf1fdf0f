"""manage.py requeue_webhook_deliveries: queue again the pending deliveries whose task was lost."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from connectsite.diagnostics import database_label, reason
from tenants import deliveries


class Command(BaseCommand):
    help = (
        "Queue a processing task again for every pending webhook delivery that is overdue by more "
        "than TENANT_WEBHOOK_PROCESSING_TIMEOUT plus a grace (its task was lost: a task worker died "
        "between taking the task and claiming the delivery, or the RQ backend lost the job). An "
        "extra task is harmless: only one claims a delivery. Safe to run from cron every few minutes."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            queued = deliveries.sweep()
        except DatabaseError as exc:
            raise CommandError(f"database error: {database_label()}: {reason(exc)}") from exc
        except deliveries.EnqueueFailed as exc:
            raise CommandError(f"the task backend refused a task ({exc}): check TASKS_RQ_URL") from exc
        self.stdout.write(f"overdue pending deliveries queued again: {queued}")
