"""README's second "Testing your app" example: the shipped page's context call, which calls Jira
back as the user, tested against the test kit's fake Jira. Checked verbatim by
tests/test_readme_python.py.
"""

# --- README example: start ---
import pytest

from connect_testkit import CONTEXT_QSH, FakeJira, sign_tenant
from tenants import services

SECRET = "a-shared-secret-of-32-characters-or-more"


@pytest.fixture
def jira(settings):
    with FakeJira(settings.CONNECT["APP_KEY"], SECRET) as fake:
        # User grants go to the fake's token endpoint, for this test.
        settings.CONNECT = {**settings.CONNECT, "OAUTH_TOKEN_URL": fake.token_url}
        yield fake


@pytest.mark.django_db
def test_the_page_asks_jira_who_the_user_is(client, settings, jira):
    # A tenant whose site is the fake Jira, installed directly (the install route would refuse
    # its http://127.0.0.1 baseUrl, as it refuses any site off CONNECT_TENANT_HOSTS).
    services.install(
        {
            "key": settings.CONNECT["APP_KEY"],
            "clientKey": "test-tenant",
            "sharedSecret": SECRET,
            "baseUrl": jira.base_url,
            "oauthClientId": jira.oauth_client_id,
            "productType": "jira",
            "eventType": "installed",
        }
    )
    context_token = sign_tenant(
        SECRET,
        client_key="test-tenant",
        method="GET",
        url="/",
        overrides={"qsh": CONTEXT_QSH, "sub": "557058:test-user"},
    )
    response = client.get("/api/hello/me", HTTP_AUTHORIZATION=f"JWT {context_token}")
    assert response.json()["accountId"] == "557058:test-user"
    [grant] = jira.grants  # the OAuth 2.0 JWT bearer grant the app made for the user
    assert grant["sub"] == "urn:atlassian:connect:useraccountid:557058:test-user"
    assert [(seen.method, seen.path, seen.refused) for seen in jira.seen] == [
        ("GET", "/rest/api/3/myself", "")
    ]


# --- README example: end ---
