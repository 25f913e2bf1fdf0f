"""lifecycle/verification.py through the real middleware: SPEC section 3 for installed/uninstalled.

Every bad input: the stated status and reason code, no tenant row created or changed, exactly
one audit row, and no request to a key server other than ``<configured server>/<valid kid>``.
"""

import base64
import json
import logging
import time

import jwt
import pytest
from django.core.cache import cache

from lifecycle.simulator import public_pem, sign_install
from tenants import services
from tenants.models import Installation, LifecycleEvent
from tests.conftest import KID

pytestmark = pytest.mark.django_db

VICTIM = "victim-client-key"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _unsigned(header: dict, claims: dict) -> str:
    return f"{_b64(header)}.{_b64(claims)}."


@pytest.fixture
def victim(make_body):
    """An installed tenant that forged requests try to take over."""
    services.install(make_body(clientKey=VICTIM, sharedSecret="the-victims-real-secret"))
    return VICTIM


def snapshot():
    rows = Installation.objects.order_by("pk").values()
    return [{**row, "shared_secret": getattr(row["shared_secret"], "ciphertext", None)} for row in rows]


def _claims(body, audience, url="/lifecycle/installed", **extra):
    now = int(time.time())
    from lifecycle.simulator import qsh_for

    return {
        "iss": body["clientKey"],
        "aud": audience,
        "qsh": qsh_for("POST", url),
        "iat": now,
        "exp": now + 180,
        **extra,
    }


AUD = "https://connect-app.example.test"

# (name, event, status, reason, how to send it). ``send`` gets (lifecycle_call, body, keys) and
# returns the response; the body's clientKey is the victim's, so a success would take it over.
CASES = [
    (
        "no token",
        "installed",
        401,
        "signed_install_required",
        lambda call, body, k: call(body=body, authorization=""),
    ),
    (
        "no token, uninstall",
        "uninstalled",
        401,
        "signed_install_required",
        lambda call, body, k: call("uninstalled", body=body, authorization=""),
    ),
    (
        "bearer scheme",
        "installed",
        401,
        "missing_token",
        lambda call, body, k: call(body=body, authorization="Bearer abc.def.ghi"),
    ),
    (
        "malformed token",
        "installed",
        401,
        "malformed_token",
        lambda call, body, k: call(body=body, token="not-a-jwt"),
    ),
    (
        "10 KB token",
        "installed",
        401,
        "malformed_token",
        lambda call, body, k: call(body=body, token="a" * 5000 + "." + "b" * 5000 + ".c"),
    ),
    (
        "alg none",
        "installed",
        401,
        "unsupported_algorithm",
        lambda call, body, k: call(
            body=body, token=_unsigned({"alg": "none", "kid": KID}, _claims(body, AUD))
        ),
    ),
    (
        "RS512",
        "installed",
        401,
        "unsupported_algorithm",
        lambda call, body, k: call(
            body=body, token=jwt.encode(_claims(body, AUD), k["rsa"], algorithm="RS512", headers={"kid": KID})
        ),
    ),
    (
        "HS256 with the body's own secret",
        "installed",
        401,
        "signed_install_required",
        lambda call, body, k: call(
            body=body, token=jwt.encode(_claims(body, AUD), body["sharedSecret"], algorithm="HS256")
        ),
    ),
    (
        "HS256 keyed with the CDN's public key",
        "installed",
        401,
        "signed_install_required",
        lambda call, body, k: call(body=body, token=_hs256_with_public_key(body, k["rsa"])),
    ),
    (
        "RS256 by another key",
        "installed",
        401,
        "bad_signature",
        lambda call, body, k: call(body=body, key=k["other"]),
    ),
    (
        "missing kid",
        "installed",
        401,
        "missing_kid",
        lambda call, body, k: call(
            body=body, token=jwt.encode(_claims(body, AUD), k["rsa"], algorithm="RS256")
        ),
    ),
    ("kid ..", "installed", 401, "invalid_kid", lambda call, body, k: call(body=body, kid="../" + KID)),
    (
        "kid //host",
        "installed",
        401,
        "invalid_kid",
        lambda call, body, k: call(body=body, kid="//evil.example.com/x"),
    ),
    ("kid leading /", "installed", 401, "invalid_kid", lambda call, body, k: call(body=body, kid="/" + KID)),
    ("kid ?", "installed", 401, "invalid_kid", lambda call, body, k: call(body=body, kid=KID + "?x=1")),
    ("kid #", "installed", 401, "invalid_kid", lambda call, body, k: call(body=body, kid=KID + "#frag")),
    (
        "kid unicode",
        "installed",
        401,
        "invalid_kid",
        lambda call, body, k: call(body=body, kid="ключ-" + KID),
    ),
    (
        "kid 2000 chars",
        "installed",
        401,
        "invalid_kid",
        lambda call, body, k: call(body=body, kid="a" * 2000),
    ),
    ("kid empty", "installed", 401, "invalid_kid", lambda call, body, k: call(body=body, kid="")),
    (
        "kid unknown to the key server",
        "installed",
        401,
        "unknown_kid",
        lambda call, body, k: call(body=body, kid="0000-unknown"),
    ),
    ("missing aud", "installed", 401, "missing_claim", lambda call, body, k: call(body=body, drop=["aud"])),
    (
        "foreign aud",
        "installed",
        401,
        "audience_mismatch",
        lambda call, body, k: call(body=body, audience="https://other-app.example.com"),
    ),
    (
        "iss differs from clientKey",
        "installed",
        401,
        "issuer_mismatch",
        lambda call, body, k: call(body=body, client_key="someone-else"),
    ),
    (
        "qsh of another path",
        "installed",
        401,
        "qsh_mismatch",
        lambda call, body, k: call(body=body, url="/lifecycle/uninstalled"),
    ),
    (
        "qsh of another method",
        "installed",
        401,
        "qsh_mismatch",
        lambda call, body, k: call(body=body, method="GET"),
    ),
    (
        "context-qsh",
        "installed",
        401,
        "context_qsh_not_allowed",
        lambda call, body, k: call(body=body, overrides={"qsh": "context-qsh"}),
    ),
    ("missing qsh", "installed", 401, "missing_claim", lambda call, body, k: call(body=body, drop=["qsh"])),
    ("missing exp", "installed", 401, "missing_claim", lambda call, body, k: call(body=body, drop=["exp"])),
    ("missing iat", "installed", 401, "missing_claim", lambda call, body, k: call(body=body, drop=["iat"])),
    (
        "expired past the leeway",
        "installed",
        401,
        "token_expired",
        lambda call, body, k: call(body=body, now=time.time() - 180 - 31),
    ),
    (
        "issued in the future past the leeway",
        "installed",
        401,
        "token_not_yet_valid",
        lambda call, body, k: call(body=body, now=time.time() + 31),
    ),
    (
        "ten-year lifetime",
        "installed",
        401,
        "token_lifetime_too_long",
        lambda call, body, k: call(body=body, lifetime=10 * 365 * 86400),
    ),
    (
        "malformed JSON",
        "installed",
        400,
        "malformed_body",
        lambda call, body, k: call(body=body, raw="{not json"),
    ),
    (
        "JSON array",
        "installed",
        400,
        "malformed_body",
        lambda call, body, k: call(body=body, raw=json.dumps([body])),
    ),
    (
        "clientKey not a string",
        "installed",
        400,
        "malformed_body",
        lambda call, body, k: call(body={**body, "clientKey": 42}, client_key=VICTIM),
    ),
    (
        "sharedSecret missing",
        "installed",
        400,
        "malformed_body",
        lambda call, body, k: call(body={k2: v for k2, v in body.items() if k2 != "sharedSecret"}),
    ),
    (
        "sharedSecret 401 bytes",
        "installed",
        400,
        "malformed_body",
        lambda call, body, k: call(body={**body, "sharedSecret": "s" * 401}),
    ),
    (
        "description not a string",
        "installed",
        400,
        "malformed_body",
        lambda call, body, k: call(body={**body, "description": {"x": 1}}),
    ),
    (
        "wrong content type",
        "installed",
        415,
        "unsupported_media_type",
        lambda call, body, k: call(body=body, content_type="text/plain"),
    ),
    (
        "oversize body",
        "installed",
        413,
        "body_too_large",
        lambda call, body, k: call(body={**body, "description": "d" * 70_000}),
    ),
    (
        "eventType mismatch",
        "installed",
        400,
        "event_type_mismatch",
        lambda call, body, k: call(body={**body, "eventType": "uninstalled"}),
    ),
    (
        "app key mismatch",
        "installed",
        400,
        "app_key_mismatch",
        lambda call, body, k: call(body={**body, "key": "another-app"}),
    ),
    (
        "non-Atlassian baseUrl",
        "installed",
        403,
        "tenant_host_not_allowed",
        lambda call, body, k: call(body={**body, "baseUrl": "https://evil.example.com"}),
    ),
    (
        "look-alike baseUrl",
        "installed",
        403,
        "tenant_host_not_allowed",
        lambda call, body, k: call(body={**body, "baseUrl": "https://evilatlassian.net"}),
    ),
    (
        "http baseUrl",
        "installed",
        403,
        "tenant_host_not_allowed",
        lambda call, body, k: call(body={**body, "baseUrl": "http://victim.atlassian.net"}),
    ),
    (
        "IP baseUrl",
        "installed",
        403,
        "tenant_host_not_allowed",
        lambda call, body, k: call(body={**body, "baseUrl": "https://10.0.0.1"}),
    ),
    (
        "userinfo baseUrl",
        "installed",
        403,
        "tenant_host_not_allowed",
        lambda call, body, k: call(body={**body, "baseUrl": "https://x@victim.atlassian.net"}),
    ),
]


def _hs256_with_public_key(body, rsa_key):
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": KID})
    payload = _b64(_claims(body, AUD))
    import hashlib
    import hmac

    signature = hmac.new(public_pem(rsa_key), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


@pytest.mark.parametrize(("name", "event", "status", "reason", "send"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_changes_nothing(
    name,
    event,
    status,
    reason,
    send,
    victim,
    lifecycle_call,
    make_body,
    key_server,
    rsa_key,
    other_rsa_key,
    caplog,
):
    caplog.set_level(logging.DEBUG)
    body = make_body(event, clientKey=victim, sharedSecret="attacker-secret-0123456789abcdef0123456789")
    if event != "installed":
        body.pop("sharedSecret")
    before = snapshot()
    events_before = LifecycleEvent.objects.count()

    response = send(lifecycle_call, body, {"rsa": rsa_key, "other": other_rsa_key})

    assert response.status_code == status, response.content
    payload = response.json()
    assert payload["error"] == reason
    assert payload["detail"] and len(payload["detail"]) < 700
    assert snapshot() == before
    assert Installation.objects.get(client_key=victim).reveal_shared_secret() == "the-victims-real-secret"
    assert LifecycleEvent.objects.count() == events_before + 1
    row = LifecycleEvent.objects.order_by("-id").first()
    assert (row.outcome, row.reason, row.event_type) == ("rejected", reason, event)
    # Only ever <configured server>/<valid kid> is asked.
    assert set(key_server.requests) <= {"/" + KID, "/0000-unknown"}
    if status == 401:
        assert response["WWW-Authenticate"] == 'JWT realm="django-connect-app"'
    for secret in ("attacker-secret-0123456789abcdef0123456789", "the-victims-real-secret"):
        assert secret not in response.content.decode()
        assert secret not in json.dumps(row.body) + row.detail
    # Nothing logged holds the token, a secret, the body or key material.
    logged = caplog.text
    assert reason in logged or status == 405
    for needle in (response.token, "attacker-secret", "the-victims-real-secret", "BEGIN PUBLIC KEY"):
        if needle:
            assert needle not in logged
    assert json.dumps(body) not in logged
    assert body["description"][:40] not in logged


def test_get_is_405_with_allow_header(client, victim):
    response = client.get("/lifecycle/installed")
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.json()["error"] == "method_not_allowed"
    assert LifecycleEvent.objects.filter(reason="method_not_allowed").count() == 1


def test_key_server_down_is_503_with_retry_after(lifecycle_call, key_server, victim):
    key_server.behaviour = "error"
    response = lifecycle_call(body=None)
    assert response.status_code == 503
    assert response.json()["error"] == "key_server_unavailable"
    assert int(response["Retry-After"]) > 0
    assert LifecycleEvent.objects.filter(reason="key_server_unavailable").count() == 1


def test_expiry_inside_the_leeway_is_accepted(lifecycle_call):
    response = lifecycle_call(now=time.time() - 180 - 20)
    assert response.status_code == 204


def test_audience_detail_names_expected_and_received(lifecycle_call):
    detail = lifecycle_call(audience="https://other-app.example.com").json()["detail"]
    assert "https://connect-app.example.test" in detail
    assert "https://other-app.example.com" in detail


def test_audience_may_be_a_list_and_trailing_slashes_are_trimmed(lifecycle_call):
    assert lifecycle_call(audience=["https://connect-app.example.test/"]).status_code == 204


def test_extra_audience_is_accepted(lifecycle_call, settings):
    settings.CONNECT = {**settings.CONNECT, "EXTRA_AUDIENCES": ["https://old-home.example.com"]}
    assert lifecycle_call(audience="https://old-home.example.com").status_code == 204


def test_qsh_detail_gives_the_canonical_request(lifecycle_call):
    detail = lifecycle_call(url="/lifecycle/uninstalled").json()["detail"]
    assert "POST&/installed&" in detail or "POST&/lifecycle/installed&" in detail


def test_signed_install_required_names_the_descriptor_fix(lifecycle_call):
    detail = lifecycle_call(authorization="").json()["detail"]
    assert '"apiMigrations": {"signed-install": true}' in detail
    assert "atlassian-connect.json" in detail


def test_unknown_kid_names_the_servers_asked(lifecycle_call, key_server):
    detail = lifecycle_call(kid="0000-unknown").json()["detail"]
    assert key_server.url in detail


def test_base_url_with_a_path_prefix(lifecycle_call, settings, make_body, client, rsa_key):
    settings.CONNECT = {**settings.CONNECT, "BASE_URL": "https://connect-app.example.test/jira-app"}
    body = make_body()
    token = sign_install(
        rsa_key,
        kid=KID,
        client_key=body["clientKey"],
        audience="https://connect-app.example.test/jira-app",
        url="/jira-app/lifecycle/installed",
        base_url="https://connect-app.example.test/jira-app",
    )
    response = client.post(
        "/lifecycle/installed",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"JWT {token}",
    )
    # Django here serves the app at the root, so the path the token signs (/lifecycle/installed
    # relative to the base path) matches what the server computes.
    assert response.status_code == 204, response.content


def test_same_token_with_a_swapped_secret_is_refused(lifecycle_call, client, make_body):
    body = make_body(sharedSecret="genuine-secret")
    first = lifecycle_call(body=body)
    assert first.status_code == 204
    forged = {**body, "sharedSecret": "attacker-secret"}
    replay = client.post(
        "/lifecycle/installed",
        data=json.dumps(forged),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"JWT {first.token}",
    )
    assert replay.status_code == 401
    assert replay.json()["error"] == "replay_body_mismatch"
    assert Installation.objects.get(client_key=body["clientKey"]).reveal_shared_secret() == "genuine-secret"


def test_same_token_and_body_again_is_idempotent(lifecycle_call, client, make_body):
    body = make_body()
    first = lifecycle_call(body=body)
    again = client.post(
        "/lifecycle/installed",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"JWT {first.token}",
    )
    assert (first.status_code, again.status_code) == (204, 204)
    assert Installation.objects.filter(client_key=body["clientKey"]).count() == 1


def test_replay_guard_lives_in_the_shared_cache(lifecycle_call, make_body):
    first = lifecycle_call(body=make_body())
    keys = [k for k in getattr(cache, "_cache", {}) if "connect:replay:" in k]
    assert first.status_code == 204
    assert len(keys) == 1
