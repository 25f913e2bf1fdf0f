"""manage.py connect_doctor: find what would stop Jira from installing or calling the app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lifecycle import doctor


class Command(BaseCommand):
    help = (
        "Check the descriptor (signed-install and context-qsh on, JWT authentication, an https "
        "baseUrl equal to CONNECT_BASE_URL, every lifecycle and webhook URL routed, READ scope for "
        "webhooks, a valid app key), the settings (encryption keys, DEBUG, ALLOWED_HOSTS, FORGE_APP_ID "
        "and FORGE_JWKS_URL), and that the database and the cache answer. "
        "Prints one line per finding with its fix; exits 1 when any finding is an error."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--descriptor",
            type=Path,
            metavar="PATH",
            help="check this descriptor file as it is (default: the template as this server serves it)",
        )
        parser.add_argument(
            "--check-key-servers",
            action="store_true",
            help="also check that each CONNECT_KEY_SERVERS answers, and with FORGE_APP_ID set that "
            "FORGE_JWKS_URL serves a usable JWKS",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        data, findings = doctor.load_descriptor(options["descriptor"])
        if data is not None:
            findings += list(doctor.check_descriptor(data))
        findings += list(doctor.check_settings())
        findings += list(doctor.check_services())
        if options["check_key_servers"]:
            findings += list(doctor.check_key_servers())
            findings += list(doctor.check_forge_jwks())
        for finding in findings:
            self.stdout.write(finding.line())
        errors = sum(f.level == doctor.ERROR for f in findings)
        warnings = len(findings) - errors
        if errors:
            raise CommandError(f"{errors} error(s), {warnings} warning(s)")
        self.stdout.write(f"no errors, {warnings} warning(s)" if warnings else "all checks passed")
