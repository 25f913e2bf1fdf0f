"""lifecycle/policy.py: the rules a view declares, and one verifier driven by them.

The shipped routes' policies are exercised by test_views and test_verification; here, policies no
shipped route uses yet show the verifier needs no new branch for them: a token in the ``jwt``
query parameter with an HTML refusal (an iframe page), and a context token (``context-qsh``).
"""

import pytest

from audit.models import LifecycleEvent
from connect_testkit import CONTEXT_QSH, sign_tenant
from lifecycle import policy
from lifecycle.errors import MalformedBody
from lifecycle.middleware import error_response
from lifecycle.policy import Body, Policy, Qsh, Render, Signature, Tenant, TokenSource
from tests.conftest import TENANT_KEY, TENANT_SECRET


@pytest.mark.parametrize(
    ("rules", "problem"),
    [
        ({"event": "Bad Name", "signature": Signature.SHARED_SECRET}, "event"),
        ({"event": "x", "signature": Signature.SHARED_SECRET, "methods": ("post",)}, "methods"),
        ({"event": "x", "signature": Signature.INSTALL_KEY, "tenant": Tenant.ANY}, "lifecycle bodies"),
        (
            {"event": "x", "signature": Signature.INSTALL_KEY, "body": Body.LIFECYCLE},
            "tenant=Tenant.ANY",
        ),
        ({"event": "x", "signature": Signature.SHARED_SECRET, "tenant": Tenant.ANY}, "installed tenant"),
        (
            {
                "event": "x",
                "signature": Signature.SHARED_SECRET,
                "body": Body.LIFECYCLE,
                "methods": ("GET", "POST"),
            },
            "methods=",
        ),
        (
            {
                "event": "x",
                "signature": Signature.SHARED_SECRET,
                "body": Body.WEBHOOK,
                "qsh": Qsh.CONTEXT_ALLOWED,
            },
            "context-qsh",
        ),
        (
            {
                "event": "x",
                "signature": Signature.INSTALL_KEY,
                "tenant": Tenant.ANY,
                "body": Body.LIFECYCLE,
                "ignore_unverified": True,
            },
            "shared-secret",
        ),
    ],
)
def test_a_policy_the_protocol_forbids_is_refused_when_declared(rules, problem):
    with pytest.raises(ValueError, match=problem):
        Policy(**rules)


def test_the_routes_jira_calls_have_the_documented_policies():
    assert (policy.INSTALLED.signature, policy.INSTALLED.tenant) == (Signature.INSTALL_KEY, Tenant.ANY)
    assert policy.ENABLED.signature is Signature.SHARED_SECRET and not policy.ENABLED.ignore_unverified
    assert policy.DISABLED.ignore_unverified
    assert (policy.WEBHOOK.body, policy.WEBHOOK.atomic) == (Body.WEBHOOK, False)
    for route in (policy.INSTALLED, policy.UNINSTALLED, policy.ENABLED, policy.DISABLED, policy.WEBHOOK):
        assert (route.qsh, route.token, route.errors, route.methods) == (
            Qsh.REQUEST,
            TokenSource.AUTHORIZATION,
            Render.JSON,
            ("POST",),
        )


def test_an_html_refusal_carries_the_code_and_fix_escaped():
    response = error_response(MalformedBody("<script>alert(1)</script>"), Render.HTML)
    page = response.content.decode()
    assert response["Content-Type"].startswith("text/html") and response.status_code == 400
    assert "<code>malformed_body</code>" in page and MalformedBody.fix in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.fixture
def policy_urls(settings):
    settings.ROOT_URLCONF = "tests.lifecycle.policy_urls"


def _page_token(url, **overrides):
    return sign_tenant(TENANT_SECRET, client_key=TENANT_KEY, method="GET", url=url, overrides=overrides)


def test_an_iframe_page_verifies_the_jwt_query_parameter(client, tenant, policy_urls):
    url = "/pages/panel?issueKey=ABC-1&xdm_e=https%3A%2F%2Fx.atlassian.net"
    response = client.get(f"{url}&jwt={_page_token(url)}")
    assert (response.status_code, response.content) == (200, f"<p>hello {TENANT_KEY}</p>".encode())
    row = LifecycleEvent.objects.get()
    assert (row.event_type, row.outcome, row.client_key, row.verified) == (
        "page",
        "accepted",
        TENANT_KEY,
        True,
    )


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "jwt_parameter_missing"),
        ("&jwt=not.a.jwt", "malformed_token"),
        ("&jwt={other}", "qsh_mismatch"),  # signed for another page
        ("&jwt={context}", "context_qsh_not_allowed"),  # a context token cannot load a page
    ],
)
def test_a_refused_page_load_gets_an_html_page_with_the_reason(client, tenant, policy_urls, query, reason):
    url = "/pages/panel?issueKey=ABC-1"
    query = query.format(other=_page_token("/pages/other"), context=_page_token(url, qsh=CONTEXT_QSH))
    response = client.get(url + query)
    assert response.status_code == 401 and response["Content-Type"].startswith("text/html")
    assert response["WWW-Authenticate"].startswith("JWT realm=")
    page = response.content.decode()
    assert "<code>" in page and "Fix:" in page and "WSGIPassAuthorization" not in page  # a page's fix
    assert LifecycleEvent.objects.get().reason == reason


def test_a_context_token_is_accepted_only_where_the_policy_allows_it(
    client, tenant, tenant_call, policy_urls
):
    response = tenant_call("/api/context", method="GET", raw="", overrides={"qsh": CONTEXT_QSH})
    assert response.status_code == 200 and response.json() == {"clientKey": TENANT_KEY, "qsh": "context-qsh"}
    bound = tenant_call("/api/context", method="GET", raw="")  # a request-bound token is fine too
    assert bound.status_code == 200
    webhook = tenant_call("/webhooks/jira:issue_created", {}, overrides={"qsh": CONTEXT_QSH})
    assert webhook.status_code == 401
    assert LifecycleEvent.objects.filter(reason="context_qsh_not_allowed").count() == 1


def test_a_page_whose_template_fails_is_recorded_as_failed_not_accepted(client, tenant, policy_urls):
    client.raise_request_exception = False
    url = "/pages/broken"
    response = client.get(f"{url}?jwt={_page_token(url)}")
    assert response.status_code == 500
    assert list(LifecycleEvent.objects.values_list("outcome", "reason")) == [("rejected", "http_500")]


def test_a_webhook_policy_on_a_route_without_an_event_name_is_a_configuration_error(rf, tenant):
    from django.core.exceptions import ImproperlyConfigured
    from django.urls import ResolverMatch

    from audit.records import AuditContext
    from lifecycle.verification import verify

    request = rf.post("/hooks", data="{}", content_type="application/json")
    request.resolver_match = ResolverMatch(lambda r: None, (), {}, route="hooks")
    with pytest.raises(ImproperlyConfigured, match="<event>"):
        verify(request, policy.WEBHOOK, AuditContext(event="webhook"))


def test_page_and_context_views_hold_no_transaction_while_they_wait_on_jira():
    # On SQLite a transaction holds the write lock: a page calling Jira would stall every webhook.
    from lifecycle import policy

    assert policy.page("page:x").atomic is False
    assert policy.context("context:x").atomic is False
    assert policy.ENABLED.atomic is True  # lifecycle changes commit with their audit row
