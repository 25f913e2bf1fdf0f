"""outbound/jira.py: calls back into Jira as the app, checked by a loopback fake Jira."""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from connect_testkit.fakejira import Answer, FakeJira, iso_in
from outbound import jira
from tenants import services

pytestmark = pytest.mark.django_db
SECRET = "outbound-tenant-secret-0123456789abcdef0123456789"
APP_KEY = "django-connect-app"


@pytest.fixture
def fake():
    with FakeJira(APP_KEY, SECRET) as server:
        yield server


def _install(make_body, base_url, secret=SECRET, client_key="outbound-tenant"):
    services.install(make_body(clientKey=client_key, sharedSecret=secret, baseUrl=base_url))
    return jira.as_app(client_key)


def test_a_call_as_the_app_carries_the_jwt_jira_checks(fake, make_body):
    client = _install(make_body, fake.base_url)
    response = client.get("/rest/api/3/myself")
    assert (response.status_code, response.json()["accountType"]) == (200, "app")
    [seen] = fake.seen
    assert seen.refused == "" and seen.claims["iss"] == APP_KEY
    assert seen.claims["exp"] - seen.claims["iat"] == jira.TOKEN_LIFETIME


def test_the_qsh_covers_the_final_url_with_repeated_parameters_and_spaces(fake, make_body):
    client = _install(make_body, fake.base_url)
    params = [
        ("jql", "project = ABC order by created"),
        ("fields", "summary"),
        ("fields", "status"),
        ("x", "a+b"),
    ]
    response = client.get("/rest/api/3/search?expand=names", params=params)
    assert response.status_code == 200, fake.seen[-1].refused
    assert "expand=names" in fake.seen[-1].query and "fields=summary" in fake.seen[-1].query


def test_a_site_below_a_path_prefix_is_signed_relative_to_it(make_body):
    with FakeJira(APP_KEY, SECRET, path_prefix="/jira") as prefixed:
        client = _install(make_body, prefixed.base_url)
        assert client.get("/rest/api/3/myself").status_code == 200
        assert prefixed.seen[-1].path == "/jira/rest/api/3/myself" and prefixed.seen[-1].refused == ""


def test_a_url_off_the_tenants_site_is_refused_before_a_byte_leaves(fake, make_body):
    client = _install(make_body, fake.base_url)
    with FakeJira(APP_KEY, SECRET) as elsewhere:
        with pytest.raises(jira.ForeignURL):
            client.get(elsewhere.base_url + "/rest/api/3/myself")
        with pytest.raises(jira.ForeignURL):
            client.get("https://evil.example.com/rest/api/3/myself")
        assert elsewhere.seen == [] and fake.seen == []
    assert client.get(fake.base_url + "/rest/api/3/myself").status_code == 200  # its own site, absolute


def test_redirects_are_not_followed(fake, make_body):
    client = _install(make_body, fake.base_url)
    fake.script("/rest/api/3/myself", Answer(302, {"Location": "https://evil.example.com/steal"}))
    response = client.get("/rest/api/3/myself")
    assert response.status_code == 302 and len(fake.seen) == 1


def test_429_is_retried_after_retry_after_for_idempotent_methods_only(fake, make_body):
    client = _install(make_body, fake.base_url)
    fake.script("/rest/api/3/myself", Answer(429, {"Retry-After": "1"}))
    started = time.monotonic()
    assert client.get("/rest/api/3/myself").status_code == 200
    assert time.monotonic() - started >= 0.9 and len(fake.seen) == 2
    fake.script("/rest/api/3/issue", Answer(429, {"Retry-After": "1"}))
    assert client.post("/rest/api/3/issue", json={"fields": {}}).status_code == 429  # never resent
    assert len(fake.seen) == 3


def test_without_retry_after_the_rate_limit_reset_is_honoured(fake, make_body):
    client = _install(make_body, fake.base_url)
    fake.script("/rest/api/3/myself", Answer(429, {"X-RateLimit-Reset": iso_in(2)}))
    started = time.monotonic()
    assert client.get("/rest/api/3/myself").status_code == 200
    assert time.monotonic() - started >= 0.5 and len(fake.seen) == 2


def test_retries_are_capped(fake, make_body):
    client = _install(make_body, fake.base_url)
    fake.script("/rest/api/3/myself", *[Answer(503, {"Retry-After": "0"})] * 10)
    assert client.get("/rest/api/3/myself").status_code == 503
    assert len(fake.seen) == 1 + jira.RETRIES


def test_every_call_has_a_timeout(fake, make_body):
    client = _install(make_body, fake.base_url)
    fake.script("/rest/api/3/myself", Answer(delay=3))
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        client.get("/rest/api/3/myself", timeout=(1, 0.5))
    assert time.monotonic() - started < 2.8  # the answer would take 3 s


def test_a_reinstall_and_a_site_rename_apply_to_the_next_call(fake, make_body):
    client = _install(make_body, fake.base_url)
    assert client.get("/rest/api/3/myself").status_code == 200
    new_secret = "a-new-shared-secret-after-reinstall-0123456789"
    with FakeJira(APP_KEY, new_secret) as renamed:
        services.install(
            make_body(clientKey="outbound-tenant", sharedSecret=new_secret, baseUrl=renamed.base_url)
        )
        assert client.get("/rest/api/3/myself").status_code == 200
        assert renamed.seen[-1].refused == "" and len(fake.seen) == 1


@pytest.mark.parametrize("state", ["uninstalled", "suspended", "unknown"])
def test_a_tenant_that_cannot_be_called_is_a_clear_error(fake, make_body, state):
    client = _install(make_body, fake.base_url)
    if state == "uninstalled":
        services.uninstall("outbound-tenant")
    elif state == "suspended":
        services.set_suspended("outbound-tenant", True, actor="op")
    else:
        client = jira.as_app("no-such-tenant")
    with pytest.raises(jira.TenantUnavailable, match=state if state != "unknown" else "No tenant"):
        client.get("/rest/api/3/myself")
    assert fake.seen == []


def test_neither_the_token_nor_the_secret_is_logged(fake, make_body, caplog):
    caplog.set_level(logging.DEBUG)
    client = _install(make_body, fake.base_url)
    response = client.get("/rest/api/3/myself")
    token = response.request.headers["Authorization"][4:]
    assert SECRET not in caplog.text and token not in caplog.text
    assert SECRET not in repr(client.session.__dict__) and SECRET not in repr(response.request)


# --- As a user: the OAuth 2.0 JWT bearer grant ----------------------------------------------------


@pytest.fixture
def user_fake(settings):
    with FakeJira(APP_KEY, SECRET, oauth_client_id="oauth-1") as server:
        settings.CONNECT = {**settings.CONNECT, "OAUTH_TOKEN_URL": server.token_url}
        yield server


def test_a_call_as_a_user_exchanges_a_jwt_bearer_grant_and_caches_the_token(user_fake, make_body):
    services.install(make_body(clientKey="outbound-tenant", sharedSecret=SECRET, baseUrl=user_fake.base_url))
    client = jira.as_user("outbound-tenant", "557058:user-1")
    for _ in range(3):
        response = client.get("/rest/api/3/myself")
        assert response.json() == {"accountId": "557058:user-1", "accountType": "atlassian"}
    [grant] = user_fake.grants  # one token for three calls
    assert grant["iss"] == "urn:atlassian:connect:clientid:oauth-1"
    assert grant["sub"] == "urn:atlassian:connect:useraccountid:557058:user-1"
    assert grant["tnt"] == user_fake.base_url and grant["exp"] - grant["iat"] == jira.ASSERTION_LIFETIME
    assert response.request.headers["Authorization"].startswith("Bearer ")
    jira.as_user("outbound-tenant", "557058:user-2").get("/rest/api/3/myself")
    assert len(user_fake.grants) == 2  # another user, another token


def test_a_refused_grant_is_a_clear_error_and_nothing_reaches_jira(user_fake, make_body):
    services.install(
        make_body(
            clientKey="outbound-tenant",
            sharedSecret=SECRET,
            baseUrl=user_fake.base_url,
            oauthClientId="other",
        )
    )
    with pytest.raises(jira.JiraCallError, match="refused the user grant: HTTP 401"):
        jira.as_user("outbound-tenant", "557058:user-1").get("/rest/api/3/myself")
    assert user_fake.seen == []


def test_concurrent_first_calls_for_one_user_share_one_grant(user_fake, make_body):
    installation = services.install(
        make_body(clientKey="outbound-tenant", sharedSecret=SECRET, baseUrl=user_fake.base_url)
    ).installation
    user_fake.grant_delay = 0.3  # the other calls arrive while the first grant is under way
    start = threading.Barrier(8)

    def first_call() -> str:
        start.wait()
        return jira.user_token(installation, "557058:user-1")

    with ThreadPoolExecutor(8) as pool:
        tokens = list(pool.map(lambda _: first_call(), range(8)))
    assert len(user_fake.grants) == 1 and set(tokens) == {"user-token-1"}


def test_a_refused_grant_fails_its_concurrent_callers_without_a_grant_each(user_fake, make_body):
    from django.core.cache import cache

    installation = services.install(
        make_body(
            clientKey="outbound-tenant", sharedSecret=SECRET, baseUrl=user_fake.base_url, oauthClientId="x"
        )
    ).installation
    user_fake.grant_delay = 0.3
    start = threading.Barrier(8)

    def first_call() -> str:
        start.wait()
        try:
            return jira.user_token(installation, "557058:user-1")
        except jira.JiraCallError as exc:
            return str(exc)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: first_call(), range(8)))
    assert len(user_fake.grants) == 1  # the others saw its refusal instead of asking in turn
    assert all("refused the user grant" in answer for answer in answers)
    key = jira._user_token_key(installation, "557058:user-1", jira.DEFAULT_USER_SCOPES)
    assert cache.get(key + ":fetching") is None  # the lock is released


def test_a_token_near_its_expiry_is_not_reused(user_fake, make_body, monkeypatch):
    services.install(make_body(clientKey="outbound-tenant", sharedSecret=SECRET, baseUrl=user_fake.base_url))
    monkeypatch.setattr(jira, "TOKEN_MARGIN", 900)  # the fake's tokens live 900 s: never cached
    client = jira.as_user("outbound-tenant", "557058:user-1")
    client.get("/rest/api/3/myself")
    client.get("/rest/api/3/myself")
    assert len(user_fake.grants) == 2


# --- Review findings: the site check on the URL as urllib3 reads it, tokens after a 401 ------------


@pytest.mark.parametrize(
    "target",
    [
        "/https://{elsewhere}/rest/api/3/myself",
        "/ https://{elsewhere}/rest/api/3/myself",
        "/\thttps://{elsewhere}/rest/api/3/myself",
        "http://{elsewhere}\\@{site}/rest/api/3/myself",
        "http://user@{site}/rest/api/3/myself",
        "//{elsewhere}/rest/api/3/myself",
        "/rest/api/3/../../../other",
    ],
)
@pytest.mark.parametrize("as_user", [False, True])
def test_no_token_leaves_for_another_host(fake, make_body, settings, target, as_user):
    settings.CONNECT = {**settings.CONNECT, "OAUTH_TOKEN_URL": fake.token_url}
    _install(make_body, fake.base_url)
    client = jira.as_user("outbound-tenant", "557058:u") if as_user else jira.as_app("outbound-tenant")
    with FakeJira(APP_KEY, SECRET) as elsewhere:
        url = target.format(elsewhere=elsewhere.base_url.split("//")[1], site=fake.base_url.split("//")[1])
        with pytest.raises(jira.JiraCallError):
            client.get(url)
        assert elsewhere.seen == [] and fake.seen == []


def test_an_explicit_default_port_is_the_same_site():
    jira.check_on_site("https://x.atlassian.net:443/rest/api/3/myself", "https://x.atlassian.net")
    with pytest.raises(jira.ForeignURL):
        jira.check_on_site("https://x.atlassian.net:8443/rest", "https://x.atlassian.net")


def test_a_401_drops_the_cached_user_token(fake, make_body, settings):
    settings.CONNECT = {**settings.CONNECT, "OAUTH_TOKEN_URL": fake.token_url}
    _install(make_body, fake.base_url)
    client = jira.as_user("outbound-tenant", "557058:u")
    assert client.get("/rest/api/3/myself").status_code == 200
    fake.script("/rest/api/3/myself", Answer(401))
    assert client.get("/rest/api/3/myself").status_code == 401
    assert client.get("/rest/api/3/myself").status_code == 200
    assert len(fake.grants) == 2  # a new token after the 401


def test_a_reinstall_drops_the_cached_user_token(fake, make_body, settings):
    settings.CONNECT = {**settings.CONNECT, "OAUTH_TOKEN_URL": fake.token_url}
    client = _install(make_body, fake.base_url)
    user = jira.as_user("outbound-tenant", "557058:u")
    user.get("/rest/api/3/myself")
    fake.shared_secret = "the-secret-after-reinstall-0123456789abcdef"
    _install(make_body, fake.base_url, secret=fake.shared_secret)
    assert user.get("/rest/api/3/myself").status_code == 200 and len(fake.grants) == 2
    assert client.get("/rest/api/3/myself").status_code == 200


def test_a_garbled_retry_after_falls_back_and_413_is_never_retried(fake, make_body):
    client = _install(make_body, fake.base_url)
    fake.script("/rest/api/3/myself", Answer(503, {"Retry-After": "soon"}))
    assert client.get("/rest/api/3/myself").status_code == 200 and len(fake.seen) == 2
    fake.script("/rest/api/3/myself", Answer(413, {"Retry-After": "1"}))
    assert client.get("/rest/api/3/myself").status_code == 413 and len(fake.seen) == 3
