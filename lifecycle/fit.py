"""Forge Invocation Tokens (FIT): the pure rules, no Django and no I/O.

Facts (Atlassian, "Forge remote essentials", the remote contract,
https://developer.atlassian.com/platform/forge/remote/essentials/): Forge calls a remote with
``Authorization: Bearer <FIT>``; the FIT is a JWT signed with a key of the JWKS at
``https://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json``, ``iss`` is
``forge/invocation-token`` and ``aud`` the app's id, an ARI ``ari:cloud:ecosystem::app/<uuid>``
equal to ``app.id``. The claims carry ``app`` (``id``, ``installationId``
``ari:cloud:ecosystem::installation/<uuid>``, ``apiBaseUrl``, ``environment {type, id}``,
``module {type, key}``, ``appVersion``, ``license``), ``context`` (``cloudId``, ``siteUrl``...,
for UI calls) and ``principal`` (the user's accountId, for UI calls). Forge's tokens live about
25 s. The pages do not name the algorithm: the JWKS's keys declare ``"alg": "RS256"``, 2048-bit
RSA, with kids ``forge/invocation-token/wf-<uuid>``; only RS256 is accepted here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from lifecycle.errors import (
    ForgeAppIdMismatch,
    ForgeAudienceMismatch,
    ForgeBadSignature,
    ForgeIssuerMismatch,
    ForgeMalformedToken,
    ForgeMissingClaim,
    ForgeMissingKid,
    ForgeTokenExpired,
    ForgeTokenLifetimeTooLong,
    ForgeTokenNotYetValid,
    ForgeUnsupportedAlgorithm,
)
from lifecycle.protocol import KID_PATTERN

FIT_ISSUER = "forge/invocation-token"
FIT_ALGORITHM = "RS256"
MAX_FIT_BYTES = 16 * 1024
INSTALLATION_ARI = "ari:cloud:ecosystem::installation/"
APP_ARI = "ari:cloud:ecosystem::app/"
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ID = re.compile(r"[A-Za-z0-9:/._-]{1,200}")
# https://api.atlassian.com/ex/<product>/<cloudId>: apiBaseUrl's last segment is the cloud id.
_API_BASE_PATH = re.compile(r"/ex/[a-z-]+/([0-9a-fA-F-]{36})/?")


def read_header(token: str) -> str:
    """The ``kid`` of a FIT whose header pins RS256; raises the reason otherwise.

    ``ForgeMalformedToken`` (not a JWT, or over 16 KB), ``ForgeUnsupportedAlgorithm`` (``alg``
    other than RS256: ``none``, HS256 with the JWKS as its secret...), ``ForgeMissingKid`` (no
    kid, or one that is not a safe key id).
    """
    if len(token) > MAX_FIT_BYTES:
        raise ForgeMalformedToken(f"The bearer token is {len(token)} bytes; a FIT is far smaller.")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise ForgeMalformedToken() from None
    alg = header.get("alg")
    if alg != FIT_ALGORITHM:
        shown = alg if isinstance(alg, str) and alg.isalnum() and len(alg) < 16 else "?"
        raise ForgeUnsupportedAlgorithm(f"The FIT's alg is {shown!r}; only RS256 is accepted.")
    kid = header.get("kid")
    if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid) or ".." in kid or "//" in kid:
        raise ForgeMissingKid()
    return kid


def decode(token: str, key: RSAPublicKey, *, app_id: str, leeway: int, max_lifetime: int) -> dict[str, Any]:
    """The claims of a FIT signed by ``key`` (RS256) for ``app_id``; raises the reason otherwise.

    Checks, in order: the signature; ``iss``, ``aud``, ``iat`` and ``exp`` present; ``exp``,
    ``nbf`` and ``iat`` against now with ``leeway`` seconds; ``iss`` is ``forge/invocation-token``;
    ``aud`` is exactly ``app_id`` (a string, or a list of that one string); ``exp - iat`` at most
    ``max_lifetime`` seconds; ``app.id`` equals ``aud``; ``app.installationId`` is present.
    """
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[FIT_ALGORITHM],
            leeway=leeway,
            options={"require": ["iss", "aud", "iat", "exp"], "verify_aud": False, "verify_iss": False},
        )
    except jwt.InvalidSignatureError:
        raise ForgeBadSignature() from None
    except jwt.ExpiredSignatureError:
        raise ForgeTokenExpired() from None
    except jwt.ImmatureSignatureError:
        raise ForgeTokenNotYetValid() from None
    except jwt.MissingRequiredClaimError as exc:
        raise ForgeMissingClaim(f"The FIT has no {exc.claim!r} claim.") from None
    except jwt.PyJWTError as exc:  # DecodeError, InvalidIssuedAtError (iat not a number)...
        raise ForgeMalformedToken(f"The FIT does not decode ({type(exc).__name__}).") from None
    for name in ("iat", "exp", "nbf"):
        value = claims.get(name, 0)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ForgeMalformedToken(f"The FIT's {name} is not a number.")
    if claims["iss"] != FIT_ISSUER:
        raise ForgeIssuerMismatch(f"The FIT's iss is {_excerpt(claims['iss'])}, not {FIT_ISSUER!r}.")
    aud = claims["aud"]
    if aud != app_id and aud != [app_id]:
        raise ForgeAudienceMismatch(
            f"The FIT's aud is {_excerpt(aud)}; FORGE_APP_ID is {app_id!r}. It was issued for another app, "
            "or FORGE_APP_ID is not the manifest's app.id."
        )
    lifetime = _number(claims["exp"]) - _number(claims["iat"])
    if lifetime > max_lifetime:
        raise ForgeTokenLifetimeTooLong(
            f"The FIT lives {lifetime:.0f} s (exp - iat); at most {max_lifetime} s is accepted "
            "(FORGE_JWT_MAX_LIFETIME)."
        )
    app = claims.get("app")
    if not isinstance(app, dict) or not isinstance(app.get("id"), str):
        raise ForgeMissingClaim("The FIT has no app.id claim.")
    if app["id"] != app_id:
        raise ForgeAppIdMismatch(f"The FIT's app.id {_excerpt(app['id'])} is not its aud {app_id!r}.")
    installation = app.get("installationId")
    if not isinstance(installation, str) or not installation:
        raise ForgeMissingClaim("The FIT has no app.installationId claim.")
    if not _ID.fullmatch(installation):
        raise ForgeMalformedToken("The FIT's app.installationId is not an installation id.")
    return claims


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _excerpt(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def installation_ari(value: str) -> str:
    """An installation id as an ARI: a bare UUID (Forge lifecycle bodies) gets the
    ``ari:cloud:ecosystem::installation/`` prefix; an ARI is kept; UUIDs are lower-cased."""
    value = value.strip()
    bare = value.removeprefix(INSTALLATION_ARI)
    if _UUID.fullmatch(bare):
        bare = bare.lower()
    return INSTALLATION_ARI + bare


def mapping(value: object) -> dict[str, Any]:
    """``value`` when it is a JSON object, else ``{}``."""
    return value if isinstance(value, dict) else {}


def _text(value: object, limit: int = 255) -> str:
    return value[:limit] if isinstance(value, str) else ""


@dataclass(frozen=True)
class ForgeIdentity:
    """Who a verified FIT speaks for, from its claims (strings; "" when a claim is absent).

    ``installation_id`` is always an ARI; ``cloud_id`` comes from ``context.cloudId``, else from
    ``app.installation.contexts``, else from ``apiBaseUrl`` (``.../ex/<product>/<cloudId>``).
    """

    app_id: str
    installation_id: str
    cloud_id: str
    site_url: str
    api_base_url: str
    environment_type: str
    environment_id: str
    module_key: str
    app_version: str
    account_id: str
    fit_iat: int = 0  # the FIT's iat: what it says is newer than what an older FIT said

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> ForgeIdentity:
        """From the claims :func:`decode` returned."""
        app = claims["app"]
        context = mapping(claims.get("context"))
        environment = mapping(app.get("environment"))
        module = mapping(app.get("module"))
        api_base_url = _text(app.get("apiBaseUrl"), 500)
        return cls(
            app_id=app["id"],
            installation_id=installation_ari(app["installationId"]),
            cloud_id=cloud_id_of(claims),
            site_url=_text(context.get("siteUrl"), 500),
            api_base_url=api_base_url,
            environment_type=_text(environment.get("type"), 32),
            environment_id=_text(environment.get("id")),
            module_key=_text(module.get("key")),
            app_version=_text(app.get("appVersion") or app.get("version"), 64),
            account_id=_text(claims.get("principal"), 128),
            fit_iat=int(claims["iat"]),
        )


def cloud_id_of(claims: dict[str, Any]) -> str:
    """The site's cloud id a FIT names (see :class:`ForgeIdentity`), lower-cased; "" if none."""
    contexts = [mapping(claims.get("context"))]
    app = mapping(claims.get("app"))
    listed = mapping(app.get("installation")).get("contexts")
    contexts += [mapping(item) for item in listed] if isinstance(listed, list) else []
    for context in contexts:
        cloud_id = context.get("cloudId")
        if isinstance(cloud_id, str) and _UUID.fullmatch(cloud_id):
            return cloud_id.lower()
    base = app.get("apiBaseUrl")
    if isinstance(base, str):
        match = _API_BASE_PATH.fullmatch(urlsplit(base).path)
        if match and _UUID.fullmatch(match.group(1)):
            return match.group(1).lower()
    return ""


class ForgeToken:
    """A short-lived OAuth token Forge sends with a call (``x-forge-oauth-system`` or
    ``x-forge-oauth-user``), for Atlassian's APIs at the FIT's ``apiBaseUrl``.

    ``value`` is the token; ``repr()`` and ``str()`` never show it. ``expires_at`` (epoch
    seconds) is the ``exp`` of the token, read without verifying it (Atlassian: the tokens are
    JWTs to be treated as opaque apart from ``exp``; they live up to 4 hours), or None when it
    names none.
    """

    __slots__ = ("expires_at", "value")

    def __init__(self, value: str, expires_at: float | None) -> None:
        self.value = value
        self.expires_at = expires_at

    @classmethod
    def from_header(cls, header: str | None) -> ForgeToken | None:
        """The token of a header's value ("" or absent: None; a ``Bearer `` prefix is dropped)."""
        if not header or not header.strip():
            return None
        value = header.strip()
        if value[:7].lower() == "bearer ":
            value = value[7:].strip()
        expires_at: float | None = None
        try:
            exp = jwt.decode(value, options={"verify_signature": False}).get("exp")
            if isinstance(exp, int | float) and not isinstance(exp, bool):
                expires_at = float(exp)
        except jwt.PyJWTError:
            pass
        return cls(value, expires_at)

    def usable(self, now: float, margin: float = 30.0) -> bool:
        """Whether it may still be sent: no ``exp``, or ``exp`` more than ``margin`` s after ``now``."""
        return self.expires_at is None or self.expires_at - margin > now

    def __repr__(self) -> str:
        return f"ForgeToken(expires_at={self.expires_at!r}, value=<hidden>)"

    __str__ = __repr__
