"""lifecycle/decorators.py and framing.py: iframe pages and context calls, as a fork uses them."""

import json
import time

import pytest

from audit.models import LifecycleEvent
from connect_testkit import CONTEXT_QSH, sign_tenant
from lifecycle.framing import origin
from tenants import services
from tests.conftest import TENANT_KEY, TENANT_SECRET

PAGE = "/pages/panel?issueKey=ABC-1&xdm_e=https%3A%2F%2Fevil.example.com&cp=&lic=active&cv=1001.0.0"
ACCOUNT = "557058:page-user"


@pytest.fixture(autouse=True)
def page_urls(settings):
    settings.ROOT_URLCONF = "tests.lifecycle.page_urls"


def _token(url=PAGE, secret=TENANT_SECRET, client_key=TENANT_KEY, method="GET", **overrides):
    claims = {"sub": ACCOUNT, "context": {"jira": {"issue": {"key": "ABC-1"}}}, **overrides}
    return sign_tenant(secret, client_key=client_key, method=method, url=url, overrides=claims)


def _load(client, url=PAGE, **kwargs):
    return client.get(f"{url}&jwt={_token(url, **kwargs)}")


def test_a_page_load_is_verified_and_framable_only_by_the_tenants_sites(client, tenant):
    tenant.display_url = "https://jira.custom-domain.example.com"
    tenant.save()
    response = _load(client)
    assert response.status_code == 200
    assert response.content.decode() == f"{TENANT_KEY}|{ACCOUNT}|active|['jira']"
    assert "X-Frame-Options" not in response
    ancestors = response["Content-Security-Policy"]
    assert (
        ancestors
        == "frame-ancestors https://example-site.atlassian.net https://jira.custom-domain.example.com"
    )
    assert "evil.example.com" not in response.content.decode() + ancestors  # xdm_e is never reflected


def test_every_other_response_may_not_be_framed(client, tenant):
    response = client.get("/atlassian-connect.json")
    assert response["X-Frame-Options"] == "DENY"
    assert response["Content-Security-Policy"] == "frame-ancestors 'none'"


@pytest.mark.parametrize(
    ("name", "load", "reason"),
    [
        (
            "expired",
            lambda c: _load(c, iat=int(time.time()) - 600, exp=int(time.time()) - 400),
            "token_expired",
        ),
        ("no token", lambda c: c.get(PAGE), "jwt_parameter_missing"),
        (
            "replayed on another URL",
            lambda c: c.get(PAGE.replace("ABC-1", "ABC-2") + f"&jwt={_token()}"),
            "qsh_mismatch",
        ),
        ("a context token", lambda c: _load(c, qsh=CONTEXT_QSH), "context_qsh_not_allowed"),
        (
            "another tenant's secret",
            lambda c: _load(c, secret="someone-elses-secret-0123456789abcdef"),
            "bad_signature",
        ),
        (
            "header and parameter disagree",
            lambda c: c.get(f"{PAGE}&jwt={_token()}", HTTP_AUTHORIZATION=f"JWT {_token(url='/other')}"),
            "token_sources_disagree",
        ),
    ],
)
def test_a_bad_page_load_is_refused_with_a_page_jira_can_show(client, tenant, name, load, reason):
    response = load(client)
    assert response.status_code == 401 and response["Content-Type"].startswith("text/html")
    assert response["Content-Security-Policy"] == "frame-ancestors https://*.atlassian.net https://*.jira.com"
    assert "X-Frame-Options" not in response
    assert LifecycleEvent.objects.get().reason == reason
    # The page says why when the caller proved it holds a genuine token; else one opaque reason.
    shown = {"token_expired": "invalid_token", "bad_signature": "invalid_token"}.get(reason, reason)
    shown = {"jwt_parameter_missing": "missing_token"}.get(shown, shown)
    assert f"<code>{shown}</code>" in response.content.decode()


def test_a_page_token_posted_back_to_its_page_is_refused(client, tenant):
    response = client.post(f"{PAGE}&jwt={_token()}")
    assert (response.status_code, response["Allow"]) == (405, "GET")


def test_a_page_token_posted_to_another_route_is_refused_naming_the_request_it_was_issued_for(client, tenant):
    page_url = f"http://testserver{PAGE}&jwt={_token()}"
    response = client.post(f"/api/panel-save?jwt={_token()}", {"summary": "x"}, HTTP_REFERER=page_url)
    assert (response.status_code, response.json()["error"]) == (401, "qsh_mismatch")
    detail = response.json()["detail"]
    issued = "GET&/pages/panel&cp=&cv=1001.0.0&issueKey=ABC-1&lic=active&xdm_e=https%3A%2F%2Fevil.example.com"
    assert f"issued for '{issued}'" in detail and "not for 'POST&/api/panel-save&'" in detail
    assert "AP.context.getToken()" in detail
    assert LifecycleEvent.objects.get().reason == "qsh_mismatch"
    # Without the page in the Referer, the detail names the request the server computed.
    response = client.post(f"/api/panel-save?jwt={_token()}", {"summary": "x"})
    assert response.json()["error"] == "qsh_mismatch"
    assert "the server computed 'POST&/api/panel-save&'" in response.json()["detail"]
    # A Referer that is not the page the token was issued for changes nothing.
    response = client.post(
        f"/api/panel-save?jwt={_token()}", {"summary": "x"}, HTTP_REFERER="http://testserver/pages/other"
    )
    assert "issued for" not in response.json()["detail"]


def test_a_context_token_in_the_query_is_refused_so_that_no_url_carries_one(client, tenant):
    token = sign_tenant(
        TENANT_SECRET, client_key=TENANT_KEY, method="GET", url="/", overrides={"qsh": CONTEXT_QSH}
    )
    response = client.post(f"/api/panel-save?jwt={token}", {"summary": "from the page"})
    assert (response.status_code, response.json()["error"]) == (401, "jwt_parameter_not_accepted")
    assert "Authorization" in response.json()["detail"]
    accepted = client.post("/api/panel-save", {"summary": "from the page"}, HTTP_AUTHORIZATION=f"JWT {token}")
    assert (accepted.status_code, accepted.json()) == (200, {"saved": "from the page"})


def test_a_referer_no_parser_reads_changes_only_the_detail(client, tenant):
    response = client.post(f"/api/panel-save?jwt={_token()}", {"summary": "x"}, HTTP_REFERER="http://[bad/x")
    assert (response.status_code, response.json()["error"]) == (401, "qsh_mismatch")
    assert LifecycleEvent.objects.get().reason == "qsh_mismatch"


def test_a_page_token_carried_by_a_link_to_another_page_says_to_open_pages_through_jira(client, tenant):
    other = PAGE.replace("ABC-1", "ABC-2")
    response = client.get(f"{other}&jwt={_token()}", HTTP_REFERER=f"http://testserver{PAGE}&jwt={_token()}")
    assert response.status_code == 401
    page = response.content.decode()
    assert "<code>qsh_mismatch</code>" in page and "AP.navigator" in page and "context token" not in page


def test_a_page_token_signed_with_the_secret_before_a_reinstall_is_refused(client, tenant, make_body):
    stale = _token()
    services.install(
        make_body(clientKey=TENANT_KEY, sharedSecret="the-new-secret-after-reinstall-0123456789")
    )
    assert client.get(f"{PAGE}&jwt={stale}").status_code == 401
    assert LifecycleEvent.objects.filter(reason="bad_signature").count() == 1


def test_a_context_call_from_the_page_is_accepted_on_its_route_only(client, tenant, make_body):
    token = sign_tenant(
        TENANT_SECRET,
        client_key=TENANT_KEY,
        method="GET",
        url="/",
        overrides={"qsh": CONTEXT_QSH, "sub": ACCOUNT},
    )
    response = client.get("/api/panel-data", HTTP_AUTHORIZATION=f"JWT {token}")
    assert response.json() == {"accountId": ACCOUNT, "site": tenant.base_url}
    assert LifecycleEvent.objects.get().event_type == "panel-data"
    body = json.dumps(make_body("enabled", clientKey=TENANT_KEY))
    refused = client.post(
        "/lifecycle/enabled", body, content_type="application/json", HTTP_AUTHORIZATION=f"JWT {token}"
    )
    # A lifecycle route keeps one answer for every failure; the true reason is in the audit row.
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_token")
    assert LifecycleEvent.objects.filter(reason="context_qsh_not_allowed").count() == 1


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://X.atlassian.net/jira", "https://x.atlassian.net"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("https://a.example.com; script-src *", None),
        ("javascript:alert(1)", None),
        ("https://a b.example.com", None),
    ],
)
def test_only_clean_origins_reach_the_header(url, expected):
    assert origin(url) == expected


def test_two_tokens_on_a_context_route_or_two_on_a_page_are_refused(client, tenant):
    context = sign_tenant(
        TENANT_SECRET, client_key=TENANT_KEY, method="GET", url="/", overrides={"qsh": CONTEXT_QSH}
    )
    response = client.get(f"/api/panel-data?jwt={_token()}", HTTP_AUTHORIZATION=f"JWT {context}")
    assert response.status_code == 401
    assert client.get(f"{PAGE}&jwt={_token()}&jwt={_token(url='/x')}").status_code == 401
    assert list(LifecycleEvent.objects.values_list("reason", flat=True)) == ["token_sources_disagree"] * 2


def test_a_cacheable_shell_loads_without_a_token_and_holds_no_tenant(client, tenant):
    response = client.get("/pages/cached-panel?xdm_e=https%3A%2F%2Fevil.example.com")
    assert response.status_code == 200 and "evil" not in response.content.decode()
    assert "public" in response["Cache-Control"] and "max-age=3600" in response["Cache-Control"]
    assert response["Content-Security-Policy"] == "frame-ancestors https://*.atlassian.net https://*.jira.com"
    assert "X-Frame-Options" not in response
    assert client.post("/pages/cached-panel").status_code == 405
    assert not LifecycleEvent.objects.exists()  # nothing verified, nothing to audit
