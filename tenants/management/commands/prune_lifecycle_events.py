"""manage.py prune_lifecycle_events: remove old audit rows and webhook deliveries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from connectsite.diagnostics import database_label, reason
from tenants import services
from tenants.conf import tenant_settings


class Command(BaseCommand):
    help = (
        "Delete lifecycle audit rows older than --events-days (default TENANT_EVENT_RETENTION_DAYS, "
        "365) and processed (done) or discarded webhook deliveries older than --webhooks-days (default "
        "TENANT_WEBHOOK_RETENTION_DAYS, 30), in batches; pending, processing and failed deliveries "
        "are kept. --dry-run only counts. Safe to run from cron."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--events-days", type=int, help="age in days of audit rows to delete")
        parser.add_argument(
            "--webhooks-days", type=int, help="age in days of processed webhook deliveries to delete"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would be deleted, delete nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        events_days = options["events_days"]
        if events_days is None:
            events_days = tenant_settings.EVENT_RETENTION_DAYS
        webhooks_days = options["webhooks_days"]
        if webhooks_days is None:
            webhooks_days = tenant_settings.WEBHOOK_RETENTION_DAYS
        for name, value in (("--events-days", events_days), ("--webhooks-days", webhooks_days)):
            if value < 1:
                raise CommandError(f"{name} must be at least 1 (got {value}).")
        try:
            result = services.prune_history(
                events_older_than=timedelta(days=events_days),
                deliveries_older_than=timedelta(days=webhooks_days),
                dry_run=options["dry_run"],
                progress=lambda name, count: self.stderr.write(f"  ... {count} {name} deleted"),
            )
        except DatabaseError as exc:
            raise CommandError(f"database error while pruning: {database_label()}: {reason(exc)}") from exc
        verb = "would delete" if options["dry_run"] else "deleted"
        self.stdout.write(f"lifecycle events older than {events_days} days: {verb} {result.events}")
        self.stdout.write(f"webhook deliveries older than {webhooks_days} days: {verb} {result.deliveries}")
