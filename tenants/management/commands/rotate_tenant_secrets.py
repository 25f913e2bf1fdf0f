"""manage.py rotate_tenant_secrets: re-encrypt stored shared secrets under the newest key."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from connectsite.diagnostics import database_label, reason
from tenants import services


class Command(BaseCommand):
    help = (
        "Re-encrypt every tenant's shared secret, and every webhook body stored encrypted, under the "
        "first key of TENANT_SECRET_KEYS, in batches with the rows locked (safe while Jira reinstalls), "
        "then check that every stored secret and body decrypts. Rotation: put a new key first in "
        "TENANT_SECRET_KEYS, keep the old ones after it, deploy, run this, then remove the old keys. "
        "Exit 1 if any secret or body fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="report what would change, write nothing")
        parser.add_argument("--batch-size", type=int, default=500, help="rows locked per transaction (500)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            report = services.rotate_secrets(
                batch_size=options["batch_size"],
                dry_run=options["dry_run"],
                progress=lambda done, total: self.stderr.write(f"  ... {done}/{total} rows"),
            )
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        except DatabaseError as exc:
            raise CommandError(f"database error: {database_label()}: {reason(exc)}") from exc
        verb = "would re-encrypt" if options["dry_run"] else "re-encrypted"
        self.stdout.write(f"tenants with a stored secret: {report.with_secret}")
        self.stdout.write(f"{verb} under the first key: {report.rotated}")
        self.stdout.write(f"already under the first key: {report.already_current}")
        self.stdout.write(f"verified (decrypt with the configured keys): {report.verified}")
        self.stdout.write(
            f"webhook bodies stored encrypted: {report.bodies}, {verb} under the first key: "
            f"{report.bodies_rotated}, not decryptable: {len(report.bodies_failed)}"
        )
        if report.bodies_failed:
            shown = ", ".join(str(pk) for pk in report.bodies_failed[:10])
            self.stderr.write(
                f"webhook deliveries whose body no key decrypts: {shown}; they cannot be processed until "
                "the key that encrypted them is back in TENANT_SECRET_KEYS"
            )
        problems = sorted(set(report.failed or []) | set(report.unverifiable or []))
        if problems or report.bodies_failed:
            shown = ", ".join(problems[:10]) + (" ..." if len(problems) > 10 else "")
            raise CommandError(
                f"{len(problems)} secret(s) and {len(report.bodies_failed)} webhook body(ies) do not decrypt "
                f"with any key in TENANT_SECRET_KEYS{': ' + shown if shown else ''}. Put back the key that "
                "encrypted them; nothing was overwritten."
            )
