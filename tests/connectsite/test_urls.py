"""connectsite/urls.py: a path prefix in CONNECT_BASE_URL is served end to end (routes, qsh,
descriptor, doctor), below the prefix and, for a proxy that strips it, at the root."""

import json

import pytest

from connect_testkit import sign_tenant
from tests.conftest import TENANT_KEY, TENANT_SECRET

PREFIXED = "https://connect-app.example.test/jira-app"


@pytest.fixture
def prefixed(settings):
    settings.CONNECT = {**settings.CONNECT, "BASE_URL": PREFIXED}
    settings.ROOT_URLCONF = "tests.connectsite.prefixed_urls"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/jira-app/lifecycle/installed", "/lifecycle/installed"])
def test_a_signed_install_below_the_prefix_or_stripped_by_a_proxy_is_accepted(
    prefixed, lifecycle_call, make_body, path
):
    # Jira signs the URL it calls, relative to the baseUrl's path: POST&/lifecycle/installed&.
    response = lifecycle_call(
        path=path, url="/jira-app/lifecycle/installed", base_url=PREFIXED, audience=PREFIXED
    )
    assert response.status_code == 204, response.content


@pytest.mark.django_db
def test_a_webhook_below_the_prefix_is_accepted(prefixed, tenant, client):
    url = "/jira-app/webhooks/jira:issue_created?issueKey=ABC-1"
    token = sign_tenant(TENANT_SECRET, client_key=TENANT_KEY, method="POST", url=url, base_url=PREFIXED)
    response = client.post(
        url,
        data=json.dumps({"issue": {}}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"JWT {token}",
    )
    assert response.status_code == 204, response.content


def test_the_descriptor_is_served_below_the_prefix(prefixed, client):
    data = client.get("/jira-app/atlassian-connect.json").json()
    assert data["baseUrl"] == PREFIXED
    assert data["lifecycle"]["installed"] == "/lifecycle/installed"  # relative to baseUrl


def test_the_doctor_checks_routes_below_the_prefix(settings):
    from lifecycle import descriptor
    from lifecycle.doctor import check_descriptor

    settings.CONNECT = {**settings.CONNECT, "BASE_URL": PREFIXED}
    settings.ROOT_URLCONF = "tests.connectsite.prefixed_urls"
    assert not [f for f in check_descriptor(descriptor.render()) if "not routed" in f.problem]
    settings.ROOT_URLCONF = "tests.connectsite.root_urls"  # no routes below the prefix
    unrouted = [f.problem for f in check_descriptor(descriptor.render()) if "not routed" in f.problem]
    assert unrouted and all("is not routed by this server" in problem for problem in unrouted)


def test_no_prefix_adds_no_second_mount():
    from connectsite.urls import MOVED_ADMIN_PAGES, build

    moved = len(MOVED_ADMIN_PAGES)  # redirects from the audit pages' old admin URLs
    assert len(build("")) == len(build("/")) == moved + 2 and len(build("/jira-app/")) == moved + 3


@pytest.mark.django_db
def test_the_audit_pages_old_admin_urls_redirect_to_their_new_place(client):
    response = client.get("/admin/tenants/lifecycleevent/?q=t1&outcome=rejected")
    assert (response.status_code, response["Location"]) == (
        301,
        "/admin/audit/lifecycleevent/?q=t1&outcome=rejected",
    )
    response = client.get("/admin/lifecycle/failedverification/42/change/")
    assert (response.status_code, response["Location"]) == (301, "/admin/audit/failedverification/42/change/")
