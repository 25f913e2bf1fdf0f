"""manage.py connect_keys: inspect and maintain the cache of Atlassian's install-signing keys."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.utils import timezone

from connectsite.diagnostics import database_label, reason
from lifecycle import keys
from lifecycle.errors import ConnectError
from lifecycle.models import InstallKey


def _age(seconds: float) -> str:
    seconds = int(abs(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class Command(BaseCommand):
    help = (
        "Maintain the cache of Atlassian's install-signing public keys (table InstallKey). "
        "refresh: fetch every cached key again, remove those no key server publishes any more; "
        "fetch KID...: fetch and cache keys now (exit 1 for an unknown kid); "
        "list: kid, key server, age and expiry; purge [--expired]: empty the cache."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{refresh,fetch,list,purge}")
        sub.add_parser(
            "refresh",
            help="fetch every cached key again; remove retired ones",
            description="Fetch every cached key again from CONNECT_KEY_SERVERS. A kid that no key "
            "server publishes any more is removed; a key whose fetch fails stays cached (exit 1).",
        )
        fetch = sub.add_parser(
            "fetch",
            help="fetch and cache the given kids now",
            description="Fetch the public key of each KID from CONNECT_KEY_SERVERS, in order, and "
            "cache it for CONNECT_KEY_TTL, e.g. to warm the cache before Atlassian signs with a new "
            "kid. Exit 1 if any kid is unknown to every key server or cannot be fetched.",
        )
        fetch.add_argument("kids", nargs="+", metavar="KID", help="a key id, e.g. one from an install's kid")
        sub.add_parser(
            "list",
            help="list cached keys: kid, key server, age, expiry",
            description="List the cached keys, one a line: kid, key server, age and expiry.",
        )
        purge = sub.add_parser(
            "purge",
            help="delete cached keys (they are fetched again when needed)",
            description="Delete cached keys from the InstallKey table; each is fetched again the "
            "next time an install names its kid. Keys past their TTL are still used while every "
            "key server fails (stale-if-error): purging them gives that up.",
        )
        purge.add_argument("--expired", action="store_true", help="delete only keys past their TTL")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            getattr(self, f"_{action}")(**options)
        except DatabaseError as exc:
            raise CommandError(f"database error: {database_label()}: {reason(exc)}") from exc

    def _refresh(self, **options: Any) -> None:
        total = InstallKey.objects.count()
        if total == 0:
            self.stdout.write("no cached keys to refresh")
            return
        done = 0

        def progress(kid: str, outcome: str) -> None:
            nonlocal done
            done += 1
            self.stdout.write(f"[{done}/{total}] {kid}: {outcome}")

        report = keys.refresh_keys(progress=progress)
        self.stdout.write(
            f"refreshed {len(report.unchanged) + len(report.changed)} "
            f"(changed {len(report.changed)}), removed {len(report.removed)}, failed {len(report.failed)}"
        )
        if report.failed:
            raise CommandError(f"{len(report.failed)} key(s) could not be fetched; they stay cached")

    def _fetch(self, kids: list[str], **options: Any) -> None:
        failures = 0
        for kid in kids:
            try:
                [row] = keys.prefetch_keys([kid])
            except ConnectError as exc:
                failures += 1
                self.stderr.write(f"{kid}: {exc.code}: {exc.detail}")
                continue
            self.stdout.write(f"{kid}: cached from {row.key_server} (sha256:{row.fingerprint[:16]})")
        if failures:
            raise CommandError(f"{failures} of {len(kids)} kid(s) could not be fetched")

    def _list(self, **options: Any) -> None:
        now = timezone.now()
        rows = list(InstallKey.objects.order_by("kid"))
        if not rows:
            self.stdout.write("no cached keys")
            return
        for row in rows:
            expiry = (row.expires_at - now).total_seconds()
            expires = f"expires in {_age(expiry)}" if expiry > 0 else f"EXPIRED {_age(expiry)} ago"
            self.stdout.write(
                f"{row.kid}  {row.key_server}  age {_age((now - row.fetched_at).total_seconds())}  {expires}"
            )

    def _purge(self, expired: bool, **options: Any) -> None:
        deleted = keys.purge_keys(expired_only=expired)
        self.stdout.write(f"deleted {deleted} {'expired ' if expired else ''}cached key(s)")
