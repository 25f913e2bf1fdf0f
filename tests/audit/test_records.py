"""audit/records.py: what a view tells the middleware, and the one writer of a request's row."""

import pytest
from django.http import HttpResponse

from audit.models import LifecycleEvent
from audit.records import ACCEPTED, RECORDED, AuditContext, Outcome, outcome_of, respond, write


def test_an_outcome_is_accepted_ignored_or_recorded():
    assert Outcome().status == "accepted" and RECORDED.status == "recorded"
    with pytest.raises(ValueError, match="accepted, ignored or recorded"):
        Outcome("rejected")  # refusals are raised as ConnectErrors, never returned


def test_a_view_says_what_it_did_through_its_response():
    said = respond(Outcome("ignored", reason="webhook_event_mismatch", detail="d"))
    assert said.status_code == 204 and outcome_of(said).reason == "webhook_event_mismatch"
    assert outcome_of(HttpResponse("plain")) is ACCEPTED


@pytest.mark.django_db
def test_unverified_refusals_fold_and_verified_rows_do_not():
    claimed = AuditContext(event="installed", client_key="claimed", remote_addr="203.0.113.9")
    for _ in range(3):
        write(claimed, outcome="rejected", reason="bad_signature")
    proven = AuditContext(event="enabled", client_key="t1", verified=True)
    for _ in range(2):
        write(proven, outcome="rejected", reason="tenant_suspended")
    rows = dict(LifecycleEvent.objects.values_list("client_key", "count"))
    assert rows == {"claimed": 3, "t1": 1}  # one folded row; two verified rows of count 1
    assert LifecycleEvent.objects.filter(client_key="t1").count() == 2
