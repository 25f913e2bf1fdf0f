"""Tests for lifecycle.protocol: QSH against Atlassian's vectors, token framing, claim checks.

Pure: no database, no Django settings; runs under plain pytest as well as pytest-django.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given
from hypothesis import strategies as st

from lifecycle import errors
from lifecycle.protocol import (
    CONTEXT_QSH,
    KID_PATTERN,
    MAX_TOKEN_BYTES,
    TokenHeader,
    VerificationPolicy,
    audience_matches,
    canonical_query,
    canonical_request,
    canonical_uri,
    extract_token,
    percent_encode,
    query_string_hash,
    read_header,
    unverified_claims,
    validate_kid,
    verify_token,
)

# --- Official vectors ------------------------------------------------------------------------

# A vendored copy of ../shared/vectors/qsh-official.json, so the suite needs no sibling checkout.
VECTOR_FILE = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "qsh-official.json").read_text("utf-8")
)
VECTORS = VECTOR_FILE["vectors"]


def test_vector_file_is_complete() -> None:
    assert len(VECTORS) == 39
    assert "atlassian" in VECTOR_FILE["source"].lower()
    assert VECTOR_FILE["hs256_secret"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_official_vector_canonical_request_and_qsh(vector: dict[str, str]) -> None:
    parts = urlsplit(vector["url_without_jwt"])
    canonical = canonical_request(vector["method"], parts.path, parts.query)
    assert canonical == vector["canonical"]
    assert query_string_hash(canonical) == vector["qsh"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_official_vector_signed_url_verifies(vector: dict[str, str]) -> None:
    parts = urlsplit(vector["signed_url"])
    (token,) = parse_qs(parts.query)["jwt"]
    iat = unverified_claims(token)["iat"]
    assert isinstance(iat, int)
    # The jwt parameter itself is excluded from the signed URL's canonical form.
    canonical = canonical_request("GET", parts.path, parts.query)
    assert canonical == vector["canonical"]
    policy = VerificationPolicy(audiences=None, leeway=0, max_lifetime=3600, require_aud=False)
    claims = verify_token(
        token,
        VECTOR_FILE["hs256_secret"],
        algorithm="HS256",
        policy=policy,
        expected_qsh=vector["qsh"],
        canonical=canonical,
        now=iat,
    )
    assert claims["qsh"] == vector["qsh"]
    assert claims["iss"] == "jira:1234-5678-9000"


# --- Canonical request -----------------------------------------------------------------------


def test_spec_example() -> None:
    assert canonical_request("POST", "/installed", "") == "POST&/installed&"
    assert (
        query_string_hash("POST&/installed&")
        == "4a2e1de8ca74e6cafe8862d332fa3ac7a8e51e692bc6d798ea4dfedc14948bf4"
    )


@pytest.mark.parametrize(
    ("path", "base_path", "expected"),
    [
        ("/jira-app/installed", "/jira-app", "/installed"),
        ("/jira-app/installed", "/jira-app/", "/installed"),
        ("/jira-appx/installed", "/jira-app", "/jira-appx/installed"),
        ("/other/jira-app/installed", "/jira-app", "/other/jira-app/installed"),
        ("/jira-app", "/jira-app", "/"),
        ("/jira-app/", "/jira-app", "/"),
        ("/installed", "/", "/installed"),
        ("/installed/", "", "/installed"),
        ("/test//", "", "/test/"),
        ("/", "", "/"),
        ("", "", "/"),
        ("/a&b&c", "", "/a%26b%26c"),
        ("/path-._~", "", "/path-._~"),
    ],
)
def test_canonical_uri(path: str, base_path: str, expected: str) -> None:
    assert canonical_uri(path, base_path) == expected


def test_canonical_request_upper_cases_method_and_strips_base_path() -> None:
    assert canonical_request("post", "/jira-app/installed", "", "/jira-app") == "POST&/installed&"
    assert canonical_request("get", "/jira-app/hook/", "b=2&a=1", "/jira-app/") == ("GET&/hook&a=1&b=2")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ""),
        ("jwt=abc.def.ghi", ""),
        ("a=1&jwt=x&jwt=y", "a=1"),
        ("JWT=x", "JWT=x"),  # only the exact name "jwt" is the token
        ("a", "a="),
        ("a=&b", "a=&b="),
        ("b=2&a=1", "a=1&b=2"),
        ("a=x+y", "a=x%20y"),
        ("a=x%20y", "a=x%20y"),
        ("a=2&a=1&a=10", "a=1,10,2"),
        ("a+b=1", "a%20b=1"),
        ("a%20b=1&a+b=2", "a%20b=1,2"),
        ("%zz=%", "%25zz=%25"),
        ("&&a=1&&", "a=1"),
    ],
)
def test_canonical_query_cases(query: str, expected: str) -> None:
    assert canonical_query(query) == expected


def test_canonical_query_sorts_values_in_java_utf16_order() -> None:
    # U+FFFF sorts after U+1F600 in UTF-16 code units (0xD83D...) but before it in code points.
    assert canonical_query("v=%EF%BF%BF&v=%F0%9F%98%80") == "v=%F0%9F%98%80,%EF%BF%BF"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" ", "%20"),
        ("+", "%2B"),
        ("*", "%2A"),
        ("~", "~"),
        ("-._~AZaz09", "-._~AZaz09"),
        ("a/b?c=d&e", "a%2Fb%3Fc%3Dd%26e"),
        ("é", "%C3%A9"),
        ("宮", "%E5%AE%AE"),
        ("", ""),
    ],
)
def test_percent_encode(value: str, expected: str) -> None:
    assert percent_encode(value) == expected


# --- Properties of canonical_query -----------------------------------------------------------

names = st.text(max_size=6)
values = st.text(max_size=6)
pairs = st.lists(st.tuples(names, values), max_size=8)
ENCODED = re.compile(r"(?:[A-Za-z0-9._~-]|%[0-9A-F]{2})*")
CANONICAL_ALPHABET = re.compile(r"[A-Za-z0-9._~%=,&-]*")


def to_query(items: list[tuple[str, str]]) -> str:
    return "&".join(f"{percent_encode(n)}={percent_encode(v)}" for n, v in items)


@given(st.text())
def test_percent_encode_round_trips(text: str) -> None:
    encoded = percent_encode(text)
    assert ENCODED.fullmatch(encoded)
    assert unquote(encoded, errors="strict") == text


@given(pairs, st.data())
def test_canonical_query_ignores_parameter_order(items: list[tuple[str, str]], data: Any) -> None:
    shuffled = data.draw(st.permutations(items))
    assert canonical_query(to_query(shuffled)) == canonical_query(to_query(items))


@given(pairs, st.lists(values, min_size=1, max_size=3), st.data())
def test_canonical_query_always_drops_jwt(items: list[tuple[str, str]], tokens: list[str], data: Any) -> None:
    with_jwt = list(items)
    for token in tokens:
        with_jwt.insert(data.draw(st.integers(0, len(with_jwt))), ("jwt", token))
    result = canonical_query(to_query(with_jwt))
    assert result == canonical_query(to_query(items))
    assert not result.startswith("jwt=") and "&jwt=" not in result


@given(st.text())
def test_canonical_query_output_alphabet(raw: str) -> None:
    assert CANONICAL_ALPHABET.fullmatch(canonical_query(raw))


@given(pairs)
def test_form_encoding_variants_are_equivalent(items: list[tuple[str, str]]) -> None:
    # urlencode writes spaces as "+" and leaves "*" literal; both must hash the same.
    assert canonical_query(urlencode(items)) == canonical_query(to_query(items))


@given(st.dictionaries(names, values, max_size=8))
def test_canonical_query_single_valued_model_and_idempotence(params: dict[str, str]) -> None:
    result = canonical_query(to_query(list(params.items())))
    expected = sorted((percent_encode(n), percent_encode(v)) for n, v in params.items() if n != "jwt")
    assert result == "&".join(f"{n}={v}" for n, v in expected)
    # With one value per name the canonical form is itself a query with the same canonical form.
    assert canonical_query(result) == result


@given(st.lists(values, min_size=1, max_size=6))
def test_canonical_query_multi_values_sorted_then_joined(vals: list[str]) -> None:
    ordered = sorted(vals, key=lambda v: v.encode("utf-16-be"))
    expected = "a=" + ",".join(percent_encode(v) for v in ordered)
    assert canonical_query(to_query([("a", v) for v in vals])) == expected


# --- extract_token ---------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "   ", "JWT", "JWT   ", "jwt"])
def test_extract_token_missing(header: str | None) -> None:
    with pytest.raises(errors.MissingToken):
        extract_token(header)


def test_extract_token_other_scheme_names_jwt_but_not_the_token() -> None:
    with pytest.raises(errors.MissingToken) as info:
        extract_token("Bearer secret.token.value")
    assert "JWT" in info.value.detail and "Bearer" in info.value.detail
    assert "secret" not in info.value.detail


def test_extract_token_without_scheme_does_not_echo_it() -> None:
    with pytest.raises(errors.MissingToken) as info:
        extract_token("secret.token.value")
    assert "secret" not in info.value.detail


@pytest.mark.parametrize(
    ("header", "token"),
    [("JWT a.b.c", "a.b.c"), ("jwt a.b.c", "a.b.c"), ("JWT   a.b.c  ", "a.b.c")],
)
def test_extract_token_ok(header: str, token: str) -> None:
    assert extract_token(header) == token


def test_extract_token_size_limit() -> None:
    assert extract_token("JWT " + "a" * MAX_TOKEN_BYTES) == "a" * MAX_TOKEN_BYTES
    with pytest.raises(errors.MalformedToken):
        extract_token("JWT " + "a" * (MAX_TOKEN_BYTES + 1))


def test_extract_token_rejects_inner_whitespace() -> None:
    with pytest.raises(errors.MalformedToken):
        extract_token("JWT a.b c")


# --- read_header / unverified_claims ---------------------------------------------------------


def b64(data: bytes | str) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64json(value: object) -> str:
    return b64(json.dumps(value))


PAYLOAD = b64json({"iss": "x"})


def test_read_header_ok() -> None:
    token = jwt.encode({"a": 1}, "s" * 32, algorithm="HS256", headers={"kid": "k/1"})
    assert read_header(token) == TokenHeader(alg="HS256", kid="k/1", typ="JWT")
    assert read_header(f"{b64json({'alg': 'RS256'})}.{PAYLOAD}.") == TokenHeader(
        alg="RS256", kid=None, typ=None
    )


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(f"{b64json({'alg': 'HS256'})}.{PAYLOAD}", id="two-parts"),
        pytest.param(f"{b64json({'alg': 'HS256'})}.{PAYLOAD}.sig.more", id="four-parts"),
        pytest.param(f"!!!.{PAYLOAD}.sig", id="non-base64"),
        pytest.param(f"{b64json({'alg': 'HS256'})}.{PAYLOAD}.s+g/", id="base64-not-url"),
        pytest.param(f"abcde.{PAYLOAD}.sig", id="impossible-length"),
        pytest.param(f"{b64('not json')}.{PAYLOAD}.sig", id="header-not-json"),
        pytest.param(f"{b64json(['alg', 'HS256'])}.{PAYLOAD}.sig", id="header-array"),
        pytest.param(f"{b64json('HS256')}.{PAYLOAD}.sig", id="header-string"),
        pytest.param(f"{b64json({'typ': 'JWT'})}.{PAYLOAD}.sig", id="missing-alg"),
        pytest.param(f"{b64json({'alg': 256})}.{PAYLOAD}.sig", id="alg-not-string"),
        pytest.param(f"{b64json({'alg': ''})}.{PAYLOAD}.sig", id="alg-empty"),
        pytest.param(f"{b64json({'alg': 'RS256', 'kid': 7})}.{PAYLOAD}.sig", id="kid-int"),
        pytest.param(f"{b64json({'alg': 'RS256', 'crit': ['b64']})}.{PAYLOAD}.s", id="crit"),
        pytest.param(f"{b64json({'alg': 'HS256'})}..sig", id="empty-payload"),
        pytest.param(f".{PAYLOAD}.sig", id="empty-header"),
        pytest.param(f"{b64json({'alg': 'HS256'})}.{PAYLOAD}.sïg", id="non-ascii"),
        pytest.param(
            f"{b64json({'alg': 'HS256'})}.{b64('x' * 10240)}.sig",
            id="ten-kilobytes",
        ),
        pytest.param("", id="empty"),
    ],
)
def test_read_header_rejects_bad_framing(token: str) -> None:
    with pytest.raises(errors.MalformedToken):
        read_header(token)


def test_read_header_wraps_decoding_errors() -> None:
    with pytest.raises(errors.MalformedToken) as info:
        read_header(f"{b64('{not json')}.{PAYLOAD}.sig")
    assert isinstance(info.value.__cause__, ValueError)


def test_unverified_claims() -> None:
    token = jwt.encode({"iss": "client-1", "n": 2}, "s" * 32, algorithm="HS256")
    assert unverified_claims(token) == {"iss": "client-1", "n": 2}
    with pytest.raises(errors.MalformedToken):
        unverified_claims(f"{b64json({'alg': 'HS256'})}.{b64json([1, 2])}.sig")
    with pytest.raises(errors.MalformedToken):
        unverified_claims("junk")


# --- validate_kid ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kid",
    [
        "0e50fccb-239d-4991-a5db-dc850ba3f236",
        "prod/connect/0e50fccb-239d-4991-a5db-dc850ba3f236",
        "key_1-A/",
        "a" * 256,
    ],
)
def test_validate_kid_accepts(kid: str) -> None:
    assert validate_kid(kid) == kid
    assert KID_PATTERN.fullmatch(kid)


@pytest.mark.parametrize(
    "kid",
    [
        "..",
        "a/../b",
        "//host/key",
        "a//b",
        "/absolute",
        "key?x=1",
        "key#frag",
        "a.b",
        "a b",
        "key\n",
        "ключ",
        "a" * 257,
        "a" * 2000,
        "",
    ],
)
def test_validate_kid_rejects(kid: str) -> None:
    with pytest.raises(errors.InvalidKid) as info:
        validate_kid(kid)
    detail = info.value.detail
    assert detail.isascii()
    assert "a" * 41 not in detail and len(detail) < 160


@pytest.mark.parametrize("kid", [123, ["a"], {"k": 1}, True])
def test_validate_kid_rejects_non_strings(kid: object) -> None:
    with pytest.raises(errors.InvalidKid):
        validate_kid(kid)


def test_validate_kid_missing() -> None:
    with pytest.raises(errors.MissingKid):
        validate_kid(None)


# --- verify_token ----------------------------------------------------------------------------

NOW = 1_700_000_000
BASE_URL = "https://app.example.com/jira-app"
CANONICAL = "POST&/installed&"
QSH = query_string_hash(CANONICAL)
HS256_KEY = "tenant-shared-secret-0123456789abcdef"
POLICY = VerificationPolicy(audiences=(BASE_URL,), leeway=30, max_lifetime=3600, require_aud=True)
DROP = object()


def claims(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "iss": "client-key-1",
        "sub": "557058:account",
        "iat": NOW - 10,
        "exp": NOW + 170,
        "qsh": QSH,
        "aud": BASE_URL,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not DROP}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def rs256(private_key: rsa.RSAPrivateKey, payload: dict[str, object]) -> str:
    return jwt.encode(payload, private_key, algorithm="RS256", headers={"kid": "kid-1"})


def rs256_manual(private_key: rsa.RSAPrivateKey, payload: dict[str, object]) -> str:
    """An RS256 token with claims PyJWT's encoder refuses to write (e.g. a non-string iss)."""
    signing_input = f"{b64json({'alg': 'RS256', 'kid': 'kid-1'})}.{b64json(payload)}"
    signature = private_key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(signature)}"


def hs256_manual(secret: bytes, payload: dict[str, object]) -> str:
    """An HS256 token signed with any bytes, even a PEM that PyJWT refuses as a secret."""
    signing_input = f"{b64json({'alg': 'HS256', 'typ': 'JWT'})}.{b64json(payload)}"
    signature = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def verify_rs(
    token: str,
    key: rsa.RSAPrivateKey,
    policy: VerificationPolicy = POLICY,
    now: float | None = NOW,
) -> dict[str, object]:
    return verify_token(
        token,
        key.public_key(),
        algorithm="RS256",
        policy=policy,
        expected_qsh=QSH,
        canonical=CANONICAL,
        now=now,
    )


def verify_hs(token: str, secret: object = HS256_KEY) -> dict[str, object]:
    return verify_token(
        token,
        secret,
        algorithm="HS256",
        policy=POLICY,
        expected_qsh=QSH,
        canonical=CANONICAL,
        now=NOW,
    )


def test_rs256_happy_path(rsa_key: rsa.RSAPrivateKey) -> None:
    result = verify_rs(rs256(rsa_key, claims()), rsa_key)
    assert result["iss"] == "client-key-1"
    assert result["sub"] == "557058:account"


def test_rs256_with_real_clock(rsa_key: rsa.RSAPrivateKey) -> None:
    now = int(time.time())
    token = rs256(rsa_key, claims(iat=now, exp=now + 180))
    assert verify_rs(token, rsa_key, now=None)["iat"] == now


def test_signed_by_other_key_is_bad_signature(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    token = rs256(other_rsa_key, claims())
    with pytest.raises(errors.BadSignature) as info:
        verify_rs(token, rsa_key)
    assert isinstance(info.value.__cause__, jwt.InvalidSignatureError)
    assert token not in info.value.detail


def test_tampered_payload_is_bad_signature(rsa_key: rsa.RSAPrivateKey) -> None:
    header, _, signature = rs256(rsa_key, claims()).split(".")
    forged = f"{header}.{b64json(claims(iss='victim'))}.{signature}"
    with pytest.raises(errors.BadSignature):
        verify_rs(forged, rsa_key)


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_unsupported(rsa_key: rsa.RSAPrivateKey, alg: str) -> None:
    token = f"{b64json({'alg': alg, 'kid': 'kid-1'})}.{b64json(claims())}."
    with pytest.raises(errors.UnsupportedAlgorithm):
        verify_rs(token, rsa_key)


def test_hs256_signed_with_public_pem_is_refused_on_rs256(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = hs256_manual(pem, claims())
    with pytest.raises(errors.UnsupportedAlgorithm) as info:
        verify_rs(token, rsa_key)
    assert "RS256" in info.value.detail
    # And a PEM never works as an HMAC secret either.
    with pytest.raises(errors.BadSignature):
        verify_hs(token, pem.decode("ascii"))


def test_rs256_token_on_hs256_endpoint_is_unsupported(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(errors.UnsupportedAlgorithm):
        verify_hs(rs256(rsa_key, claims()))


@pytest.mark.parametrize("claim", ["iss", "iat", "exp", "qsh", "aud"])
def test_missing_claim(rsa_key: rsa.RSAPrivateKey, claim: str) -> None:
    with pytest.raises(errors.MissingClaim) as info:
        verify_rs(rs256(rsa_key, claims(**{claim: DROP})), rsa_key)
    assert f"'{claim}'" in info.value.detail


def test_null_claim_counts_as_missing(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(errors.MissingClaim):
        verify_rs(rs256_manual(rsa_key, claims(iss=None)), rsa_key)


def test_issuer_must_be_non_empty_string(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(errors.MissingClaim):
        verify_rs(rs256_manual(rsa_key, claims(iss="")), rsa_key)
    with pytest.raises(errors.MalformedToken):
        verify_rs(rs256_manual(rsa_key, claims(iss=42)), rsa_key)


def test_aud_optional_when_not_required(rsa_key: rsa.RSAPrivateKey) -> None:
    policy = VerificationPolicy(audiences=(BASE_URL,), leeway=30, max_lifetime=3600, require_aud=False)
    assert verify_rs(rs256(rsa_key, claims(aud=DROP)), rsa_key, policy=policy)["iss"]
    with pytest.raises(errors.AudienceMismatch):
        verify_rs(rs256(rsa_key, claims(aud="https://evil.example")), rsa_key, policy=policy)


@pytest.mark.parametrize(
    ("exp", "error"),
    [
        (NOW - 30 - 1, errors.TokenExpired),
        (NOW - 30, None),
        (NOW - 30 + 1, None),
    ],
)
def test_expiry_around_leeway(rsa_key: rsa.RSAPrivateKey, exp: int, error: type[Exception] | None) -> None:
    token = rs256(rsa_key, claims(iat=exp - 60, exp=exp))
    if error is None:
        assert verify_rs(token, rsa_key)["exp"] == exp
    else:
        with pytest.raises(error):
            verify_rs(token, rsa_key)


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_future_iat_or_nbf_beyond_leeway(rsa_key: rsa.RSAPrivateKey, claim: str) -> None:
    ok = rs256(rsa_key, claims(**{claim: NOW + 30}, exp=NOW + 120))
    assert verify_rs(ok, rsa_key)[claim] == NOW + 30
    late = rs256(rsa_key, claims(**{claim: NOW + 31}, exp=NOW + 120))
    with pytest.raises(errors.TokenNotYetValid):
        verify_rs(late, rsa_key)


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("exp", "1700000100"),
        ("iat", True),
        ("nbf", "soon"),
        ("exp", [NOW + 100]),
        ("exp", float("nan")),
        ("iat", float("-inf")),
        ("exp", 10**400),
        ("iat", -(10**400)),
        ("nbf", 2**53 + 1),
    ],
)
def test_time_claims_must_be_finite_numbers(rsa_key: rsa.RSAPrivateKey, claim: str, value: object) -> None:
    with pytest.raises(errors.MalformedToken):
        verify_rs(rs256(rsa_key, claims(**{claim: value})), rsa_key)


def test_float_times_accepted(rsa_key: rsa.RSAPrivateKey) -> None:
    assert verify_rs(rs256(rsa_key, claims(iat=NOW - 0.5, exp=NOW + 60.25)), rsa_key)


def test_exp_before_iat_is_malformed(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(errors.MalformedToken):
        verify_rs(rs256(rsa_key, claims(iat=NOW, exp=NOW - 1)), rsa_key)


@pytest.mark.parametrize(("lifetime", "ok"), [(3600, True), (3601, False), (10 * 365 * 86400, False)])
def test_lifetime_limit(rsa_key: rsa.RSAPrivateKey, lifetime: int, ok: bool) -> None:
    token = rs256(rsa_key, claims(iat=NOW, exp=NOW + lifetime))
    if ok:
        assert verify_rs(token, rsa_key)
    else:
        with pytest.raises(errors.TokenLifetimeTooLong):
            verify_rs(token, rsa_key)


@pytest.mark.parametrize("aud", [BASE_URL, [BASE_URL], BASE_URL + "/", [BASE_URL + "/"]], ids=str)
def test_audience_forms_accepted(rsa_key: rsa.RSAPrivateKey, aud: object) -> None:
    assert verify_rs(rs256(rsa_key, claims(aud=aud)), rsa_key)["aud"] == aud


def test_policy_audience_with_trailing_slash(rsa_key: rsa.RSAPrivateKey) -> None:
    policy = VerificationPolicy(
        audiences=("https://old.example", BASE_URL + "/"),
        leeway=30,
        max_lifetime=3600,
        require_aud=True,
    )
    assert verify_rs(rs256(rsa_key, claims()), rsa_key, policy=policy)


def test_foreign_audience_names_both(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(errors.AudienceMismatch) as info:
        verify_rs(rs256(rsa_key, claims(aud="https://other-app.example")), rsa_key)
    assert "https://other-app.example" in info.value.detail
    assert BASE_URL in info.value.detail


@pytest.mark.parametrize("aud", [[BASE_URL, "https://other.example"], [], [1], 7, "x" * 5000], ids=repr)
def test_bad_audience_shapes_mismatch_with_capped_detail(rsa_key: rsa.RSAPrivateKey, aud: object) -> None:
    with pytest.raises(errors.AudienceMismatch) as info:
        verify_rs(rs256(rsa_key, claims(aud=aud)), rsa_key)
    assert len(info.value.detail) < 500


def test_wrong_qsh_shows_canonical_request(rsa_key: rsa.RSAPrivateKey) -> None:
    token = rs256(rsa_key, claims(qsh=query_string_hash("POST&/uninstalled&")))
    with pytest.raises(errors.QshMismatch) as info:
        verify_rs(token, rsa_key)
    assert CANONICAL in info.value.detail


def test_context_qsh_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(errors.ContextQshNotAllowed):
        verify_rs(rs256(rsa_key, claims(qsh=CONTEXT_QSH)), rsa_key)


@pytest.mark.parametrize("qsh", [123, ["x"], "ü" * 64])
def test_odd_qsh_values_refused(rsa_key: rsa.RSAPrivateKey, qsh: object) -> None:
    with pytest.raises((errors.MalformedToken, errors.QshMismatch)):
        verify_rs(rs256(rsa_key, claims(qsh=qsh)), rsa_key)


def test_check_order(rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey) -> None:
    expired_foreign = claims(iat=NOW - 1000, exp=NOW - 900, aud="https://x.example", qsh="0")
    with pytest.raises(errors.BadSignature):
        verify_rs(rs256(other_rsa_key, expired_foreign), rsa_key)
    with pytest.raises(errors.TokenExpired):
        verify_rs(rs256(rsa_key, expired_foreign), rsa_key)
    with pytest.raises(errors.AudienceMismatch):
        verify_rs(rs256(rsa_key, claims(aud="https://x.example", qsh="0")), rsa_key)


def test_hs256_happy_path_and_wrong_secret() -> None:
    token = jwt.encode(claims(), HS256_KEY, algorithm="HS256")
    assert verify_hs(token)["iss"] == "client-key-1"
    assert verify_hs(token, HS256_KEY.encode("utf-8"))["iss"] == "client-key-1"
    with pytest.raises(errors.BadSignature):
        verify_hs(token, "another-tenant-secret-0123456789abcdef")


def test_programming_errors_are_not_reason_codes(rsa_key: rsa.RSAPrivateKey) -> None:
    token = rs256(rsa_key, claims())
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kwargs: dict[str, Any] = {"policy": POLICY, "expected_qsh": QSH, "canonical": CANONICAL}
    with pytest.raises(TypeError):
        verify_token(token, pem, algorithm="RS256", **kwargs)
    with pytest.raises(TypeError):
        verify_token(token, "", algorithm="HS256", **kwargs)
    with pytest.raises(ValueError):
        verify_token(token, HS256_KEY, algorithm="none", **kwargs)
    with pytest.raises(ValueError):
        VerificationPolicy(audiences=None, leeway=-1, max_lifetime=3600, require_aud=False)
    with pytest.raises(ValueError):
        VerificationPolicy(audiences=("/",), leeway=0, max_lifetime=3600, require_aud=False)


@pytest.mark.parametrize(
    ("aud", "audiences", "expected"),
    [
        ("https://a.example", ("https://a.example",), True),
        ("https://a.example/", ("https://a.example",), True),
        ("https://a.example", ("https://a.example/",), True),
        (["https://a.example"], ("https://a.example",), True),
        ("https://a.example//", ("https://a.example",), False),
        ("https://A.example", ("https://a.example",), False),
        (["https://a.example", "https://a.example"], ("https://a.example",), False),
        ("", ("https://a.example",), False),
        (None, ("https://a.example",), False),
        ("https://a.example", (), False),
    ],
)
def test_audience_matches(aud: object, audiences: tuple[str, ...], expected: bool) -> None:
    assert audience_matches(aud, audiences) is expected


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({"crit": ["exp"]}, "crit/b64"),
        ({"b64": False}, None),  # an unencoded payload (RFC 7797): not base64url, so not framed
        ({"typ": ["JWT"]}, "'typ' header is not a string"),
    ],
)
def test_a_well_signed_token_with_a_header_connect_never_sends_is_malformed(headers, detail) -> None:
    # verify_token parses a good token once (PyJWT's header); these checks run on that header.
    token = jwt.encode(claims(), HS256_KEY, algorithm="HS256", headers=headers)
    with pytest.raises(errors.MalformedToken, match=detail):
        verify_token(
            token, HS256_KEY, algorithm="HS256", policy=POLICY, expected_qsh=QSH, canonical=CANONICAL, now=NOW
        )


@pytest.mark.parametrize(
    ("token", "error", "detail"),
    [
        (f"{b64json({'alg': 'HS256'})}.{PAYLOAD}", errors.MalformedToken, "2 dot-separated parts"),
        (f"{b64json({'alg': 'none'})}.{PAYLOAD}.", errors.UnsupportedAlgorithm, "signed with 'none'"),
        (f"{b64json({'alg': 'HS256'})}.{PAYLOAD}.s+g/", errors.MalformedToken, "signature is not base64url"),
        ("x" * 9000, errors.MalformedToken, "over 8192 bytes"),
    ],
)
def test_verify_token_names_framing_faults_as_read_header_does(token, error, detail) -> None:
    with pytest.raises(error, match=detail):
        verify_token(
            token, HS256_KEY, algorithm="HS256", policy=POLICY, expected_qsh=QSH, canonical=CANONICAL, now=NOW
        )
