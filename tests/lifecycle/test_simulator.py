"""lifecycle/simulator.py: tokens as Atlassian signs them, and the misbehaving key server."""

import jwt
import requests

from lifecycle import protocol
from lifecycle.simulator import (
    KeyServer,
    StepResult,
    generate_rsa_key,
    public_pem,
    qsh_for,
    sign_install,
    sign_tenant,
)


def test_install_token_is_rs256_with_kid_and_the_claims_jira_sends():
    key = generate_rsa_key()
    token = sign_install(
        key, kid="k/1", client_key="c", audience="https://app.example.com", url="/lifecycle/installed"
    )
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": "k/1", "typ": "JWT"}
    claims = jwt.decode(token, key.public_key(), algorithms=["RS256"], audience="https://app.example.com")
    assert claims["iss"] == "c"
    assert claims["qsh"] == protocol.query_string_hash("POST&/lifecycle/installed&")
    assert claims["exp"] - claims["iat"] == 180


def test_tenant_token_is_hs256_bound_to_the_url():
    token = sign_tenant("s" * 32, client_key="c", method="POST", url="/webhooks/x?b=2&a=1")
    claims = jwt.decode(token, "s" * 32, algorithms=["HS256"])
    assert claims["qsh"] == protocol.query_string_hash("POST&/webhooks/x&a=1&b=2")
    assert qsh_for("GET", "https://h/app/p?x=1", base_url="https://h/app") == protocol.query_string_hash(
        "GET&/p&x=1"
    )


def test_key_server_serves_published_keys_and_misbehaves_on_demand():
    key = generate_rsa_key()
    with KeyServer() as server:
        server.publish("kid-1", key)
        assert requests.get(f"{server.url}/kid-1", timeout=5).content == public_pem(key)
        assert requests.get(f"{server.url}/other", timeout=5).status_code == 404
        server.behaviour = "redirect"
        response = requests.get(f"{server.url}/kid-1", timeout=5, allow_redirects=False)
        assert (response.status_code, response.headers["Location"]) == (302, "/elsewhere/kid-1")
        assert server.requests == ["/kid-1", "/other", "/kid-1"]


def test_step_lines_say_what_was_expected():
    ok = StepResult("happy", "installed", "POST /x", (204, None), 204, None, None)
    bad = StepResult(
        "happy", "installed", "POST /x", (204, None), 401, "unknown_kid", "No key server knows kid"
    )
    assert ok.ok and ok.line().startswith("[ok  ]")
    assert not bad.ok
    assert "-> 401 unknown_kid  (expected 204)" in bad.line()
    assert "detail: No key server knows kid" in bad.line()
