"""lifecycle/dashboard.py and the admin index: a server-drawn 30-day chart and counts."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from lifecycle import dashboard
from tenants import services
from tenants.models import LifecycleEvent

pytestmark = pytest.mark.django_db


def _event(outcome, days_ago=0, reason="", event_type="installed"):
    event = LifecycleEvent.objects.record(
        event_type=event_type, outcome=outcome, reason=reason, client_key="c"
    )
    LifecycleEvent.objects.filter(pk=event.pk).update(created_at=timezone.now() - timedelta(days=days_ago))


def test_daily_counts_cover_thirty_days_oldest_first():
    _event("accepted", 0)
    _event("accepted", 0)
    _event("rejected", 0, "bad_signature")
    _event("rejected", 3, "qsh_mismatch")
    _event("accepted", 45)  # outside the window
    _event("rejected", 0, "invalid_token", event_type="webhook")  # not a lifecycle request
    series = dashboard.daily_counts(timezone.localdate())
    assert len(series) == 30
    assert series[-1][1:] == (2, 1)
    assert series[-4][1:] == (0, 1)
    assert sum(a for _, a, _ in series) == 2


def test_bars_scale_to_the_busiest_day():
    today = timezone.localdate()
    series = [(today - timedelta(days=1), 4, 0), (today, 1, 1)]
    bars, peak = dashboard.bars(series)
    assert peak == 4
    assert bars[0].accepted_h == pytest.approx(dashboard.HEIGHT - 2 * dashboard.PAD)
    assert bars[1].accepted_h == pytest.approx(bars[1].rejected_h)


def test_admin_index_shows_the_chart_and_24h_rejections(client, make_body):
    services.install(make_body(clientKey="t1"))
    _event("accepted")
    _event("rejected", 0, "signed_install_required")
    _event("rejected", 2, "qsh_mismatch")  # older than 24 hours
    client.force_login(User.objects.create_superuser("op", "op@example.com", "pw"))
    html = client.get("/admin/").content.decode()
    assert '<svg id="lifecycle-chart"' in html
    assert html.count('class="accepted"') == 30 and html.count('class="rejected"') == 30
    assert '<strong id="installed-tenants">1</strong>' in html
    assert "signed_install_required" in html and "qsh_mismatch" not in html.split('id="rejections-24h"')[1]
    assert "<script" not in html.split('id="connect-dashboard"')[1].split("</svg>")[0]
