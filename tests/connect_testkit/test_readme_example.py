"""README's "Testing your app" example, as a fork would write it: run as part of the suite.

tests/test_readme_python.py checks that README shows this file's example verbatim.
"""

# --- README example: start ---
import json

import pytest
from django.core.cache import cache

from connect_testkit import KeyServer, generate_rsa_key, sign_install, sign_tenant
from lifecycle.keys import provider


@pytest.fixture
def key_server(settings):
    with KeyServer() as server:
        settings.CONNECT = {**settings.CONNECT, "KEY_SERVERS": [server.url]}  # trust it, for this test
        provider.clear()  # fetched keys live in memory (and in the database and cache) between tests
        cache.clear()
        yield server


@pytest.mark.django_db
def test_jira_installs_the_app_then_sends_a_webhook(client, settings, key_server):
    key = generate_rsa_key()
    key_server.publish("test/kid-1", key)
    secret = "a-shared-secret-of-32-characters-or-more"
    body = {
        "key": settings.CONNECT["APP_KEY"],
        "clientKey": "test-tenant",
        "sharedSecret": secret,
        "baseUrl": "https://test-tenant.atlassian.net",
        "productType": "jira",
        "eventType": "installed",
    }
    install = sign_install(
        key, kid="test/kid-1", client_key="test-tenant", audience=settings.CONNECT["BASE_URL"]
    )
    response = client.post(
        "/lifecycle/installed",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"JWT {install}",
    )
    assert response.status_code == 204

    path = "/webhooks/jira:issue_created?issueKey=TEST-1"
    hook = sign_tenant(secret, client_key="test-tenant", method="POST", url=path)
    response = client.post(
        path,
        json.dumps({"webhookEvent": "jira:issue_created"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"JWT {hook}",
        HTTP_X_ATLASSIAN_WEBHOOK_IDENTIFIER="delivery-1",
    )
    assert response.status_code == 204


# --- README example: end ---
