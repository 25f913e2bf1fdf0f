"""Tokens as Atlassian and Jira sign them, for tests of a Connect app: no server, no Django.

- :func:`sign_install`: RS256 signed-install tokens for ``installed``/``uninstalled`` (a kid,
  ``aud`` the app's baseUrl);
- :func:`sign_tenant`: HS256 tokens with the tenant's sharedSecret, for webhooks,
  ``enabled``/``disabled``, iframe page loads (the ``jwt`` query parameter) and, with
  ``qsh="context-qsh"``, context tokens;
- :func:`sign_fit`: Forge Invocation Tokens (RS256, a kid of the JWKS, aud the Forge app id),
  :func:`forge_oauth_token` and :func:`forge_event` for Forge remote calls;
- :func:`qsh_for` and :func:`canonical_request`, written here from Atlassian's description and
  checked against Atlassian's own vectors (``tests/vectors/qsh-official.json``).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

CONTEXT_QSH = "context-qsh"


def generate_rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A fresh RSA private key (Atlassian's install keys are RSA)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def public_jwk(private_key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    """The public half of ``private_key`` as a JWK: kty RSA, ``alg`` RS256, ``use`` sig, ``kid``."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}


def public_pem(private_key: rsa.RSAPrivateKey) -> bytes:
    """The SubjectPublicKeyInfo PEM a key server publishes for a kid."""
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --- qsh, written from Atlassian's description rather than taken from the server's code, so that
# a fault in lifecycle.protocol cannot hide itself by signing what it verifies -----------------


def _encode(value: str) -> str:
    """RFC 3986 percent-encoding of everything but unreserved characters (``~`` kept)."""
    return quote(value, safe="-._~")


def canonical_request(method: str, url: str, base_url: str = "") -> str:
    """``METHOD&path&query`` as Atlassian canonicalises a request for its qsh claim.

    Source: Atlassian's "Understanding JWT for Connect apps" (query string hash): the upper-cased
    method; the path relative to the app's baseUrl path, without one trailing ``/`` (``/`` when
    empty), ``&`` percent-encoded; the query's parameters without ``jwt``, sorted by encoded
    name, each name once with its values sorted as decoded text (UTF-16 order, as Atlassian's
    Java sorts; the official "Multi-value II" vector pins it), encoded and joined by ``,``; pairs
    joined by ``&``.
    """
    parts = urlsplit(url)
    path = parts.path or "/"
    prefix = urlsplit(base_url).path.rstrip("/")
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        path = path[len(prefix) :]
    if not path.startswith("/"):
        path = "/" + path
    if path != "/" and path.endswith("/"):  # one slash only, as atlassian-jwt and Java's signer
        path = path[:-1]
    values: dict[str, list[str]] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name != "jwt":
            values.setdefault(_encode(name), []).append(value)
    query = "&".join(
        f"{name}={','.join(_encode(v) for v in sorted(items, key=lambda v: v.encode('utf-16-be')))}"
        for name, items in sorted(values.items())
    )
    return f"{method.upper()}&{path.replace('&', '%26')}&{query}"


def qsh_for(method: str, url: str, base_url: str = "") -> str:
    """The qsh Atlassian puts in a token for ``method url`` (url absolute or a path with query):
    SHA-256 hex of :func:`canonical_request`."""
    return hashlib.sha256(canonical_request(method, url, base_url).encode("utf-8")).hexdigest()


# --- Signing, as Atlassian and Jira sign -----------------------------------------------------


def sign_install(
    private_key: rsa.RSAPrivateKey,
    *,
    kid: str,
    client_key: str,
    audience: str | list[str],
    method: str = "POST",
    url: str = "/lifecycle/installed",
    base_url: str = "",
    lifetime: int = 180,
    now: float | None = None,
    overrides: dict[str, Any] | None = None,
    drop: Iterable[str] = (),
    headers: dict[str, Any] | None = None,
) -> str:
    """An RS256 signed-install token as Atlassian makes it for ``installed``/``uninstalled``."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": client_key,
        "sub": "557058:" + uuid.uuid4().hex,
        "aud": audience,
        "qsh": qsh_for(method, url, base_url),
        "iat": issued,
        "exp": issued + lifetime,
        "context": {},
    }
    claims.update(overrides or {})
    for name in drop:
        claims.pop(name, None)
    return jwt.encode(claims, private_key, algorithm="RS256", headers={"kid": kid, **(headers or {})})


def sign_tenant(
    shared_secret: str,
    *,
    client_key: str,
    method: str,
    url: str,
    base_url: str = "",
    lifetime: int = 180,
    now: float | None = None,
    overrides: dict[str, Any] | None = None,
    drop: Iterable[str] = (),
) -> str:
    """An HS256 token as Jira makes it for webhooks, ``enabled`` and ``disabled``."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": client_key,
        "qsh": qsh_for(method, url, base_url),
        "iat": issued,
        "exp": issued + lifetime,
    }
    claims.update(overrides or {})
    for name in drop:
        claims.pop(name, None)
    return jwt.encode(claims, shared_secret, algorithm="HS256")


# --- Forge Invocation Tokens, as Forge signs them ---------------------------------------------

FORGE_APP_ID = "ari:cloud:ecosystem::app/3a9e1b4c-0d2f-4e6a-8b7c-5d4e3f2a1b0c"
FORGE_CLOUD_ID = "c821c30c-a2ad-47d7-b742-9fed48cfd6b9"


def sign_fit(
    private_key: rsa.RSAPrivateKey,
    *,
    kid: str,
    app_id: str = FORGE_APP_ID,
    installation_id: str = "ari:cloud:ecosystem::installation/0a3a7799-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
    cloud_id: str = FORGE_CLOUD_ID,
    site_url: str = "https://example.atlassian.net",
    principal: str | None = None,
    module_key: str = "forge-remote",
    environment_type: str = "PRODUCTION",
    environment: str = "7d1e2f3a-4b5c-4d6e-8f7a-9b0c1d2e3f4a",
    ui: bool = False,
    lifetime: int = 25,
    now: float | None = None,
    overrides: dict[str, Any] | None = None,
    drop: Iterable[str] = (),
    headers: dict[str, Any] | None = None,
    algorithm: str = "RS256",
) -> str:
    """A Forge Invocation Token as Forge makes it (Forge remote essentials): RS256 with ``kid``,
        iss ``forge/invocation-token``, aud and ``app.id`` = ``app_id``, ``app.installationId``,
        ``apiBaseUrl`` (``https://api.atlassian.com/ex/jira/<cloud_id>``), environment (``environment``:
    its UUID), module; for a
        UI call (``ui``) a ``context`` with cloudId and siteUrl, and ``principal`` when given.
        ``overrides`` replace claims (``app`` whole), ``drop`` removes them."""
    issued = int(time.time() if now is None else now)
    environment_id = f"ari:cloud:ecosystem::environment/{app_id.rsplit('/', 1)[-1]}/{environment}"
    api_base_url = f"https://api.atlassian.com/ex/jira/{cloud_id}"
    claims: dict[str, Any] = {
        "app": {
            "id": app_id,
            "appVersion": "1.4.0",
            "installationId": installation_id,
            "apiBaseUrl": api_base_url,
            "installation": {
                "id": installation_id,
                "contexts": [{"name": "jira", "apiBaseUrl": api_base_url, "cloudId": cloud_id}],
            },
            "environment": {"type": environment_type, "id": environment_id},
            "module": {"type": "xen:macro" if ui else "core:endpoint", "key": module_key},
        },
        "iss": "forge/invocation-token",
        "aud": app_id,
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime,
        "jti": uuid.uuid4().hex,
    }
    if ui:
        claims["context"] = {"cloudId": cloud_id, "siteUrl": site_url, "moduleKey": module_key}
    if principal is not None:
        claims["principal"] = principal
    claims.update(overrides or {})
    for name in drop:
        claims.pop(name, None)
    key: Any = private_key
    if algorithm.startswith("HS"):  # a forgery: an HMAC "signed" with some secret
        key = b"forged-hmac-secret-0123456789abcdef"
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid, **(headers or {})})


def forge_oauth_token(lifetime: int = 3600, now: float | None = None) -> str:
    """A stand-in for an ``x-forge-oauth-system``/``-user`` token: a JWT with ``exp`` (Forge's are
    JWTs whose only readable claim for an app is ``exp``), signed with a throwaway secret."""
    issued = int(time.time() if now is None else now)
    return jwt.encode(
        {"exp": issued + lifetime, "iat": issued, "jti": uuid.uuid4().hex},
        uuid.uuid4().hex * 2,
        algorithm="HS256",
    )


def forge_event(event_type: str, *, retry_count: int | None = None, **fields: Any) -> dict[str, Any]:
    """A Forge event body (``eventType`` plus ``fields``); with ``retry_count`` a retry's
    ``retryContext`` (Forge's retryCount and retryReason)."""
    body: dict[str, Any] = {"eventType": event_type, **fields}
    if retry_count is not None:
        body["retryContext"] = {
            "retryCount": retry_count,
            "retryReason": "INVALID_REMOTE_INVOCATION_ERROR",
            "retryData": None,
        }
    return body
