"""connect_testkit/signing.py: tokens as Atlassian and Jira sign them, qsh from Atlassian's vectors."""

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from connect_testkit import (
    CONTEXT_QSH,
    canonical_request,
    generate_rsa_key,
    qsh_for,
    sign_install,
    sign_tenant,
)
from lifecycle import protocol

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "qsh-official.json").read_text())


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=[v["name"] for v in VECTORS["vectors"]])
def test_the_kits_own_qsh_matches_atlassians_vectors(vector):
    assert canonical_request(vector["method"], vector["url_without_jwt"]) == vector["canonical"]
    assert qsh_for(vector["method"], vector["url_without_jwt"]) == vector["qsh"]
    # The jwt parameter of a signed URL is left out, as Atlassian does.
    assert canonical_request("GET", vector["signed_url"]) == vector["canonical"]


def test_the_base_urls_path_prefix_is_not_part_of_the_canonical_path():
    assert canonical_request("get", "https://h/app/p/?x=1", base_url="https://h/app") == "GET&/p&x=1"
    assert canonical_request("POST", "/app", base_url="https://h/app/") == "POST&/&"
    assert canonical_request("GET", "/a&b") == "GET&/a%26b&"


@pytest.mark.parametrize("path", ["/a//", "//", "/a/b/", "/", "/a"])
def test_one_trailing_slash_is_dropped_as_the_server_and_atlassian_jwt_drop_it(path):
    # atlassian-jwt (JavaScript) and Atlassian's Java signer remove one trailing "/", not all.
    assert canonical_request("GET", path) == protocol.canonical_request("GET", path, "")


def test_install_token_is_rs256_with_kid_and_the_claims_atlassian_sends():
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


def test_a_page_token_rides_in_the_url_and_a_context_token_carries_context_qsh():
    url = "/pages/issue-panel?issueKey=ABC-1&xdm_e=https%3A%2F%2Fx.atlassian.net"
    token = sign_tenant("s" * 32, client_key="c", method="GET", url=url)
    signed = f"{url}&jwt={token}"
    claims = jwt.decode(parse_qs(urlsplit(signed).query)["jwt"][0], "s" * 32, algorithms=["HS256"])
    assert claims["qsh"] == protocol.query_string_hash(
        protocol.canonical_request("GET", urlsplit(signed).path, urlsplit(signed).query)
    )
    context = sign_tenant("s" * 32, client_key="c", method="GET", url="/", overrides={"qsh": CONTEXT_QSH})
    assert jwt.decode(context, "s" * 32, algorithms=["HS256"])["qsh"] == "context-qsh"
