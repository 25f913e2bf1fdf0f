"""tenants/fields.py: the column holds ciphertext only; the attribute never exposes it."""

import json
from io import StringIO

import pytest
from django.core import serializers
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection, transaction
from django.test import override_settings

from tenants.crypto import SecretDecryptionError
from tenants.fields import SealedSecret, get_secret_box
from tenants.models import Installation

pytestmark = pytest.mark.django_db


def _raw_column(client_key):
    with connection.cursor() as cursor:
        cursor.execute("SELECT shared_secret FROM tenants_installation WHERE client_key = %s", [client_key])
        return cursor.fetchone()[0]


def _create(client_key="client-a", secret="the-plaintext-secret"):  # noqa: S107
    return Installation.objects.create(
        client_key=client_key, base_url="https://a.atlassian.net", shared_secret=secret
    )


def test_database_column_never_holds_the_plaintext():
    _create()
    raw = _raw_column("client-a")
    assert raw.startswith("gAAAAA")  # a Fernet token
    assert "the-plaintext-secret" not in raw
    loaded = Installation.objects.get(client_key="client-a")
    assert isinstance(loaded.shared_secret, SealedSecret)
    assert loaded.reveal_shared_secret() == "the-plaintext-secret"


def test_sealed_value_and_instance_reprs_show_no_secret_material():
    installation = Installation.objects.get(pk=_create().pk)
    ciphertext = installation.shared_secret.ciphertext
    for text in (repr(installation), str(installation), repr(installation.shared_secret)):
        assert "the-plaintext-secret" not in text
        assert ciphertext not in text


def test_ciphertext_copied_into_another_row_does_not_decrypt():
    _create("client-a", "secret-a")
    _create("client-b", "secret-b")
    stolen = Installation.objects.get(client_key="client-a").shared_secret
    Installation.objects.filter(client_key="client-b").update(shared_secret=stolen)
    victim = Installation.objects.get(client_key="client-b")
    with pytest.raises(SecretDecryptionError, match="another tenant"):
        victim.reveal_shared_secret()


def test_plaintext_cannot_bypass_encryption_through_update():
    _create()
    with pytest.raises(TypeError, match="bound to the row's client_key"), transaction.atomic():
        Installation.objects.filter(client_key="client-a").update(shared_secret="plain")
    assert Installation.objects.get(client_key="client-a").reveal_shared_secret() == "the-plaintext-secret"


def test_decryption_fails_closed_when_keys_change():
    _create()
    other = "Zk3Q5lH9sV0yJ2bX8mN4cR6tW1aD7fG3hK5pL9oU2iE="
    with override_settings(TENANTS={"SECRET_KEYS": [other[:-2] + "A="]}):
        with pytest.raises(SecretDecryptionError):
            Installation.objects.get(client_key="client-a").reveal_shared_secret()


def test_no_keys_outside_debug_is_a_configuration_error():
    with override_settings(TENANTS={"SECRET_KEYS": [], "DERIVE_DEVELOPMENT_KEY": False}):
        with pytest.raises(ImproperlyConfigured, match="TENANT_SECRET_KEYS"):
            get_secret_box()


def test_debug_without_keys_uses_a_derived_key_and_says_so(caplog):
    with override_settings(TENANTS={"SECRET_KEYS": [], "DERIVE_DEVELOPMENT_KEY": True}):
        installation = _create("dev-client", "dev-secret")
        assert Installation.objects.get(pk=installation.pk).reveal_shared_secret() == "dev-secret"
    assert "development key derived from SECRET_KEY" in caplog.text


def test_dumpdata_exports_ciphertext_only_and_loaddata_restores_it(tmp_path):
    _create()
    out = StringIO()
    call_command("dumpdata", "tenants.installation", stdout=out)
    dumped = out.getvalue()
    assert "the-plaintext-secret" not in dumped
    record = json.loads(dumped)[0]
    assert record["fields"]["shared_secret"].startswith("gAAAAA")
    Installation.objects.all().delete()
    for obj in serializers.deserialize("json", dumped):
        obj.save()
    assert Installation.objects.get(client_key="client-a").reveal_shared_secret() == "the-plaintext-secret"
