"""audit/dashboard.py and the admin index: a server-drawn 30-day chart and counts."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from audit import dashboard
from audit.models import LifecycleEvent
from tenants import services
from tests.conftest import TENANT_KEY

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


def test_admin_index_shows_the_chart_and_the_rejections_by_reason(client, make_body):
    services.install(make_body(clientKey="t1"))
    _event("accepted")
    _event("rejected", 0, "signed_install_required")
    _event("rejected", 2, "qsh_mismatch")  # within 30 days, not within 24 hours
    client.force_login(User.objects.create_superuser("op", "op@example.com", "pw"))
    html = client.get("/admin/").content.decode()
    assert '<svg id="lifecycle-chart"' in html
    assert html.count('class="accepted"') == 30 and html.count('class="rejected"') == 30
    assert '<strong id="installed-tenants">1</strong>' in html
    table = html.split('id="rejections"')[1].split("</table>")[0]
    assert "<code>signed_install_required</code></td><td>1</td><td>1</td>" in table
    assert "<code>qsh_mismatch</code></td><td>1</td><td>0</td>" in table
    assert "<script" not in html.split('id="connect-dashboard"')[1].split("</svg>")[0]


def _number(html: str, element_id: str) -> int:
    return int(html.split(f'id="{element_id}">')[1].split("<")[0])


def test_the_chart_total_and_the_reasons_table_agree_and_strays_are_counted_apart(
    client, lifecycle_call, tenant, tenant_call, make_body
):
    """Issue 11, items 13 and 14, with real requests as bots, forgers and Jira send them."""
    client.get("/lifecycle/installed")  # a browser or bot: not a Connect call
    client.post("/webhooks/jira:issue_created", data="{}", content_type="application/json")  # no token
    lifecycle_call(authorization="")  # a verification failure (no header, signed install on)
    lifecycle_call(audience="https://other-app.example.com")  # another app's token
    tenant_call("/lifecycle/enabled", make_body("enabled", clientKey=TENANT_KEY), secret="x" * 40)
    tenant_call("/webhooks/jira:issue_created", {}, secret="y" * 40)  # a forged webhook
    assert LifecycleEvent.objects.filter(outcome="rejected").count() == 6
    client.force_login(User.objects.create_superuser("op", "op@example.com", "pw"))
    html = client.get("/admin/").content.decode()
    table = html.split('id="rejections"')[1].split("</table>")[0]
    counts = [int(cell.split("</td>")[0]) for cell in table.split("</code></td><td>")[1:]]
    assert _number(html, "rejected-total") == sum(counts) == 3
    assert _number(html, "webhook-rejections") == 1
    assert _number(html, "not-connect-calls") == 2
    assert "method_not_allowed" not in table and "missing_token" not in table


def test_failed_verifications_can_be_filtered_by_kind(client, tenant_call, tenant):
    client.get("/lifecycle/installed")
    tenant_call("/webhooks/jira:issue_created", {}, secret="y" * 40)
    client.force_login(User.objects.create_superuser("op", "op@example.com", "pw"))
    strays = client.get("/admin/audit/failedverification/?kind=not_connect").content.decode()
    failures = client.get("/admin/audit/failedverification/?kind=verification").content.decode()
    assert "1 failed verification" in strays and "method_not_allowed" in strays
    assert "1 failed verification" in failures and "bad_signature" in failures


def test_the_dashboard_needs_the_view_permission_on_lifecycle_events(client):
    from django.contrib.auth.models import Permission

    _event("rejected", 0, "signed_install_required")
    staff = User.objects.create_user("staff", "s@example.com", "pw", is_staff=True)
    client.force_login(staff)
    html = client.get("/admin/").content.decode()
    assert 'id="connect-dashboard"' not in html and "signed_install_required" not in html
    staff.user_permissions.add(Permission.objects.get(codename="view_lifecycleevent"))
    staff = User.objects.get(pk=staff.pk)  # permissions are cached on the instance
    client.force_login(staff)
    assert 'id="connect-dashboard"' in client.get("/admin/").content.decode()


# --- Tallies: the dashboard never scans 30 days of rows (issue 12, item 2) ----------------------


def _at(moment, outcome="rejected", reason="bad_signature", event_type="installed", count=1):
    event = LifecycleEvent.objects.record(event_type=event_type, outcome=outcome, reason=reason)
    LifecycleEvent.objects.filter(pk=event.pk).update(created_at=moment, count=count)
    return event


def test_closed_quarter_hours_are_tallied_once_and_kept_when_their_rows_go():
    from audit.models import AuditTally

    now = timezone.now()
    old = _at(now - timedelta(days=3), count=5)  # a folded row standing for 5 requests
    _at(now - timedelta(days=3), outcome="accepted", reason="")
    _at(now - timedelta(days=2), reason="missing_token", event_type="webhook")  # not a Connect call
    first = dashboard.compute()
    assert first["rejected_total"] == 5 and first["accepted_total"] == 1 and first["not_connect_calls"] == 1
    tallied = AuditTally.objects.count()
    assert tallied == 3
    # The rows of closed quarter hours are never read again: pruned, they still count...
    LifecycleEvent.objects.filter(pk=old.pk).delete()
    again = dashboard.compute()
    assert (again["rejected_total"], again["rejections"][0]["count"]) == (5, 5)
    assert AuditTally.objects.count() == tallied  # ...and nothing was counted twice
    # ...while the last minutes are counted live.
    _at(timezone.now())
    assert dashboard.compute()["rejected_total"] == 6


def test_a_folded_row_still_growing_is_counted_live_until_its_quarter_hour_closes():
    from audit.models import AuditTally

    now = timezone.now()
    row = _at(now - timedelta(seconds=30), reason="qsh_mismatch")  # within AUDIT_FOLD_SECONDS
    assert dashboard.compute()["rejected_total"] == 1
    assert not AuditTally.objects.exists()
    LifecycleEvent.objects.filter(pk=row.pk).update(count=4)  # three more folded in
    assert dashboard.compute()["rejected_total"] == 4
    later = now + timedelta(minutes=30)
    assert dashboard.tally(later) == dashboard.closed_until(later)
    assert AuditTally.objects.get().requests == 4


def test_the_24_hour_column_is_exact_at_any_minute():
    now = timezone.now()
    _at(now - timedelta(hours=24, minutes=-2), reason="qsh_mismatch")  # 23 h 58 min ago
    _at(now - timedelta(hours=24, minutes=2), reason="qsh_mismatch")  # 24 h 2 min ago
    [row] = dashboard.compute()["rejections"]
    assert (row["reason"], row["count"], row["count_24h"]) == ("qsh_mismatch", 2, 1)


def test_tallying_twice_or_at_once_counts_each_request_once():
    from audit.models import AuditTally, AuditTallyMark

    now = timezone.now()
    for hours in (30, 50, 70):
        _at(now - timedelta(hours=hours))
    until = dashboard.tally(now)
    AuditTallyMark.objects.update(tallied_until=until - timedelta(days=3))  # a racing process's view
    dashboard.tally(now)
    assert sum(AuditTally.objects.values_list("requests", flat=True)) == 3


def test_days_follow_the_local_time_zone_even_at_a_quarter_hour_offset(settings):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    settings.TIME_ZONE = "Asia/Kathmandu"  # UTC+05:45
    zone = ZoneInfo("Asia/Kathmandu")
    with timezone.override(zone):
        today = timezone.localdate()
        midnight = datetime(today.year, today.month, today.day, tzinfo=zone) - timedelta(days=2)
        _at(midnight + timedelta(minutes=5), outcome="accepted", reason="")  # just after midnight
        _at(midnight - timedelta(minutes=5), outcome="accepted", reason="")  # just before
        series = dashboard.daily_counts(today)
    assert series[-3][1] == 1 and series[-4][1] == 1


def test_a_long_history_is_tallied_over_several_renders_within_a_time_budget(client, monkeypatch):
    now = timezone.now()
    for days in (2, 10, 20):
        _at(now - timedelta(days=days))
    monkeypatch.setattr(dashboard, "TALLY_BUDGET", 0.0)  # one day per render
    client.force_login(User.objects.create_superuser("op", "op@example.com", "pw"))
    notices = 0
    while 'id="dashboard-counting"' in (html := client.get("/admin/").content.decode()):
        notices += 1
        assert "Reload this page to go on" in html and 'id="lifecycle-chart"' not in html
        assert notices < 40
    assert notices == dashboard.DAYS  # 31 days, the last rendered with the chart
    assert _number(html, "rejected-total") == 3
