"""Tokens as Atlassian and Jira sign them, for tests of a Connect app: no server, no Django.

- :func:`sign_install`: RS256 signed-install tokens for ``installed``/``uninstalled`` (a kid,
  ``aud`` the app's baseUrl);
- :func:`sign_tenant`: HS256 tokens with the tenant's sharedSecret, for webhooks,
  ``enabled``/``disabled``, iframe page loads (the ``jwt`` query parameter) and, with
  ``qsh="context-qsh"``, context tokens;
- :func:`qsh_for` and :func:`canonical_request`, written here from Atlassian's description and
  checked against Atlassian's own vectors (``tests/vectors/qsh-official.json``).
"""

from __future__ import annotations

import hashlib
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
