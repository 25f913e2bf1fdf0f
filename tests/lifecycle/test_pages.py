"""lifecycle/pages.py: the shipped "hello" module end to end: page load, context call, and the
call back into Jira as the user (a loopback FakeJira with its token endpoint)."""

import pytest

from connect_testkit import CONTEXT_QSH, sign_tenant
from connect_testkit.fakejira import Answer, FakeJira
from lifecycle import descriptor
from lifecycle.pages import ALL_JS
from tenants import services

SECRET = "hello-tenant-secret-0123456789abcdef0123456789"
USER = "557058:hello-user"
pytestmark = pytest.mark.django_db


@pytest.fixture
def site(settings, make_body):
    with FakeJira(settings.CONNECT["APP_KEY"], SECRET) as fake:
        settings.CONNECT = {**settings.CONNECT, "OAUTH_TOKEN_URL": fake.token_url}
        services.install(make_body(clientKey="hello-tenant", sharedSecret=SECRET, baseUrl=fake.base_url))
        yield fake


def test_the_descriptor_declares_the_page_and_the_scope_it_needs():
    data = descriptor.load_template()
    [page] = data["modules"]["generalPages"]
    assert page["url"] == "/pages/hello" and "ACT_AS_USER" in data["scopes"]
    assert descriptor.declared_urls(data)["generalPages:hello"] == "/pages/hello"


def test_the_page_shows_the_tenant_and_the_user_and_loads_all_js_from_atlassian(client, site):
    url = "/pages/hello?lic=active&xdm_e=https%3A%2F%2Fevil.example.com&cv=1001.0.0"
    token = sign_tenant(SECRET, client_key="hello-tenant", method="GET", url=url, overrides={"sub": USER})
    response = client.get(f"{url}&jwt={token}")
    page = response.content.decode()
    assert response.status_code == 200
    assert f'<script src="{ALL_JS}"' in page and site.base_url in page and USER in page
    assert "evil.example.com" not in page
    assert (
        response["Content-Security-Policy"]
        == f"frame-ancestors {site.base_url} https://example-site.atlassian.net"
    )


def test_the_pages_context_call_asks_jira_as_the_user(client, site):
    token = sign_tenant(
        SECRET, client_key="hello-tenant", method="GET", url="/", overrides={"qsh": CONTEXT_QSH, "sub": USER}
    )
    response = client.get("/api/hello/me", HTTP_AUTHORIZATION=f"JWT {token}")
    assert response.status_code == 200 and response.json()["accountId"] == USER
    [grant] = site.grants
    assert grant["sub"] == f"urn:atlassian:connect:useraccountid:{USER}"
    assert site.seen[-1].path == "/rest/api/3/myself" and site.seen[-1].refused == ""


def test_the_context_call_refuses_a_page_load_token_and_says_when_jira_refuses(client, site):
    page_token = sign_tenant(
        SECRET, client_key="hello-tenant", method="GET", url="/pages/hello", overrides={"sub": USER}
    )
    assert client.get("/api/hello/me", HTTP_AUTHORIZATION=f"JWT {page_token}").status_code == 401
    site.script("/rest/api/3/myself", Answer(403))
    token = sign_tenant(
        SECRET, client_key="hello-tenant", method="GET", url="/", overrides={"qsh": CONTEXT_QSH, "sub": USER}
    )
    refused = client.get("/api/hello/me", HTTP_AUTHORIZATION=f"JWT {token}")
    assert (refused.status_code, refused.json()["error"]) == (502, "jira_refused")


def test_a_site_that_cannot_be_reached_is_a_502_with_a_fix_not_a_500(client, settings, make_body):
    import socket

    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    services.install(
        make_body(clientKey="gone-site", sharedSecret=SECRET, baseUrl=f"http://127.0.0.1:{port}")
    )
    settings.CONNECT = {**settings.CONNECT, "OAUTH_TOKEN_URL": f"http://127.0.0.1:{port}/oauth2/token"}
    token = sign_tenant(
        SECRET, client_key="gone-site", method="GET", url="/", overrides={"qsh": CONTEXT_QSH, "sub": USER}
    )
    response = client.get("/api/hello/me", HTTP_AUTHORIZATION=f"JWT {token}")
    assert (response.status_code, response.json()["error"]) == (502, "jira_unavailable")
    assert "try again" in response.json()["detail"] and SECRET not in response.content.decode()
