"""Shared fixtures: lifecycle bodies, a database-vendor guard."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection


def pytest_collection_modifyitems(config, items):
    if connection.vendor == "postgresql":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: run with DATABASE_URL=postgres://... (make test does)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def make_body():
    """A lifecycle body as Jira sends it; keyword arguments override fields."""

    def _make(event_type: str = "installed", **overrides):
        body = {
            "key": "django-connect-app",
            "clientKey": overrides.pop("clientKey", f"client-{uuid.uuid4()}"),
            "publicKey": "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA",
            "sharedSecret": "shared-secret-" + uuid.uuid4().hex,
            "serverVersion": "100",
            "pluginsVersion": "1000.0.0",
            "baseUrl": "https://example-site.atlassian.net",
            "displayUrl": "https://example-site.atlassian.net",
            "productType": "jira",
            "description": "Atlassian JIRA at https://example-site.atlassian.net",
            "serviceEntitlementNumber": "SEN-1234",
            "entitlementId": "e-1",
            "entitlementNumber": "E-1",
            "oauthClientId": "oauth-1",
            "eventType": event_type,
        }
        if event_type != "installed":
            body.pop("sharedSecret")
        body.update(overrides)
        return body

    return _make
