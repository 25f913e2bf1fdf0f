"""lifecycle/admin.py: the install-key cache, fingerprints only, refresh and evict."""

import pytest

from lifecycle.models import InstallKey
from tests.conftest import KID

pytestmark = pytest.mark.django_db


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
