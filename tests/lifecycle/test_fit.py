"""lifecycle.fit: the pure rules of a Forge Invocation Token (no HTTP, no database)."""

from __future__ import annotations

import json
import time

import jwt
import pytest

from connect_testkit import FORGE_APP_ID, generate_rsa_key, sign_fit
from lifecycle import errors, fit

KID = "forge/invocation-token/wf-0f1e2d3c-4b5a-4968-8776-655443322110"


@pytest.fixture(scope="module")
def key():
    return generate_rsa_key()


def decode(token, key, **kw):
    return fit.decode(
        token, key.public_key(), app_id=kw.pop("app_id", FORGE_APP_ID), leeway=30, max_lifetime=300, **kw
    )


def test_a_good_fit_decodes_and_names_its_installation(key):
    token = sign_fit(key, kid=KID, ui=True, principal="557058:u1")
    assert fit.read_header(token) == KID
    identity = fit.ForgeIdentity.from_claims(decode(token, key))
    assert identity.installation_id.startswith(fit.INSTALLATION_ARI)
    assert identity.cloud_id == "c821c30c-a2ad-47d7-b742-9fed48cfd6b9"
    assert (identity.site_url, identity.account_id) == ("https://example.atlassian.net", "557058:u1")
    assert identity.api_base_url == "https://api.atlassian.com/ex/jira/c821c30c-a2ad-47d7-b742-9fed48cfd6b9"


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ({"alg": "none"}, errors.ForgeUnsupportedAlgorithm),
        ({"alg": "HS256", "kid": KID}, errors.ForgeUnsupportedAlgorithm),
        ({"alg": "RS512", "kid": KID}, errors.ForgeUnsupportedAlgorithm),
        ({"alg": "RS256"}, errors.ForgeMissingKid),
        ({"alg": "RS256", "kid": 7}, errors.ForgeMalformedToken),  # PyJWT refuses a non-string kid
        ({"alg": "RS256", "kid": "../../etc/passwd"}, errors.ForgeMissingKid),
    ],
)
def test_the_header_pins_rs256_and_needs_a_kid(header, error):
    token = jwt.api_jws.base64url_encode(json.dumps(header).encode()).decode()
    with pytest.raises(error):
        fit.read_header(token + ".e30.c2ln")


def test_junk_and_oversized_tokens_are_malformed():
    for token in ("", "abc", "a.b.c", "x" * 20000):
        with pytest.raises(errors.ForgeMalformedToken):
            fit.read_header(token)


def test_aud_must_be_exactly_the_app_id(key):
    other = "ari:cloud:ecosystem::app/00000000-0000-4000-8000-000000000000"
    assert decode(sign_fit(key, kid=KID, overrides={"aud": [FORGE_APP_ID]}), key)["aud"] == [FORGE_APP_ID]
    for aud in (other, [FORGE_APP_ID, other], FORGE_APP_ID.upper()):
        with pytest.raises(errors.ForgeAudienceMismatch):
            decode(sign_fit(key, kid=KID, overrides={"aud": aud}), key)


def test_times_with_the_leeway(key):
    now = time.time()
    decode(sign_fit(key, kid=KID, now=now - 50), key)  # exp 25 s ago, within the 30 s leeway
    with pytest.raises(errors.ForgeTokenExpired):
        decode(sign_fit(key, kid=KID, now=now - 60), key)
    with pytest.raises(errors.ForgeTokenNotYetValid):
        decode(sign_fit(key, kid=KID, now=now + 60), key)
    with pytest.raises(errors.ForgeTokenLifetimeTooLong):
        decode(sign_fit(key, kid=KID, lifetime=301), key)


def test_app_claims(key):
    with pytest.raises(errors.ForgeAppIdMismatch):
        decode(sign_fit(key, kid=KID, overrides={"app": {"id": "ari:x", "installationId": "i"}}), key)
    with pytest.raises(errors.ForgeMissingClaim):
        decode(sign_fit(key, kid=KID, drop=["app"]), key)
    for bad in ("", None, 5, "has spaces in it"):
        app = {"id": FORGE_APP_ID, "installationId": bad}
        with pytest.raises((errors.ForgeMissingClaim, errors.ForgeMalformedToken)):
            decode(sign_fit(key, kid=KID, overrides={"app": app}), key)


def test_times_must_be_numbers(key):
    """PyJWT takes "exp": "1896036057" (it calls int()); the lifetime bound must not fail open."""
    far = int(time.time()) + 3 * 365 * 86400
    for name, value in (("exp", str(far)), ("iat", str(int(time.time()))), ("nbf", "0")):
        with pytest.raises((errors.ForgeMalformedToken, errors.ForgeTokenExpired)):
            decode(sign_fit(key, kid=KID, overrides={name: value}), key)


def test_a_signature_by_another_key_is_refused(key):
    with pytest.raises(errors.ForgeBadSignature):
        decode(sign_fit(generate_rsa_key(), kid=KID), key)


def test_installation_ids_are_normalised_to_aris():
    ari = "ari:cloud:ecosystem::installation/5f0a2c7e-8b1d-4c3e-9a6f-7d2e1b0c9a8f"
    assert fit.installation_ari("5F0A2C7E-8B1D-4C3E-9A6F-7D2E1B0C9A8F") == ari
    assert fit.installation_ari(ari) == ari
    assert fit.installation_ari(" 5f0a2c7e-8b1d-4c3e-9a6f-7d2e1b0c9a8f ") == ari


def test_the_cloud_id_falls_back_to_the_installation_contexts_then_api_base_url():
    cloud = "d0d52620-1111-4222-8333-444455556666"
    claims = {"app": {"installation": {"contexts": [{"cloudId": cloud}]}}}
    assert fit.cloud_id_of(claims) == cloud
    assert (
        fit.cloud_id_of({"app": {"apiBaseUrl": f"https://api.atlassian.com/ex/confluence/{cloud}"}}) == cloud
    )
    assert fit.cloud_id_of({"app": {"apiBaseUrl": "https://api.atlassian.com/elsewhere"}}) == ""


def test_a_forge_token_never_shows_its_value():
    token = jwt.encode({"exp": 2_000_000_000}, "k" * 32, algorithm="HS256")
    parsed = fit.ForgeToken.from_header(f"Bearer {token}")
    assert parsed is not None and parsed.value == token and parsed.expires_at == 2_000_000_000
    assert token not in repr(parsed) and token not in str(parsed) and token not in f"{parsed}"
    assert parsed.usable(now=2_000_000_000 - 31) and not parsed.usable(now=2_000_000_000 - 29)
    opaque = fit.ForgeToken.from_header("opaque-token")
    assert opaque is not None and opaque.expires_at is None and opaque.usable(now=0)
    assert fit.ForgeToken.from_header("") is None and fit.ForgeToken.from_header(None) is None
