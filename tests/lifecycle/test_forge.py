"""Forge remote calls end to end: POST /forge/events and a @forge_remote view, as Forge calls them.

FITs are signed by the test kit (RS256, a kid of the JWKS the loopback key server serves); the
JWKS is fetched over real HTTP. Each bad input of the issue is a test here: the answer, the audit
reason, nothing stored, and no token in any log line.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

import jwt
import pytest

from audit.models import LifecycleEvent
from connect_testkit import forge_event, forge_oauth_token, generate_rsa_key, sign_fit
from lifecycle.jwks import provider
from tenants import services
from tenants.models import ForgeInstallation, WebhookDelivery
from tenants.signals import forge_event_received
from tests.conftest import FORGE_KID

pytestmark = pytest.mark.django_db(transaction=False)

ISSUE = {"issue": {"id": "10001", "key": "ABC-1", "fields": {"summary": "private words"}}}


def post_event(client, token, body, **headers):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    extra = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    extra.update(headers)
    return client.post("/forge/events", data=raw, content_type="application/json", **extra)


@pytest.fixture
def received():
    seen = []

    def receiver(sender, forge_installation, installation, event, body, delivery, **kwargs):
        seen.append(
            (forge_installation.installation_id, event, body.get("issue", {}).get("key"), delivery.pk)
        )

    forge_event_received.connect(receiver, weak=False)
    yield seen
    forge_event_received.disconnect(receiver)


def test_an_event_is_verified_stored_once_and_processed_by_the_worker(client, forge, received, run_tasks):
    body = forge_event("avi:jira:created:issue", **ISSUE)
    response = post_event(client, forge.sign(), body)
    assert response.status_code == 204, response.content
    delivery = WebhookDelivery.objects.get()
    assert (delivery.installation_id, delivery.event, delivery.state) == (
        None,
        "avi:jira:created:issue",
        "pending",
    )
    installation = ForgeInstallation.objects.get()
    assert delivery.forge_installation == installation
    assert (
        installation.installation_id
        == "ari:cloud:ecosystem::installation/0a3a7799-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
    )
    assert installation.cloud_id == "c821c30c-a2ad-47d7-b742-9fed48cfd6b9"
    assert installation.tenant is None  # Forge only: no Connect install carried this id
    assert b"private words" not in delivery.body_sealed.encode()  # sealed at rest
    run_tasks()
    assert received == [(installation.installation_id, "avi:jira:created:issue", "ABC-1", delivery.pk)]
    delivery.refresh_from_db()
    assert delivery.state == "done"
    # The first sight of the installation is in its history; the event itself is its delivery row.
    row = LifecycleEvent.objects.get()
    assert (row.event_type, row.outcome, row.client_key) == (
        "forge:event",
        "accepted",
        installation.installation_id,
    )
    assert "first seen" in row.detail


@pytest.mark.parametrize("where", ["top level", "under payload"])
def test_a_redelivery_runs_the_work_once(client, forge, received, run_tasks, where):
    first = forge_event("avi:jira:created:issue", **ISSUE)
    retry_context = {"retryCount": 1, "retryReason": "TIMEOUT_ERROR", "retryData": None}
    if where == "top level":
        retry = {**first, "retryContext": retry_context}
    else:
        first = {"payload": first}
        retry = {"payload": {**first["payload"], "retryContext": retry_context}}
    assert post_event(client, forge.sign(), first).status_code == 204
    run_tasks()
    # Forge's retry: a fresh FIT, the same event with retryContext, 60 s later.
    again = post_event(client, forge.sign(), retry)
    assert again.status_code == 204
    run_tasks()
    assert WebhookDelivery.objects.count() == 1
    assert len(received) == 1
    ignored = LifecycleEvent.objects.get(outcome="ignored")
    assert ignored.reason == "forge_event_duplicate"


def test_a_retry_of_an_event_never_stored_is_stored(client, forge, received, run_tasks):
    """The first attempt timed out before it was recorded: its retry is the event."""
    body = forge_event("avi:jira:updated:issue", retry_count=2, **ISSUE)
    assert post_event(client, forge.sign(), body).status_code == 204
    run_tasks()
    assert len(received) == 1
    assert WebhookDelivery.objects.get().retry_count == 2


def test_two_identical_first_attempts_are_two_events(client, forge, received, run_tasks):
    """A scheduled trigger fires with the same body each time: no retryContext, so both run."""
    body = {"context": {"cloudId": "c821c30c-a2ad-47d7-b742-9fed48cfd6b9", "moduleKey": "hourly"}}
    assert post_event(client, forge.sign(module_key="hourly"), body).status_code == 204
    assert post_event(client, forge.sign(module_key="hourly"), body).status_code == 204
    run_tasks()
    assert [event for _, event, _, _ in received] == ["forge:hourly", "forge:hourly"]


def test_a_retry_after_the_window_is_a_new_event(client, forge, received, run_tasks, settings):
    body = forge_event("avi:jira:created:issue", **ISSUE)
    assert post_event(client, forge.sign(), body).status_code == 204
    WebhookDelivery.objects.update(received_at=WebhookDelivery.objects.get().received_at.replace(year=2020))
    retry = forge_event("avi:jira:created:issue", retry_count=1, **ISSUE)
    assert post_event(client, forge.sign(), retry).status_code == 204
    assert WebhookDelivery.objects.count() == 2


# --- Bad input: each answers as specified, stores nothing, logs no token ----------------------


def _hmac_token(claims, secret):
    """An HS256 token "signed" with ``secret`` by hand (PyJWT refuses a JWKS as an HMAC key)."""
    import base64
    import hashlib
    import hmac

    def part(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(json.dumps({"alg": "HS256", "typ": "JWT", "kid": FORGE_KID}).encode())
    body = part(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{part(signature)}"


def _without_kid(token):
    import base64

    head = base64.urlsafe_b64encode(json.dumps({"alg": "RS256", "typ": "JWT"}).encode()).rstrip(b"=").decode()
    return ".".join([head, *token.split(".")[1:]])


def _bad(forge, rsa_key):
    other_key = generate_rsa_key()
    now = int(time.time())
    made_up = "forge/invocation-token/wf-" + str(uuid.uuid4())
    other_app = "ari:cloud:ecosystem::app/00000000-0000-4000-8000-000000000000"
    return {
        "alg none": (
            jwt.encode({"iss": "forge/invocation-token", "aud": forge.app_id}, None, algorithm="none",
                       headers={"kid": FORGE_KID}),
            "forge_unsupported_algorithm",
        ),
        "HS256 with the JWKS as its secret": (
            _hmac_token({"iss": "forge/invocation-token", "aud": forge.app_id, "iat": now, "exp": now + 25},
                        forge.server.jwks_document()),
            "forge_unsupported_algorithm",
        ),
        "missing kid": (_without_kid(forge.sign()), "forge_missing_kid"),
        "unknown kid": (sign_fit(other_key, kid=made_up), "forge_unknown_kid"),
        "another key for a known kid": (sign_fit(other_key, kid=FORGE_KID), "forge_bad_signature"),
        "wrong iss": (forge.sign(overrides={"iss": "forge/context-token"}), "forge_issuer_mismatch"),
        "aud of another app": (
            forge.sign(app_id=other_app),
            "forge_audience_mismatch",
        ),
        "expired": (forge.sign(now=now - 600), "forge_token_expired"),
        "not yet valid": (forge.sign(now=now + 600), "forge_token_not_yet_valid"),
        "lifetime too long": (forge.sign(lifetime=86400), "forge_token_lifetime_too_long"),
        "app.id different from aud": (
            forge.sign(overrides={"app": {"id": other_app, "installationId": INSTALL_ARI}}),
            "forge_app_id_mismatch",
        ),
        "missing installationId": (
            forge.sign(overrides={"app": {"id": forge.app_id}}),
            "forge_missing_claim",
        ),
        "missing exp": (forge.sign(drop=["exp"]), "forge_missing_claim"),
        "not a JWT": ("not-a-jwt", "forge_malformed_token"),
    }  # fmt: skip


BAD_CASES = [
    "alg none",
    "HS256 with the JWKS as its secret",
    "missing kid",
    "unknown kid",
    "another key for a known kid",
    "wrong iss",
    "aud of another app",
    "expired",
    "not yet valid",
    "lifetime too long",
    "app.id different from aud",
    "missing installationId",
    "missing exp",
    "not a JWT",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_a_bad_token_is_an_opaque_401_with_its_reason_in_the_audit(client, forge, rsa_key, caplog, case):
    token, reason = _bad(forge, rsa_key)[case]
    caplog.set_level(logging.DEBUG)
    response = post_event(client, token, forge_event("avi:jira:created:issue", **ISSUE))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert response["WWW-Authenticate"].startswith("Bearer ")
    row = LifecycleEvent.objects.get()
    assert (row.event_type, row.outcome, row.reason) == ("forge:event", "rejected", reason)
    assert WebhookDelivery.objects.count() == 0
    assert ForgeInstallation.objects.count() == 0
    assert token not in caplog.text
    signature = token.split(".")[-1]
    assert not signature or signature not in caplog.text


def test_no_token_is_an_opaque_401(client, forge):
    response = post_event(client, None, forge_event("avi:jira:created:issue"))
    assert response.status_code == 401
    assert LifecycleEvent.objects.get().reason == "forge_token_missing"
    response = post_event(client, "x", forge_event("avi:jira:created:issue"), HTTP_AUTHORIZATION="JWT abc")
    assert response.status_code == 401


def test_a_body_over_the_cap_is_413_before_the_token(client, forge, settings):
    settings.CONNECT = {**settings.CONNECT, "FORGE_EVENT_MAX_BODY": 2048}
    body = forge_event("avi:jira:created:issue", filler="x" * 4096)
    response = post_event(client, forge.sign(), body)
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    assert WebhookDelivery.objects.count() == 0


def test_a_body_that_is_not_a_json_object_is_400(client, forge):
    response = post_event(client, forge.sign(), b"[1, 2]")
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_body"
    assert WebhookDelivery.objects.count() == 0


def test_the_forge_routes_are_off_without_forge_app_id(client, forge, settings):
    settings.CONNECT = {**settings.CONNECT, "FORGE_APP_ID": ""}
    response = post_event(client, forge.sign(), forge_event("avi:jira:created:issue"))
    assert response.status_code == 404
    assert response.json()["error"] == "forge_not_configured"
    assert forge.server.requests == []  # nothing fetched


# --- The JWKS misbehaving ----------------------------------------------------------------------


@pytest.mark.parametrize("behaviour", ["html", "not_found", "error", "oversize", "redirect", "slow_body"])
def test_a_jwks_that_misbehaves_without_a_cached_copy_is_503(client, forge, settings, behaviour):
    settings.CONNECT = {**settings.CONNECT, "FORGE_JWKS_FETCH_DEADLINE": 1.0}
    forge.server.behaviour = behaviour
    started = time.monotonic()
    response = post_event(client, forge.sign(), forge_event("avi:jira:created:issue"))
    assert time.monotonic() - started < 3
    assert response.status_code == 503
    assert response.json()["error"] == "forge_jwks_unavailable"
    assert response["Retry-After"]
    assert WebhookDelivery.objects.count() == 0


def test_a_cached_jwks_serves_while_the_url_fails_stale_if_error(client, forge, settings):
    assert post_event(client, forge.sign(), forge_event("avi:jira:created:issue", n=1)).status_code == 204
    # An hour later the JWKS URL answers 500: the old copy is still used (stale-if-error).
    from django.core.cache import cache

    from lifecycle.jwks import cache_key

    cached = cache.get(cache_key("document"))
    cached["fetched_at"] -= settings.CONNECT["FORGE_JWKS_TTL"] + 10
    cache.set(cache_key("document"), cached, None)
    provider.clear()
    forge.server.behaviour = "error"
    assert post_event(client, forge.sign(), forge_event("avi:jira:created:issue", n=2)).status_code == 204
    assert provider.fetch_count == 2  # tried once, then used the copy
    assert post_event(client, forge.sign(), forge_event("avi:jira:created:issue", n=3)).status_code == 204
    assert provider.fetch_count == 2  # and did not ask again at once


def test_a_flood_of_unknown_kids_refetches_the_jwks_once_per_interval(client, forge):
    assert post_event(client, forge.sign(), forge_event("avi:jira:created:issue")).status_code == 204
    fetched = len(forge.server.requests)
    for _ in range(25):
        kid = "forge/invocation-token/wf-" + str(uuid.uuid4())
        response = post_event(client, forge.sign(kid=kid), forge_event("avi:jira:created:issue"))
        assert response.status_code == 401
    assert len(forge.server.requests) - fetched == 1
    assert set(LifecycleEvent.objects.filter(outcome="rejected").values_list("reason", flat=True)) == {
        "forge_unknown_kid"
    }


def test_a_rotated_key_is_found_by_the_one_refetch(client, forge):
    assert post_event(client, forge.sign(), forge_event("avi:jira:created:issue", n=1)).status_code == 204
    new_key, new_kid = generate_rsa_key(), "forge/invocation-token/wf-" + str(uuid.uuid4())
    forge.server.publish_jwk(new_kid, new_key)
    response = post_event(
        client, forge.sign(key=new_key, kid=new_kid), forge_event("avi:jira:created:issue", n=2)
    )
    assert response.status_code == 204


# --- Installations: linking, reinstalls, lifecycle events --------------------------------------

INSTALL_UUID = "5f0a2c7e-8b1d-4c3e-9a6f-7d2e1b0c9a8f"
INSTALL_ARI = f"ari:cloud:ecosystem::installation/{INSTALL_UUID}"


@pytest.mark.parametrize("form", [INSTALL_ARI, INSTALL_UUID])
def test_a_fit_links_to_the_connect_tenant_whose_install_carried_its_installation_id(
    client, forge, make_body, form
):
    tenant = services.install(make_body(installationId=form)).installation
    response = post_event(
        client, forge.sign(installation_id=INSTALL_ARI), forge_event("avi:jira:created:issue")
    )
    assert response.status_code == 204
    assert ForgeInstallation.objects.get().tenant == tenant


def test_a_connect_install_after_the_first_fit_is_linked_on_the_next_call(client, forge, make_body):
    assert (
        post_event(client, forge.sign(installation_id=INSTALL_ARI), forge_event("e:one")).status_code == 204
    )
    assert ForgeInstallation.objects.get().tenant is None
    tenant = services.install(make_body(installationId=INSTALL_ARI)).installation
    assert (
        post_event(client, forge.sign(installation_id=INSTALL_ARI), forge_event("e:two")).status_code == 204
    )
    assert ForgeInstallation.objects.get().tenant == tenant
    assert (
        "linked to Connect tenant" in LifecycleEvent.objects.filter(event_type="forge:event").first().detail
    )


def test_a_reinstall_with_a_new_installation_id_is_the_same_record_and_audited(client, forge):
    first = "ari:cloud:ecosystem::installation/" + str(uuid.uuid4())
    second = "ari:cloud:ecosystem::installation/" + str(uuid.uuid4())
    assert post_event(client, forge.sign(installation_id=first), forge_event("e:one")).status_code == 204
    assert post_event(client, forge.sign(installation_id=second), forge_event("e:two")).status_code == 204
    row = ForgeInstallation.objects.get()
    assert (row.installation_id, row.previous_installation_ids) == (second, [first])
    assert WebhookDelivery.objects.filter(forge_installation=row).count() == 2
    audit = LifecycleEvent.objects.filter(detail__contains="changed from").get()
    assert first in audit.detail and second in audit.detail
    # Another environment of the app on the same site is another installation.
    third = "ari:cloud:ecosystem::installation/" + str(uuid.uuid4())
    token = forge.sign(installation_id=third, environment=str(uuid.uuid4()), environment_type="DEVELOPMENT")
    assert post_event(client, token, forge_event("e:three")).status_code == 204
    assert ForgeInstallation.objects.count() == 2


def test_forge_lifecycle_events_apply_in_order_of_their_fit(client, forge, run_tasks, received):
    installed = {
        "id": INSTALL_UUID,
        "app": {"id": "3a9e1b4c-0d2f-4e6a-8b7c-5d4e3f2a1b0c", "version": "2.0.0"},
    }
    now = int(time.time())
    late = forge.sign(installation_id=INSTALL_ARI, now=now)
    response = post_event(client, late, {**installed, "eventType": "avi:forge:upgraded:app"})
    assert response.status_code == 204
    row = ForgeInstallation.objects.get()
    assert (row.state, row.lifecycle_iat) == ("installed", now)
    # An older installed event arriving late changes nothing, and says so.
    version = row.app_version
    early = forge.sign(installation_id=INSTALL_ARI, now=now - 10, overrides={})
    claims = jwt.decode(early, options={"verify_signature": False})
    claims["app"]["appVersion"] = "0.9.0"
    early = forge.sign(installation_id=INSTALL_ARI, now=now - 10, overrides={"app": claims["app"]})
    assert post_event(client, early, {**installed, "eventType": "avi:forge:installed:app"}).status_code == 204
    row.refresh_from_db()
    assert (row.lifecycle_iat, row.app_version) == (now, version)
    assert "nothing changed" in LifecycleEvent.objects.order_by("-id").first().detail
    run_tasks()
    assert [event for _, event, _, _ in received] == ["avi:forge:upgraded:app", "avi:forge:installed:app"]


def test_an_uninstall_event_if_one_arrives_is_idempotent(client, forge):
    body = {"id": INSTALL_UUID, "eventType": "avi:forge:uninstalled:app"}
    assert post_event(client, forge.sign(installation_id=INSTALL_ARI), body).status_code == 204
    row = ForgeInstallation.objects.get()
    assert row.state == "uninstalled"
    again = forge.sign(installation_id=INSTALL_ARI, now=time.time() + 1)
    assert post_event(client, again, {**body, "n": 2}).status_code == 204
    row.refresh_from_db()
    assert row.state == "uninstalled"
    assert "already uninstalled" in LifecycleEvent.objects.order_by("-id").first().detail


# --- A view Forge calls with invokeRemote --------------------------------------------------------


@pytest.fixture
def forge_urls(settings):
    settings.ROOT_URLCONF = "tests.lifecycle.policy_urls"


def test_a_forge_remote_view_gets_request_forge(client, forge, forge_urls, caplog):
    caplog.set_level(logging.DEBUG)
    system, user = forge_oauth_token(), forge_oauth_token()
    token = forge.sign(ui=True, principal="557058:abc")
    response = client.post(
        "/forge/settings",
        HTTP_AUTHORIZATION=f"Bearer {token}",
        HTTP_X_FORGE_OAUTH_SYSTEM=system,
        HTTP_X_FORGE_OAUTH_USER=user,
    )
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["cloudId"] == "c821c30c-a2ad-47d7-b742-9fed48cfd6b9"
    assert data["siteUrl"] == "https://example.atlassian.net"
    assert data["accountId"] == "557058:abc"
    assert (data["systemToken"], data["userToken"]) == (True, True)
    for secret in (system, user, token):
        assert secret not in data["repr"]
        assert secret not in caplog.text
    row = LifecycleEvent.objects.filter(event_type="forge:settings").get()
    assert row.outcome == "accepted"
    assert system not in json.dumps(row.body or {})


def test_a_forge_remote_view_refuses_a_connect_jwt(client, forge, forge_urls, tenant):
    from connect_testkit import sign_tenant
    from tests.conftest import TENANT_KEY, TENANT_SECRET

    token = sign_tenant(TENANT_SECRET, client_key=TENANT_KEY, method="GET", url="/forge/settings")
    response = client.get("/forge/settings", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401
    assert LifecycleEvent.objects.get().reason == "forge_unsupported_algorithm"


def test_a_forge_remote_view_refuses_a_method_it_does_not_declare(client, forge, forge_urls):
    response = client.delete("/forge/settings", HTTP_AUTHORIZATION=f"Bearer {forge.sign()}")
    assert response.status_code == 405


# --- A captured FIT, replayed; a late FIT of a reinstalled installation ---------------------------


def test_a_captured_fit_cannot_carry_another_body(client, forge, received, run_tasks):
    token = forge.sign()
    first = forge_event("avi:jira:created:issue", **ISSUE)
    assert post_event(client, token, first).status_code == 204
    forged = forge_event("avi:jira:deleted:issue", **ISSUE)
    response = post_event(client, token, forged)
    assert (response.status_code, response.json()["error"]) == (401, "invalid_token")
    assert LifecycleEvent.objects.get(outcome="rejected").reason == "replay_body_mismatch"
    # The very same request again (a network duplicate): answered, stored once.
    assert post_event(client, token, first).status_code == 204
    run_tasks()
    assert WebhookDelivery.objects.count() == 1 and len(received) == 1


def test_a_captured_fit_cannot_bring_its_own_oauth_token(client, forge, forge_urls):
    token = forge.sign(ui=True)
    genuine, planted = forge_oauth_token(), forge_oauth_token(lifetime=14000)
    ok = client.get(
        "/forge/settings", HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_X_FORGE_OAUTH_SYSTEM=genuine
    )
    assert ok.status_code == 200
    replay = client.get(
        "/forge/settings", HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_X_FORGE_OAUTH_SYSTEM=planted
    )
    assert replay.status_code == 401
    other_route = client.post("/forge/settings", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert other_route.status_code == 401


def test_a_late_fit_of_the_replaced_installation_does_not_undo_the_reinstall(client, forge):
    old = "ari:cloud:ecosystem::installation/" + str(uuid.uuid4())
    new = "ari:cloud:ecosystem::installation/" + str(uuid.uuid4())
    for installation_id, n in ((old, 1), (new, 2), (old, 3), (new, 4)):  # Forge retries old events
        response = post_event(client, forge.sign(installation_id=installation_id), forge_event("e:x", n=n))
        assert response.status_code == 204
    row = ForgeInstallation.objects.get()
    assert (row.installation_id, row.previous_installation_ids) == (new, [old])
    assert LifecycleEvent.objects.filter(detail__contains="changed from").count() == 1
    assert WebhookDelivery.objects.filter(forge_installation=row).count() == 4


def test_a_ui_call_that_first_shows_an_installation_is_audited(client, forge, forge_urls):
    response = client.get("/forge/settings", HTTP_AUTHORIZATION=f"Bearer {forge.sign(ui=True)}")
    assert response.status_code == 200
    row = LifecycleEvent.objects.get(event_type="forge:settings")
    assert "first seen" in row.detail and row.client_key.startswith("ari:cloud:ecosystem::installation/")


def test_a_late_lifecycle_event_of_a_replaced_installation_id_is_not_applied(client, forge):
    old = "ari:cloud:ecosystem::installation/" + str(uuid.uuid4())
    new = "ari:cloud:ecosystem::installation/" + str(uuid.uuid4())
    assert post_event(client, forge.sign(installation_id=old), forge_event("e:1")).status_code == 204
    assert post_event(client, forge.sign(installation_id=new), forge_event("e:2")).status_code == 204
    late = {"id": old.rsplit("/", 1)[-1], "eventType": "avi:forge:uninstalled:app"}
    assert post_event(client, forge.sign(installation_id=old), late).status_code == 204
    row = ForgeInstallation.objects.get()
    assert (row.installation_id, row.state) == (new, "installed")
    assert "since replaced" in LifecycleEvent.objects.order_by("-id").first().detail


def test_a_first_sighting_is_audited_whatever_the_view_answers(client, forge, forge_urls):
    response = client.get("/forge/missing", HTTP_AUTHORIZATION=f"Bearer {forge.sign(ui=True)}")
    assert response.status_code == 404
    row = LifecycleEvent.objects.get(event_type="forge:missing")
    assert (row.outcome, row.reason) == ("rejected", "http_404")
    assert "first seen" in row.detail


def test_a_remote_body_too_large_for_memory_is_413_and_audited(client, forge, forge_urls, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    response = client.post(
        "/forge/settings",
        data=b"x" * 5000,
        content_type="application/octet-stream",
        HTTP_AUTHORIZATION=f"Bearer {forge.sign(ui=True)}",
    )
    assert (response.status_code, response.json()["error"]) == (413, "body_too_large")
    assert LifecycleEvent.objects.get(event_type="forge:settings").reason == "body_too_large"


def test_a_request_remote_view_takes_one_fit_for_several_requests(client, forge, forge_urls):
    token = forge.sign(ui=True)
    for body in (b"first", b"second, longer"):
        response = client.post(
            "/forge/direct", data=body, content_type="text/plain", HTTP_AUTHORIZATION=f"Bearer {token}"
        )
        assert (response.status_code, response.json()["size"]) == (200, len(body))


def test_with_the_cache_down_a_forge_call_is_503_saying_what_forge_retries(client, forge, settings):
    working = settings.CACHES
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:9/0"}}  # fmt: skip
    try:
        response = post_event(client, forge.sign(), forge_event("avi:jira:created:issue"))
    finally:
        settings.CACHES = working
    assert (response.status_code, response.json()["error"]) == (503, "cache_unavailable")
    assert "Forge retries events, not UI calls" in response.json()["detail"]
    assert response["Retry-After"]
    assert WebhookDelivery.objects.count() == 0
    assert LifecycleEvent.objects.get().reason == "cache_unavailable"
