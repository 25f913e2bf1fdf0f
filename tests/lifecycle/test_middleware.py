"""lifecycle/middleware.py: errors to responses in one place, audit rows, failing closed."""

import json

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.db import OperationalError

from audit.models import LifecycleEvent
from lifecycle import errors
from lifecycle.middleware import error_response
from tenants import services
from tenants.models import Installation

MIDDLEWARE = "lifecycle.middleware.ConnectVerificationMiddleware"


@pytest.mark.parametrize("cls", errors.all_error_classes(), ids=errors.reason_of)
def test_every_reason_maps_to_its_status_and_headers(cls, settings):
    if cls is errors.TokenRejected:
        exc = cls(errors.BadSignature())
    elif cls is errors.MethodNotAllowed:
        exc = cls(allowed=("POST",))
    else:
        exc = cls()
    response = error_response(exc)
    assert response.status_code == cls.status_code
    assert json.loads(response.content) == {"error": cls.code, "detail": exc.detail}
    assert response["Cache-Control"] == "no-store"
    assert ("WWW-Authenticate" in response) == (cls.status_code == 401)
    assert ("Retry-After" in response) == (cls.status_code == 503)
    if cls.status_code == 401:  # a Forge Invocation Token is a bearer token (RFC 6750)
        scheme = "Bearer" if issubclass(cls, errors.ForgeTokenFailure) else "JWT"
        assert response["WWW-Authenticate"] == f'{scheme} realm="{settings.CONNECT["APP_KEY"]}"'


def test_reason_codes_are_unique_and_documented():
    codes = [errors.reason_of(cls) for cls in errors.all_error_classes()]
    assert len(codes) == len(set(codes))
    for cls in errors.all_error_classes():
        assert cls.explanation and cls.fix
    hidden = errors.TokenRejected(errors.UnknownTenant("no such tenant"))
    assert (hidden.code, hidden.audit_code, hidden.audit_detail) == (
        "invalid_token",
        "unknown_tenant",
        "no such tenant",
    )
    assert {"signed_install_required", "unknown_kid", "replay_body_mismatch"} <= set(errors.REASONS)
    assert '"apiMigrations": {"signed-install": true}' in errors.SignedInstallRequired().detail


@pytest.mark.django_db
def test_marked_view_without_the_middleware_fails_closed(client, settings, make_body):
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != MIDDLEWARE]
    with pytest.raises(ImproperlyConfigured, match="ConnectVerificationMiddleware"):
        client.post("/lifecycle/installed", data=json.dumps(make_body()), content_type="application/json")
    assert not Installation.objects.exists()


def test_missing_middleware_is_a_system_check_error(settings):
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != MIDDLEWARE]
    assert "lifecycle.E002" in [message.id for message in run_checks()]


@pytest.mark.django_db
def test_database_failure_in_the_view_is_503_and_audited(lifecycle_call, monkeypatch):
    def broken(body, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(services, "install", broken)
    response = lifecycle_call()
    assert response.status_code == 503
    assert response.json()["error"] == "database_unavailable"
    assert response["Retry-After"]
    assert LifecycleEvent.objects.get().reason == "database_unavailable"


@pytest.mark.django_db
def test_unexpected_view_error_is_a_500_and_still_audited(lifecycle_call, monkeypatch, client):
    def broken(body, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(services, "install", broken)
    client.raise_request_exception = False
    response = lifecycle_call()
    assert response.status_code == 500
    event = LifecycleEvent.objects.get()
    assert (event.outcome, event.reason) == ("rejected", "http_500")


@pytest.mark.django_db
def test_unmarked_views_are_not_touched(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert not LifecycleEvent.objects.exists()


@pytest.mark.django_db
def test_verified_claims_reach_the_view(lifecycle_call, make_body, monkeypatch):
    seen = {}
    original = services.install

    def spy(body, **kwargs):
        seen["body"] = body
        return original(body, **kwargs)

    monkeypatch.setattr(services, "install", spy)
    body = make_body()
    assert lifecycle_call(body=body).status_code == 204
    assert seen["body"]["clientKey"] == body["clientKey"]


@pytest.mark.django_db(transaction=True)
def test_a_refused_calls_change_rolls_back_and_its_audit_row_stays(lifecycle_call, make_body, monkeypatch):
    """The view's work and its refusal: the change is undone, the rejected row survives it."""
    original = services.install

    def installs_then_fails(body, **kwargs):
        original(body, **kwargs)  # the tenant row is written inside the request's transaction...
        raise services.StaleLifecycleEvent(body["clientKey"], 1, 2)  # ...then the call is refused

    monkeypatch.setattr(services, "install", installs_then_fails)
    response = lifecycle_call(body=make_body())
    assert (response.status_code, response.json()["error"]) == (401, "stale_lifecycle_token")
    assert not Installation.objects.exists()
    assert list(LifecycleEvent.objects.values_list("outcome", "reason")) == [
        ("rejected", "stale_lifecycle_token")
    ]


@pytest.mark.django_db(transaction=True)
def test_an_accepted_install_and_its_audit_row_commit_together(lifecycle_call, make_body, monkeypatch):
    from audit import records

    def broken_write(ctx, **kwargs):
        raise OperationalError("disk full")

    monkeypatch.setattr(records, "write", broken_write)
    response = lifecycle_call(body=make_body())
    assert response.status_code == 503
    assert not Installation.objects.exists()  # no install without its record
