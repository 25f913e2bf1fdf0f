"""lifecycle/management/commands/connect_keys.py, against the loopback key server."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from connect_testkit import generate_rsa_key
from lifecycle.keys import provider
from lifecycle.models import InstallKey
from tests.conftest import KID

pytestmark = pytest.mark.django_db


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("connect_keys", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_fetch_caches_and_list_shows_it(key_server):
    out, _ = run("fetch", KID)
    row = InstallKey.objects.get()
    assert out == f"{KID}: cached from {key_server.url} (sha256:{row.fingerprint[:16]})\n"
    out, _ = run("list")
    assert re.fullmatch(rf"{KID}  {re.escape(key_server.url)}  age [0-9]s  expires in 23h\n", out)


def test_fetch_of_an_unknown_kid_exits_non_zero(key_server):
    with pytest.raises(CommandError, match="1 of 2 kid"):
        run("fetch", KID, "no-such-kid")
    assert list(InstallKey.objects.values_list("kid", flat=True)) == [KID]


def test_fetch_refuses_an_invalid_kid(key_server):
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("connect_keys", "fetch", "../etc/passwd", stdout=StringIO(), stderr=err)
    assert "invalid_kid" in err.getvalue()
    assert key_server.requests == []


def test_refresh_reports_unchanged_changed_and_removed(key_server, rsa_key):
    run("fetch", KID)
    key_server.publish("second-kid", rsa_key)
    run("fetch", "second-kid")
    key_server.keys.pop("second-kid")  # retired by Atlassian
    out, _ = run("refresh")
    assert out.splitlines() == [
        "[1/2] 9b4a6f1e-3c2d-4e5f-8a7b-0c1d2e3f4a5b: refreshed, unchanged",
        "[2/2] second-kid: removed (no key server publishes it any more)",
        "refreshed 1 (changed 0), removed 1, failed 0",
    ]
    assert list(InstallKey.objects.values_list("kid", flat=True)) == [KID]
    key_server.publish(KID, generate_rsa_key())
    out, _ = run("refresh")
    assert "refreshed, KEY CHANGED" in out


def test_refresh_failure_keeps_the_key_and_exits_non_zero(key_server):
    run("fetch", KID)
    key_server.behaviour = "error"
    with pytest.raises(CommandError, match="could not be fetched"):
        run("refresh")
    assert InstallKey.objects.filter(kid=KID).exists()


def test_purge_expired_then_all(key_server, rsa_key):
    run("fetch", KID)
    key_server.publish("old-kid", rsa_key)
    run("fetch", "old-kid")
    InstallKey.objects.filter(kid="old-kid").update(expires_at=timezone.now() - timedelta(hours=1))
    assert run("list")[0].count("EXPIRED") == 1
    assert run("purge", "--expired")[0] == "deleted 1 expired cached key(s)\n"
    assert run("purge")[0] == "deleted 1 cached key(s)\n"
    assert not InstallKey.objects.exists()
    provider.clear()


def test_empty_cache_messages():
    assert run("list")[0] == "no cached keys\n"
    assert run("refresh")[0] == "no cached keys to refresh\n"


def test_help_names_every_subcommand():
    from lifecycle.management.commands.connect_keys import Command

    text = Command().create_parser("manage.py", "connect_keys").format_help()
    for word in ("refresh", "fetch", "list", "purge"):
        assert word in text
