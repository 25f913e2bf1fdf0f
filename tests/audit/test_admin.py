"""audit/admin.py: the audit history and failed verifications, each reason with its fix."""

import pytest

from audit.models import LifecycleEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def events():
    LifecycleEvent.objects.record(
        event_type="installed", outcome="accepted", client_key="good-tenant", key_id="k-1"
    )
    LifecycleEvent.objects.record(
        event_type="installed", outcome="rejected", client_key="bad-tenant", reason="signed_install_required"
    )


def test_failed_verifications_show_only_rejections_with_the_fix(client, operator, events):
    html = client.get("/admin/audit/failedverification/").content.decode()
    assert "bad-tenant" in html and "good-tenant" not in html
    assert "signed_install_required" in html
    assert "signed-install" in html  # the explanation and fix
    for name in ("event_type", "reason", "created_at"):
        assert name in html


def test_lifecycle_events_are_read_only_and_searchable(client, operator, events):
    html = client.get("/admin/audit/lifecycleevent/?q=good-tenant").content.decode()
    assert "good-tenant" in html and "bad-tenant" not in html
    event = LifecycleEvent.objects.get(client_key="bad-tenant")
    page = client.get(f"/admin/audit/lifecycleevent/{event.pk}/change/").content.decode()
    assert "What it means and the fix" in page
    assert "not signed by Atlassian with RS256" in page
    assert 'name="_save"' not in page  # view only
    assert client.post(f"/admin/audit/lifecycleevent/{event.pk}/delete/").status_code == 403
    assert client.get("/admin/audit/lifecycleevent/add/").status_code == 403


def test_failed_verifications_list_is_short_and_the_row_page_has_the_whole_fix(client, operator):
    from audit.admin import LIST_FIX_CHARS
    from lifecycle.errors import SignedInstallHeaderMissing

    LifecycleEvent.objects.record(
        event_type="installed",
        outcome="rejected",
        client_key="stripped-header-tenant",
        reason="authorization_header_missing",
        detail="The installed callback had no Authorization header.",
    )
    html = client.get("/admin/audit/failedverification/").content.decode()
    fix = SignedInstallHeaderMissing.fix
    assert len(fix) > LIST_FIX_CHARS
    assert f'title="{fix}"' in html  # whole on hover
    assert f">{fix}<" not in html  # cut in the cell
    assert html.index("stripped-header-tenant") < html.index(f'title="{fix}"')  # client key comes first
    event = LifecycleEvent.objects.get(client_key="stripped-header-tenant")
    page = client.get(f"/admin/audit/failedverification/{event.pk}/change/").content.decode()
    assert "WSGIPassAuthorization On" in page and "Manage apps" in page


def test_bad_signature_explains_a_fix_not_the_check(client, operator):
    from audit.admin import explain

    text = explain("bad_signature")
    assert "reinstall the app" in text and "CONNECT_KEY_SERVERS" in text
    assert "not signed by Atlassian (RS256) or with this tenant" not in text
