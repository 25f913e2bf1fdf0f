"""lifecycle/admin.py: audit history, failed verifications with explanations, key cache actions."""

import pytest
from django.contrib.auth.models import User

from lifecycle.models import InstallKey
from tenants.models import LifecycleEvent
from tests.conftest import KID

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client):
    client.force_login(User.objects.create_superuser("operator", "op@example.com", "pw"))


@pytest.fixture
def events():
    LifecycleEvent.objects.record(
        event_type="installed", outcome="accepted", client_key="good-tenant", key_id="k-1"
    )
    LifecycleEvent.objects.record(
        event_type="installed", outcome="rejected", client_key="bad-tenant", reason="signed_install_required"
    )


def test_failed_verifications_show_only_rejections_with_the_fix(client, operator, events):
    html = client.get("/admin/lifecycle/failedverification/").content.decode()
    assert "bad-tenant" in html and "good-tenant" not in html
    assert "signed_install_required" in html
    assert "signed-install" in html  # the explanation and fix
    for name in ("event_type", "reason", "created_at"):
        assert name in html


def test_lifecycle_events_are_read_only_and_searchable(client, operator, events):
    html = client.get("/admin/tenants/lifecycleevent/?q=good-tenant").content.decode()
    assert "good-tenant" in html and "bad-tenant" not in html
    event = LifecycleEvent.objects.get(client_key="bad-tenant")
    page = client.get(f"/admin/tenants/lifecycleevent/{event.pk}/change/").content.decode()
    assert "What it means and the fix" in page
    assert "not signed by Atlassian with RS256" in page
    assert 'name="_save"' not in page  # view only
    assert client.post(f"/admin/tenants/lifecycleevent/{event.pk}/delete/").status_code == 403
    assert client.get("/admin/tenants/lifecycleevent/add/").status_code == 403


def test_key_cache_lists_fingerprints_and_never_the_pem(client, operator, key_server):
    from lifecycle.keys import prefetch_keys

    [row] = prefetch_keys([KID])
    html = client.get("/admin/lifecycle/installkey/").content.decode()
    assert KID in html and row.fingerprint[:16] in html
    page = client.get(f"/admin/lifecycle/installkey/{row.pk}/change/").content.decode()
    assert "BEGIN PUBLIC KEY" not in html + page
    assert row.pem.splitlines()[1] not in html + page


def test_key_cache_refresh_and_evict_actions(client, operator, key_server):
    from lifecycle.keys import prefetch_keys

    [row] = prefetch_keys([KID])
    response = client.post(
        "/admin/lifecycle/installkey/",
        {"action": "refresh_selected", "_selected_action": [row.pk]},
        follow=True,
    )
    assert "Refreshed 1 (changed 0), removed 0, failed 0." in response.content.decode()
    assert key_server.requests == ["/" + KID, "/" + KID]
    response = client.post(
        "/admin/lifecycle/installkey/",
        {"action": "evict_selected", "_selected_action": [row.pk]},
        follow=True,
    )
    assert "Evicted 1 key(s)." in response.content.decode()
    assert not InstallKey.objects.exists()


def test_failed_verifications_list_is_short_and_the_row_page_has_the_whole_fix(client, operator):
    from lifecycle.admin import LIST_FIX_CHARS
    from lifecycle.errors import SignedInstallHeaderMissing

    LifecycleEvent.objects.record(
        event_type="installed",
        outcome="rejected",
        client_key="stripped-header-tenant",
        reason="authorization_header_missing",
        detail="The installed callback had no Authorization header.",
    )
    html = client.get("/admin/lifecycle/failedverification/").content.decode()
    fix = SignedInstallHeaderMissing.fix
    assert len(fix) > LIST_FIX_CHARS
    assert f'title="{fix}"' in html  # whole on hover
    assert f">{fix}<" not in html  # cut in the cell
    assert html.index("stripped-header-tenant") < html.index(f'title="{fix}"')  # client key comes first
    event = LifecycleEvent.objects.get(client_key="stripped-header-tenant")
    page = client.get(f"/admin/lifecycle/failedverification/{event.pk}/change/").content.decode()
    assert "WSGIPassAuthorization On" in page and "Manage apps" in page


def test_bad_signature_explains_a_fix_not_the_check(client, operator):
    from lifecycle.admin import explain

    text = explain("bad_signature")
    assert "reinstall the app" in text and "CONNECT_KEY_SERVERS" in text
    assert "not signed by Atlassian (RS256) or with this tenant" not in text
