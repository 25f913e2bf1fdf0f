"""lifecycle/verification.py through the real middleware: SPEC section 3 for installed/uninstalled.

Every bad input: the stated status and reason code, no tenant row created or changed, exactly
one audit row, and no request to a key server other than ``<configured server>/<valid kid>``.
"""

import base64
import json
import logging
import time
import uuid

import jwt
import pytest
from django.core.cache import cache

from audit.models import LifecycleEvent
from connect_testkit import public_pem, sign_install
from tenants import services
from tenants.models import Installation
from tests.conftest import KID, redis_up

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
    from connect_testkit import qsh_for

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
        lambda call, body, k: call(body=body, now=time.time() - 180 - 35),
    ),
    (
        "issued in the future past the leeway",
        "installed",
        401,
        "token_not_yet_valid",
        lambda call, body, k: call(body=body, now=time.time() + 35),
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
        "backslash in the host",
        "installed",
        403,
        "tenant_host_not_allowed",
        lambda call, body, k: call(body={**body, "baseUrl": "https://evil.example\\.atlassian.net"}),
    ),
    (
        "semicolon in the host",
        "installed",
        403,
        "tenant_host_not_allowed",
        lambda call, body, k: call(body={**body, "baseUrl": "https://evil.com;.atlassian.net"}),
    ),
    (
        "escaped slash in the host",
        "installed",
        403,
        "tenant_host_not_allowed",
        lambda call, body, k: call(body={**body, "baseUrl": "https://evil.com%2f.atlassian.net"}),
    ),
    (
        "trailing dot host",
        "installed",
        403,
        "tenant_host_not_allowed",
        lambda call, body, k: call(body={**body, "baseUrl": "https://victim.atlassian.net."}),
    ),
    (
        "odd port",
        "installed",
        403,
        "tenant_host_not_allowed",
        lambda call, body, k: call(body={**body, "baseUrl": "https://victim.atlassian.net:8443"}),
    ),
    (
        "NaN in the body",
        "installed",
        400,
        "malformed_body",
        lambda call, body, k: call(body=body, raw=json.dumps(body)[:-1] + ', "x": NaN}'),
    ),
    (
        "deeply nested body",
        "installed",
        400,
        "malformed_body",
        lambda call, body, k: call(
            body=body, raw=json.dumps(body)[:-1] + ', "x": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}"
        ),
    ),
    (
        "60000 brackets",
        "installed",
        400,
        "malformed_body",
        lambda call, body, k: call(body=body, raw="[" * 60000),
    ),
    (
        "unpaired surrogate",
        "installed",
        400,
        "malformed_body",
        lambda call, body, k: call(body={**body, "productType": "\ud800"}),
    ),
    (
        "NUL in clientKey",
        "installed",
        400,
        "malformed_body",
        lambda call, body, k: call(body={**body, "clientKey": "a\x00b"}, client_key="a"),
    ),
    (
        "userinfo baseUrl",
        "installed",
        403,
        "tenant_host_not_allowed",
        lambda call, body, k: call(body={**body, "baseUrl": "https://x@victim.atlassian.net"}),
    ),
]


# Where the audit row names a more precise cause than the answer's code (the descriptor served
# here has signed install on, so an unsigned or HS256 call means a stripped header or a stale one).
AUDIT_REASONS = {
    "no token": "authorization_header_missing",
    "no token, uninstall": "authorization_header_missing",
    "HS256 with the body's own secret": "hs256_lifecycle_token",
    "HS256 keyed with the CDN's public key": "hs256_lifecycle_token",
}


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
    assert (row.outcome, row.reason, row.event_type) == ("rejected", AUDIT_REASONS.get(name, reason), event)
    # Only ever <configured server>/<valid kid> is asked.
    assert set(key_server.requests) <= {"/" + KID, "/0000-unknown"}
    if status == 401:
        assert response["WWW-Authenticate"] == 'JWT realm="django-connect-app"'
    for secret in ("attacker-secret-0123456789abcdef0123456789", "the-victims-real-secret"):
        assert secret not in response.content.decode()
        assert secret not in json.dumps(row.body) + row.detail
    # Nothing logged holds the token, a secret, the body or key material.
    logged = caplog.text
    assert AUDIT_REASONS.get(name, reason) in logged or status == 405
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


@pytest.fixture
def descriptor_without_signed_install(settings, tmp_path):
    from lifecycle.descriptor import load_template

    template = load_template()
    template.pop("apiMigrations")
    path = tmp_path / "atlassian-connect.json"
    path.write_text(json.dumps(template), encoding="utf-8")
    settings.CONNECT = {**settings.CONNECT, "DESCRIPTOR_PATH": path}


@pytest.mark.parametrize("event", ["installed", "uninstalled"])
def test_no_header_without_signed_install_in_the_descriptor_names_the_descriptor_fix(
    lifecycle_call, descriptor_without_signed_install, event
):
    response = lifecycle_call(event, authorization="")
    assert response.json()["error"] == "signed_install_required"
    detail = response.json()["detail"]
    assert '"apiMigrations": {"signed-install": true}' in detail
    assert "atlassian-connect.json" in detail
    assert LifecycleEvent.objects.get().reason == "signed_install_required"


@pytest.mark.parametrize("event", ["installed", "uninstalled"])
def test_no_header_while_signed_install_is_on_names_the_likely_causes_in_order(lifecycle_call, event):
    response = lifecycle_call(event, authorization="")
    assert (response.status_code, response.json()["error"]) == (401, "signed_install_required")
    detail = response.json()["detail"]
    causes = ["WSGIPassAuthorization On", "older descriptor", "Manage apps", "did not come from Jira"]
    positions = [detail.index(cause) for cause in causes]
    assert positions == sorted(positions)
    assert "add" not in detail.lower().split("apimigrations")[0][-20:]  # never "add signed-install"
    assert '"apiMigrations"' not in detail
    row = LifecycleEvent.objects.get()
    assert (row.reason, row.detail) == ("authorization_header_missing", detail)


def test_hs256_install_while_signed_install_is_on_says_stale_descriptor_or_forged(lifecycle_call, make_body):
    body = make_body()
    token = jwt.encode(_claims(body, AUD), body["sharedSecret"], algorithm="HS256")
    response = lifecycle_call(body=body, token=token)
    assert (response.status_code, response.json()["error"]) == (401, "signed_install_required")
    detail = response.json()["detail"]
    assert "older descriptor" in detail and "forged" in detail
    assert '"apiMigrations"' not in detail
    assert LifecycleEvent.objects.get().reason == "hs256_lifecycle_token"


def test_hs256_install_without_signed_install_in_the_descriptor_names_the_descriptor_fix(
    lifecycle_call, make_body, descriptor_without_signed_install
):
    body = make_body()
    token = jwt.encode(_claims(body, AUD), body["sharedSecret"], algorithm="HS256")
    detail = lifecycle_call(body=body, token=token).json()["detail"]
    assert '"apiMigrations": {"signed-install": true}' in detail


def test_unknown_kid_names_the_servers_asked(lifecycle_call, key_server):
    detail = lifecycle_call(kid="0000-unknown").json()["detail"]
    assert key_server.url in detail


@pytest.mark.parametrize("answer", ["forbidden", "html"])
def test_a_bad_answer_about_one_kid_never_blocks_a_genuine_install(
    lifecycle_call, key_server, rsa_key, other_rsa_key, answer
):
    """Issue 10, item 1: a 403 (or a 200 text/html) about a bogus kid; a genuine install at once."""
    key_server.kid_behaviours["bogus-1"] = answer
    key_server.publish("prod/new-kid-1", rsa_key)
    forged = lifecycle_call(kid="bogus-1", key=other_rsa_key)
    expected = (401, "unknown_kid") if answer == "forbidden" else (503, "key_server_unavailable")
    assert (forged.status_code, forged.json()["error"]) == expected
    genuine = lifecycle_call(kid="prod/new-kid-1")
    assert genuine.status_code == 204
    assert key_server.requests == ["/bogus-1", "/prod/new-kid-1"]
    assert Installation.objects.filter(client_key=genuine.sent_body["clientKey"]).exists()


def test_an_install_refused_while_the_key_server_failed_is_accepted_on_retry(lifecycle_call, key_server):
    key_server.behaviour = "error"
    first = lifecycle_call()
    assert first.status_code == 503
    key_server.behaviour = "normal"
    retry = lifecycle_call(body=first.sent_body)
    assert retry.status_code == 204
    assert len(key_server.requests) == 2


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


@pytest.mark.skipif(not redis_up(), reason="needs Redis on 127.0.0.1:6379 (.ci/run starts it)")
def test_replay_guard_on_redis_takes_one_command_and_still_refuses_another_body(
    lifecycle_call, client, make_body, settings
):
    """With the project's Redis backend the guard is one SET NX GET; its verdicts are unchanged."""
    from django.core.cache import cache as default_cache

    settings.CACHES = {
        "default": {
            "BACKEND": "connectsite.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/14",
            "KEY_PREFIX": "replay-" + uuid.uuid4().hex,
        }
    }
    commands: list[tuple] = []
    redis_client = default_cache._cache.get_client(write=True)
    real = redis_client.execute_command

    def counted(*args, **kwargs):
        commands.append(args[:1])
        return real(*args, **kwargs)

    redis_client.execute_command = counted
    body = make_body()
    first = lifecycle_call(body=body)
    replay_commands = len(commands)
    again = client.post(
        "/lifecycle/installed",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"JWT {first.token}",
    )
    other = client.post(
        "/lifecycle/installed",
        data=json.dumps({**body, "baseUrl": "https://elsewhere.atlassian.net"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"JWT {first.token}",
    )
    assert (first.status_code, again.status_code, other.status_code) == (204, 204, 401)
    assert other.json()["error"] == "replay_body_mismatch"
    assert commands[replay_commands:] == [("SET",), ("SET",)]  # add_then_get was SET, GET each


# --- Tenant-signed calls (HS256): webhooks, enabled, disabled -------------------------------

from tests.conftest import TENANT_KEY, TENANT_SECRET  # noqa: E402

HOOK = "/webhooks/jira:issue_created?issueKey=ABC-1"
ISSUE = {
    "webhookEvent": "jira:issue_created",
    "issue": {"key": "ABC-1", "fields": {"summary": "private words"}},
}


def _other_tenant(make_body):
    services.install(make_body(clientKey="other-tenant", sharedSecret="other-tenant-secret-0123456789abcdef"))


HS_CASES = [
    # (name, status, response code, audit reason, send)
    (
        "missing token",
        401,
        "missing_token",
        "missing_token",
        lambda call, mb: call(HOOK, ISSUE, authorization=""),
    ),
    (
        "wrong scheme",
        401,
        "missing_token",
        "missing_token",
        lambda call, mb: call(HOOK, ISSUE, authorization="Bearer x.y.z"),
    ),
    (
        "alg none",
        401,
        "unsupported_algorithm",
        "unsupported_algorithm",
        lambda call, mb: call(HOOK, ISSUE, token=_unsigned({"alg": "none"}, {"iss": TENANT_KEY})),
    ),
    (
        "unknown tenant",
        401,
        "invalid_token",
        "unknown_tenant",
        lambda call, mb: call(HOOK, ISSUE, client_key="nobody-at-all"),
    ),
    (
        "another tenant's secret",
        401,
        "invalid_token",
        "bad_signature",
        lambda call, mb: (
            _other_tenant(mb),
            call(HOOK, ISSUE, secret="other-tenant-secret-0123456789abcdef"),
        )[1],
    ),
    (
        "qsh of another URL",
        401,
        "invalid_token",
        "qsh_mismatch",
        lambda call, mb: call(HOOK, ISSUE, url="/webhooks/jira:issue_created?issueKey=ABC-2"),
    ),
    (
        "qsh of another method",
        401,
        "invalid_token",
        "qsh_mismatch",
        lambda call, mb: call(
            HOOK,
            ISSUE,
            method="POST",
            **{"overrides": {"qsh": __import__("connect_testkit").qsh_for("GET", HOOK)}},
        ),
    ),
    ("missing qsh", 401, "invalid_token", "missing_claim", lambda call, mb: call(HOOK, ISSUE, drop=["qsh"])),
    (
        "context-qsh",
        401,
        "invalid_token",
        "context_qsh_not_allowed",
        lambda call, mb: call(HOOK, ISSUE, overrides={"qsh": "context-qsh"}),
    ),
    (
        "expired",
        401,
        "invalid_token",
        "token_expired",
        lambda call, mb: call(HOOK, ISSUE, now=time.time() - 600),
    ),
    (
        "ten-year lifetime",
        401,
        "invalid_token",
        "token_lifetime_too_long",
        lambda call, mb: call(HOOK, ISSUE, lifetime=10 * 365 * 86400),
    ),
    (
        "unpaired surrogate iss",
        401,
        "invalid_token",
        "missing_claim",
        lambda call, mb: call(
            HOOK,
            ISSUE,
            token=jwt.encode({"iss": "\ud800", "qsh": "x", "iat": 1, "exp": 2}, "k" * 32, algorithm="HS256"),
        ),
    ),
    ("malformed JSON", 400, "malformed_body", "malformed_body", lambda call, mb: call(HOOK, raw="{nope")),
    ("JSON array", 400, "malformed_body", "malformed_body", lambda call, mb: call(HOOK, raw="[1, 2]")),
    (
        "oversize body",
        413,
        "body_too_large",
        "body_too_large",
        lambda call, mb: call(HOOK, {"blob": "x" * (5 * 1024 * 1024 + 10)}),
    ),
    (
        # 1.3 MB that would cost a worker over 20 MB as Python objects (issue 12, item 7).
        "more JSON values than CONNECT_WEBHOOK_MAX_JSON_VALUES",
        413,
        "body_too_large",
        "body_too_large",
        lambda call, mb: call(HOOK, {"items": [{}] * 260_000}),
    ),
    (
        "GET",
        405,
        "method_not_allowed",
        "method_not_allowed",
        lambda call, mb: call(HOOK, ISSUE, method="GET"),
    ),
]


@pytest.mark.parametrize(("name", "status", "code", "audit", "send"), HS_CASES, ids=[c[0] for c in HS_CASES])
def test_bad_webhook_is_refused_and_changes_nothing(
    name, status, code, audit, send, tenant, tenant_call, make_body, caplog
):
    from tenants.models import WebhookDelivery

    caplog.set_level(logging.DEBUG)
    before = snapshot()
    response = send(tenant_call, make_body)
    assert response.status_code == status, response.content
    assert response.json()["error"] == code
    if code == "invalid_token":
        # The same body for every opaque failure: the reason goes to the audit only.
        assert response.json()["detail"] == "The JWT could not be verified for this tenant. " + (
            "The app's operators can see the reason under Failed verifications in Django admin."
        )
    row = LifecycleEvent.objects.order_by("-id").first()
    assert (row.outcome, row.reason, row.event_type) == ("rejected", audit, "webhook")
    assert LifecycleEvent.objects.filter(outcome="rejected").count() == 1
    assert not WebhookDelivery.objects.exists()
    assert [r for r in snapshot() if r["client_key"] == TENANT_KEY] == [
        r for r in before if r["client_key"] == TENANT_KEY
    ]
    logged = caplog.text
    for needle in (response.token, TENANT_SECRET, "private words"):
        if needle:
            assert needle not in logged


def test_rs256_token_on_a_webhook_url_is_refused(tenant, tenant_call, rsa_key):
    token = sign_install(rsa_key, kid=KID, client_key=TENANT_KEY, audience=AUD, url=HOOK)
    response = tenant_call(HOOK, ISSUE, token=token)
    assert (response.status_code, response.json()["error"]) == (401, "unsupported_algorithm")


def test_old_secret_of_an_uninstalled_tenant_is_refused(tenant, tenant_call):
    services.uninstall(TENANT_KEY)
    response = tenant_call(HOOK, ISSUE)
    assert (response.status_code, response.json()["error"]) == (401, "invalid_token")
    assert LifecycleEvent.objects.get(outcome="rejected").reason == "tenant_uninstalled"


def test_undecryptable_secret_is_503_not_a_silent_pass(tenant, tenant_call, settings):
    settings.TENANTS = {**settings.TENANTS, "SECRET_KEYS": ["Zk3Q5lH9sV0yJ2bX8mN4cR6tW1aD7fG3hK5pL9oU2iE="]}
    response = tenant_call(HOOK, ISSUE)
    assert (response.status_code, response.json()["error"]) == (503, "tenant_secret_unavailable")


def test_query_strings_are_canonicalized_like_atlassian(tenant, tenant_call):
    """qsh computed by hand from SPEC 1.5, independent of the server's own canonicalizer."""
    import hashlib

    url = "/webhooks/jira:issue_created?b=2&a=1&a=0&sp=a+b&plus=%2B&star=*&tilde=~&u=%C3%BC&empty=&jwt=zzz"
    canonical = (
        "POST&/webhooks/jira:issue_created&a=0,1&b=2&empty=&plus=%2B&sp=a%20b&star=%2A&tilde=~&u=%C3%BC"
    )
    qsh = hashlib.sha256(canonical.encode()).hexdigest()
    now = int(time.time())
    token = jwt.encode(
        {"iss": TENANT_KEY, "qsh": qsh, "iat": now, "exp": now + 60}, TENANT_SECRET, algorithm="HS256"
    )
    assert tenant_call(url, ISSUE, token=token).status_code == 204


def test_enabled_and_disabled_change_the_tenant(tenant, tenant_call, make_body):
    services.disable(TENANT_KEY)
    assert tenant_call("/lifecycle/enabled", make_body("enabled", clientKey=TENANT_KEY)).status_code == 204
    assert Installation.objects.get(client_key=TENANT_KEY).enabled is True
    assert tenant_call("/lifecycle/disabled", make_body("disabled", clientKey=TENANT_KEY)).status_code == 204
    assert Installation.objects.get(client_key=TENANT_KEY).enabled is False
    assert list(LifecycleEvent.objects.values_list("event_type", "outcome")) == [
        ("disabled", "accepted"),
        ("enabled", "accepted"),
    ]


def test_enabled_body_for_another_tenant_is_refused(tenant, tenant_call, make_body):
    response = tenant_call("/lifecycle/enabled", make_body("enabled", clientKey="someone-else"))
    assert (response.status_code, response.json()["error"]) == (401, "invalid_token")
    assert LifecycleEvent.objects.get().reason == "issuer_mismatch"


OTHER_SECRET = "other-tenant-shared-secret-0123456789abcdef0123"


def _snapshot():
    return [
        (row.client_key, row.state, row.enabled, row.shared_secret, row.updated_at)
        for row in Installation.objects.order_by("client_key")
    ]


@pytest.mark.parametrize("state", ["no row", "uninstalled", "installed", "installed, disabled"])
@pytest.mark.parametrize(
    "authorization", ["", "JWT not-a-token", "Bearer abc", "wrong-secret", "another tenant's token"]
)
def test_an_unverified_disabled_is_204_ignored_whatever_the_tenant_state(
    tenant, tenant_call, make_body, state, authorization
):
    """Issue 10, item 3: one answer, so an anonymous caller cannot tell which tenants exist."""
    if state == "no row":
        Installation.objects.all().delete()  # e.g. the admin action "forget"
    elif state == "uninstalled":
        services.uninstall(TENANT_KEY)
    elif state == "installed, disabled":
        services.disable(TENANT_KEY)
    before = _snapshot()
    extra = {"secret": "not-the-tenant-secret-0123456789abcdef"} if authorization == "wrong-secret" else {}
    if authorization == "another tenant's token":  # valid for its own tenant, sent with the victim's body
        services.install(make_body(clientKey="other-tenant", sharedSecret=OTHER_SECRET))
        extra = {"secret": OTHER_SECRET, "client_key": "other-tenant"}
        before = _snapshot()
    response = tenant_call(
        "/lifecycle/disabled",
        make_body("disabled", clientKey=TENANT_KEY),
        authorization=None if extra else authorization,
        **extra,
    )
    assert response.status_code == 204
    assert response.content == b""
    assert _snapshot() == before
    event = LifecycleEvent.objects.filter(event_type="disabled").latest("id")
    assert dict(response.headers) == _ignored_disabled_headers(tenant_call, make_body)
    assert event.outcome == "ignored"
    expected = {
        "": "missing_token",
        "JWT not-a-token": "malformed_token",
        "Bearer abc": "missing_token",
        "another tenant's token": "issuer_mismatch",
        "wrong-secret": {"no row": "unknown_tenant", "uninstalled": "tenant_uninstalled"}.get(
            state, "bad_signature"
        ),
    }[authorization]
    assert event.reason == expected
    assert "nothing changed" in event.detail


def _ignored_disabled_headers(tenant_call, make_body):
    """The headers of a token-less disabled for a client key that never existed."""
    response = tenant_call(
        "/lifecycle/disabled", make_body("disabled", clientKey="never-installed"), authorization=""
    )
    assert response.status_code == 204
    return dict(response.headers)


def test_a_verified_disabled_still_disables(tenant, tenant_call, make_body):
    response = tenant_call("/lifecycle/disabled", make_body("disabled", clientKey=TENANT_KEY))
    assert response.status_code == 204
    assert Installation.objects.get().enabled is False
    assert LifecycleEvent.objects.get().outcome == "accepted"


def test_disabled_or_enabled_after_uninstalled_never_revives(tenant, tenant_call, make_body):
    disabled_token_body = make_body("disabled", clientKey=TENANT_KEY)
    enabled_body = make_body("enabled", clientKey=TENANT_KEY)
    services.uninstall(TENANT_KEY)
    assert tenant_call("/lifecycle/disabled", disabled_token_body).status_code == 204
    assert tenant_call("/lifecycle/enabled", enabled_body).status_code == 401
    row = Installation.objects.get()
    assert (row.state, row.enabled, row.shared_secret) == ("uninstalled", False, None)


def test_webhook_bad_inputs_log_nothing_secret(tenant, tenant_call, caplog):
    caplog.set_level(logging.DEBUG)
    response = tenant_call(HOOK, ISSUE, headers={"X-Atlassian-Webhook-Identifier": "id-1"})
    assert response.status_code == 204
    for needle in (response.token, TENANT_SECRET, "private words"):
        assert needle not in caplog.text


def test_suspended_tenant_gets_403_but_atlassian_lifecycle_is_honoured(
    tenant, tenant_call, lifecycle_call, make_body
):
    services.set_suspended(TENANT_KEY, True, actor="operator")
    hook = tenant_call(HOOK, ISSUE)
    assert (hook.status_code, hook.json()["error"]) == (403, "tenant_suspended")
    enabled = tenant_call("/lifecycle/enabled", make_body("enabled", clientKey=TENANT_KEY))
    assert enabled.status_code == 403
    assert LifecycleEvent.objects.filter(reason="tenant_suspended").count() == 2
    # A forged call to a suspended tenant still gets the opaque answer, never "suspended".
    assert (
        tenant_call(HOOK, ISSUE, secret="not-the-secret-0123456789abcdef0123").json()["error"]
        == "invalid_token"
    )
    # Atlassian's signed lifecycle calls are still honoured.
    body = make_body(clientKey=TENANT_KEY, sharedSecret="rotated-secret-0123456789abcdef")
    assert lifecycle_call(body=body).status_code == 204
    assert (
        Installation.objects.get(client_key=TENANT_KEY).reveal_shared_secret()
        == "rotated-secret-0123456789abcdef"
    )
    assert Installation.objects.get(client_key=TENANT_KEY).suspended is True


def test_odd_content_length_and_retry_headers_are_not_500s(tenant, tenant_call, lifecycle_call, make_body):
    hook = tenant_call(
        HOOK, ISSUE, headers={"X-Atlassian-Webhook-Retry": "\u00b2", "Content-Length": "\u00b2"}
    )
    assert hook.status_code in {204, 400}
    huge = tenant_call(HOOK, ISSUE, headers={"X-Atlassian-Webhook-Retry": "9" * 5000})
    assert huge.status_code == 204


def test_enabled_racing_an_uninstall_is_ignored_not_500(tenant, tenant_call, make_body, monkeypatch):
    real = services.enable

    def uninstall_first(client_key):
        services.uninstall(client_key)
        return real(client_key)

    monkeypatch.setattr(services, "enable", uninstall_first)
    response = tenant_call("/lifecycle/enabled", make_body("enabled", clientKey=TENANT_KEY))
    assert response.status_code == 204
    assert LifecycleEvent.objects.get(event_type="enabled").outcome == "ignored"


def test_a_flood_of_random_kids_gets_a_fast_503_with_retry_after(
    lifecycle_call, key_server, settings, other_rsa_key
):
    settings.CONNECT = {**settings.CONNECT, "KEY_FETCH_RATE_PER_SOURCE": "2/m"}
    key_server.behaviour = "not_found"
    statuses = [lifecycle_call(kid=f"flood-{i}", key=other_rsa_key).status_code for i in range(4)]
    assert statuses == [401, 401, 503, 503]
    limited = lifecycle_call(kid="flood-9", key=other_rsa_key)
    assert limited.json()["error"] == "key_fetch_rate_limited"
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert len(key_server.requests) == 2
    [folded] = LifecycleEvent.objects.filter(reason="key_fetch_rate_limited")  # unverified: one row
    assert folded.count == 3


# --- No work in proportion to an anonymous request's body (issue 12, item 7) -------------------


@pytest.fixture
def parses(monkeypatch):
    """Each parse of a request body (``parse_json_object``) appends 1."""
    from lifecycle import verification

    calls = []
    real = verification.parse_json_object
    monkeypatch.setattr(
        verification, "parse_json_object", lambda *a, **kw: (calls.append(1), real(*a, **kw))[1]
    )
    return calls


@pytest.fixture
def walks(monkeypatch):
    """Each walk of a parsed body (``check_json_text``) appends 1."""
    from lifecycle import verification

    calls = []
    real = verification.check_json_text
    monkeypatch.setattr(
        verification, "check_json_text", lambda *a, **kw: (calls.append(1), real(*a, **kw))[1]
    )
    return calls


def test_json_values_bound_counts_commas_and_opening_brackets():
    from lifecycle.verification import json_values_bound

    assert json_values_bound(b"{}") == 2
    assert json_values_bound(b'{"a": [1, 2, {"b": []}]}') == 7  # never below the true count (6)
    assert json_values_bound(b'{"a": "x,y"}') == 3  # punctuation in strings loosens it


def test_the_body_value_cap_is_checked_before_parsing(walks):
    from lifecycle.errors import BodyTooLarge
    from lifecycle.verification import parse_json_object

    raw = b'{"items": [' + b",".join([b"[]"] * 5000) + b"]}"
    with pytest.raises(BodyTooLarge, match="up to 10002 JSON values"):
        parse_json_object(raw, max_values=10_000)
    assert walks == []  # refused before json.loads (whose result would have been walked)
    assert len(parse_json_object(raw, max_values=10_002)["items"]) == 5000


@pytest.mark.parametrize(
    ("raw", "refused"),
    [
        (b'{"a": "\\u0000"}', True),  # a NUL, escaped
        (b'{"\\u0000": 1}', True),  # in a key
        (b'{"a": ["\\ud800"]}', True),  # a lone surrogate
        (b'{"a": "\\ud83d\\ude00 \\u00e9"}', False),  # a pair, and an accent: clean
        (b'{"a": "\\\\u0000"}', False),  # a backslash, then the text u0000: clean
        (b"[" * 32 + b"]" * 32, True),  # not an object (the depth is allowed)
        (b'{"a":' * 32 + b"1" + b"}" * 32, True),  # 33 levels: deeper than allowed
        (b'{"a":' * 31 + b"1" + b"}" * 31, False),  # 32 levels, more brackets than the fast path skips
    ],
)
def test_body_text_is_checked_whether_or_not_it_has_escapes(raw, refused):
    from lifecycle.errors import MalformedBody
    from lifecycle.verification import parse_json_object

    if refused:
        with pytest.raises(MalformedBody):
            parse_json_object(raw)
    else:
        assert isinstance(parse_json_object(raw), dict)


def test_a_body_without_escapes_and_few_brackets_is_not_walked(walks):
    from lifecycle import verification

    assert verification.parse_json_object(b'{"a": {"b": ["x", "y"]}}') == {"a": {"b": ["x", "y"]}}
    assert walks == []  # no \\u escape and 3 brackets: nothing to walk
    verification.parse_json_object(b'{"a": "\\u00e9"}')
    assert walks == [1]


@pytest.mark.parametrize(("depth", "refused"), [(31, False), (32, False), (33, True)])
def test_bodies_nested_deeper_than_32_levels_are_refused(depth, refused):
    from lifecycle.errors import MalformedBody
    from lifecycle.verification import check_json_text

    body: object = 1  # a scalar at ``depth``, inside depth - 1 objects
    for _ in range(depth - 1):
        body = {"a": body}
    if refused:
        with pytest.raises(MalformedBody, match="deeper than 32"):
            check_json_text(body)
    else:
        check_json_text(body)
    empty: object = {}  # an empty object at ``depth``
    for _ in range(depth - 1):
        empty = [empty]
    if refused:
        with pytest.raises(MalformedBody):
            check_json_text(empty)
    else:
        check_json_text(empty)


def test_checking_a_body_takes_memory_in_proportion_to_its_depth_not_its_size():
    import tracemalloc

    from lifecycle.verification import check_json_text

    body = {"items": [{"k": ["v", {}]} for _ in range(100_000)]}
    tracemalloc.start()
    try:
        check_json_text(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024, peak  # a list of pending items would take megabytes


def _big_body(make_body, event="installed"):
    return {**make_body(event), "padding": ["x" * 100] * 600}  # about 64 KB


def test_a_large_anonymous_lifecycle_body_is_never_parsed(client, make_body, parses, key_server):
    raw = json.dumps(_big_body(make_body))
    assert 60_000 < len(raw) <= 64 * 1024
    for authorization in ({}, {"HTTP_AUTHORIZATION": "JWT a.b.c"}):
        response = client.post(
            "/lifecycle/installed", data=raw, content_type="application/json", **authorization
        )
        assert response.status_code == 401
    assert parses == []
    rows = list(LifecycleEvent.objects.order_by("id").values_list("reason", "body"))
    assert rows == [("authorization_header_missing", None), ("malformed_token", None)]


def test_a_large_genuine_lifecycle_body_is_parsed_once_after_the_token(lifecycle_call, make_body, parses):
    body = _big_body(make_body)
    assert lifecycle_call(body=body).status_code == 204
    assert parses == [1]
    assert Installation.objects.filter(client_key=body["clientKey"]).exists()


def test_a_large_body_with_another_tenants_token_is_refused_after_parsing(lifecycle_call, make_body, parses):
    body = _big_body(make_body)
    response = lifecycle_call(body=body, client_key="someone-else")
    assert (response.status_code, response.json()["error"]) == (401, "issuer_mismatch")
    assert LifecycleEvent.objects.get().verified is False


@pytest.mark.parametrize(
    ("method", "status", "error"), [("post", 413, "body_too_large"), ("put", 405, "method_not_allowed")]
)
def test_an_oversized_body_is_refused_before_it_is_read(client, method, status, error):
    raw = "{" + " " * (6 * 1024 * 1024) + "}"
    response = getattr(client, method)("/lifecycle/installed", data=raw, content_type="application/json")
    assert (response.status_code, response.json()["error"]) == (status, error)


def test_a_cache_outage_during_a_new_kid_fetch_is_503_not_500(lifecycle_call, key_server, settings):
    broken = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    settings.CACHES = {**settings.CACHES, "broken": {**broken, "OPTIONS": {"socket_connect_timeout": 0.5}}}
    settings.RATELIMIT_USE_CACHE = "broken"  # the fetch counters' cache is down
    response = lifecycle_call(kid="never-cached")
    assert (response.status_code, response.json()["error"]) == (503, "cache_unavailable")
    assert key_server.requests == []


def test_an_unknown_client_key_does_the_work_of_a_wrong_signature(tenant, tenant_call, monkeypatch):
    """Issue 12, item 7: the same work on both paths, so their timing tells nothing.

    Counted, not timed (timed tests fail on a busy machine): one secret decryption, one token
    verification and the same database queries whether the clientKey exists or not.
    bench/tenant_timing.py measures the medians (interleaved pairs on loopback).
    """
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from lifecycle import protocol
    from tenants.crypto import SecretBox

    calls: list[str] = []
    decrypt, verify_token = SecretBox.decrypt, protocol.verify_token
    monkeypatch.setattr(
        SecretBox, "decrypt", lambda self, *a: (calls.append("decrypt"), decrypt(self, *a))[1]
    )
    monkeypatch.setattr(
        protocol, "verify_token", lambda *a, **k: (calls.append("verify"), verify_token(*a, **k))[1]
    )
    work = {}
    for client_key in ("no-such-tenant", TENANT_KEY):
        calls.clear()
        with CaptureQueriesContext(connection) as queries:
            response = tenant_call(HOOK, ISSUE, client_key=client_key, secret="z" * 40)
        assert (response.status_code, response.json()["error"]) == (401, "invalid_token")
        work[client_key] = (sorted(calls), [q["sql"].split()[0] for q in queries.captured_queries])
    assert work["no-such-tenant"] == work[TENANT_KEY]
    assert work[TENANT_KEY][0] == ["decrypt", "verify"]
