"""outbound/forge.py: Atlassian's APIs with the tokens Forge sent, against a loopback fake."""

from __future__ import annotations

import logging
import time

import pytest

from connect_testkit import forge_oauth_token
from connect_testkit.fakejira import FakeJira
from lifecycle.fit import ForgeIdentity, ForgeToken
from lifecycle.verification import ForgeCall
from outbound import forge as client_module
from outbound.forge import ForgeClient, ForgeTokenUnavailable, tokens
from outbound.jira import ForeignURL
from tenants import forge as forge_services

pytestmark = pytest.mark.django_db
CLOUD = "c821c30c-a2ad-47d7-b742-9fed48cfd6b9"
INSTALLATION = "ari:cloud:ecosystem::installation/0a3a7799-1c2d-4e5f-8a9b-0c1d2e3f4a5b"


@pytest.fixture(autouse=True)
def _no_tokens():
    tokens.clear()
    yield
    tokens.clear()


@pytest.fixture
def api():
    with FakeJira("unused", "unused", path_prefix=f"/ex/jira/{CLOUD}") as server:
        yield server


def call_for(api_base_url, system=None, user=None, account_id=""):
    identity = ForgeIdentity(
        app_id="ari:cloud:ecosystem::app/x", installation_id=INSTALLATION, cloud_id=CLOUD, site_url="",
        api_base_url=api_base_url, environment_type="PRODUCTION", environment_id="", module_key="m",
        app_version="1", account_id=account_id,
    )  # fmt: skip
    observed = forge_services.observe(
        forge_services.FitSubject(INSTALLATION, CLOUD, api_base_url=api_base_url)
    )
    return ForgeCall(
        identity,
        observed.installation,
        observed,
        system_token=ForgeToken.from_header(system),
        user_token=ForgeToken.from_header(user),
    )


def test_a_call_as_the_app_sends_the_system_token_to_api_base_url_only(api, caplog):
    caplog.set_level(logging.DEBUG)
    system = forge_oauth_token()
    api.user_tokens[system] = "app-account"
    client = ForgeClient.from_call(call_for(api.base_url, system=system))
    response = client.get("/rest/api/3/myself")
    assert response.status_code == 200 and response.json()["accountId"] == "app-account"
    assert api.seen[-1].path == f"/ex/jira/{CLOUD}/rest/api/3/myself"
    with pytest.raises(ForeignURL):
        client.get("https://evil.example/rest/api/3/myself")
    with pytest.raises(ForeignURL):
        client.get("/../../other/rest")
    assert system not in caplog.text and system not in repr(client) and system not in repr(tokens)


def test_as_the_user_with_the_user_token(api):
    user = forge_oauth_token()
    api.user_tokens[user] = "557058:u1"
    client = ForgeClient.from_call(call_for(api.base_url, user=user, account_id="557058:u1"), as_user=True)
    assert client.get("/rest/api/3/myself").json()["accountId"] == "557058:u1"
    with pytest.raises(ForgeTokenUnavailable):
        ForgeClient.from_call(call_for(api.base_url, user=user), as_user=True)  # no principal


def test_an_expired_token_is_never_sent(api):
    expired = forge_oauth_token(lifetime=10)  # within TOKEN_MARGIN of its exp
    client = ForgeClient.from_call(call_for(api.base_url, system=expired))
    with pytest.raises(ForgeTokenUnavailable):
        client.get("/rest/api/3/myself")
    assert api.seen == []


def test_an_older_token_never_replaces_a_newer_one(api):
    newer, older = forge_oauth_token(lifetime=7200), forge_oauth_token(lifetime=3600)
    api.user_tokens[newer] = "app-account"
    ForgeClient.from_call(call_for(api.base_url, system=newer))
    ForgeClient.from_call(call_for(api.base_url, system=older))  # a call that carried an older one
    assert tokens.get(INSTALLATION, client_module.SYSTEM).value == newer
    # A task processing a Forge event later uses the newest token this worker was given.
    installation = forge_services.observe(forge_services.FitSubject(INSTALLATION, CLOUD)).installation
    assert ForgeClient.for_installation(installation).get("/rest/api/3/myself").status_code == 200


def test_without_any_token_nothing_is_sent(api):
    installation = forge_services.observe(
        forge_services.FitSubject(INSTALLATION, CLOUD, api_base_url=api.base_url)
    ).installation
    with pytest.raises(ForgeTokenUnavailable):
        ForgeClient.for_installation(installation).get("/rest/api/3/myself")
    assert api.seen == []


def test_api_base_url_must_be_https_unless_loopback():
    with pytest.raises(ForeignURL):
        ForgeClient(INSTALLATION, "http://api.atlassian.com/ex/jira/x")
    assert ForgeClient(INSTALLATION, "https://api.atlassian.com/ex/jira/x/").api_base_url.endswith("/x")


def test_the_store_is_bounded():
    store = client_module.ForgeTokenStore()
    store.MAX_ENTRIES = 3
    for i in range(5):
        store.offer(f"i{i}", "system", ForgeToken("t", time.time() + 3600))
    assert store.get("i0", "system") is None and store.get("i4", "system") is not None


def test_a_token_with_a_far_exp_or_none_is_never_kept():
    store = client_module.ForgeTokenStore()
    now = time.time()
    store.offer("i", "system", ForgeToken("real", now + 3600), now=now)
    store.offer("i", "system", ForgeToken("planted", now + 10 * 365 * 86400), now=now)  # unverified exp
    store.offer("i", "system", ForgeToken("opaque", None), now=now)
    assert store.get("i", "system", now).value == "real"
    store.offer("i", "system", ForgeToken("newer", now + 7200), now=now)
    store.offer("i", "system", ForgeToken("older", now + 1800), now=now)
    assert store.get("i", "system", now).value == "newer"


def test_a_call_uses_its_own_token_first(api):
    own, newer = forge_oauth_token(lifetime=3600), forge_oauth_token(lifetime=7200)
    api.user_tokens[own] = "own"
    api.user_tokens[newer] = "newer"
    ForgeClient.from_call(call_for(api.base_url, system=newer))
    client = ForgeClient.from_call(call_for(api.base_url, system=own))
    assert client.get("/rest/api/3/myself").json()["accountId"] == "own"
