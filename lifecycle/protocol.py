"""The Atlassian Connect JWT protocol, free of Django: QSH, token framing and claim checks.

Everything here is a pure function of its arguments (keys, secrets, the clock and the request's
method, path and query are all passed in), so it is tested without a database or a settings
module. A thin adapter turns an ``HttpRequest`` into those arguments. Every refusal is one of the
``lifecycle.errors`` classes; every PyJWT error is wrapped with ``raise ... from exc``. Details
never contain the token, a secret or key material.

The QSH rules are SPEC section 1.5 and are checked against Atlassian's 39 interop vectors.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl, quote

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from lifecycle.errors import (
    AudienceMismatch,
    AuthenticationFailed,
    BadSignature,
    ContextQshNotAllowed,
    InvalidKid,
    MalformedToken,
    MissingClaim,
    MissingKid,
    MissingToken,
    PageTokenMissing,
    QshMismatch,
    TokenExpired,
    TokenLifetimeTooLong,
    TokenNotYetValid,
    UnsupportedAlgorithm,
)

CONTEXT_QSH = "context-qsh"
MAX_TOKEN_BYTES = 8192
SUPPORTED_ALGORITHMS = ("RS256", "HS256")
KID_PATTERN = re.compile(r"^[A-Za-z0-9_\-/]{1,256}$")

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_TIME_CLAIMS = ("exp", "iat", "nbf")
_MAX_SECONDS = 2**53  # the largest integer a JSON number holds exactly in every implementation
# Schemes safe to name in a detail; anything else might be a credential sent without a scheme.
_WHITESPACE = re.compile(r"\s")
_KNOWN_SCHEMES = frozenset({"basic", "bearer", "digest", "negotiate", "ntlm"})


def _excerpt(value: str, limit: int) -> str:
    """ASCII-escaped repr of at most ``limit`` characters of ``value``, for safe details."""
    return ascii(value[:limit]) + ("..." if len(value) > limit else "")


# --- Query string hash -------------------------------------------------------------------------


def percent_encode(value: str) -> str:
    """RFC 3986 percent-encoding of the UTF-8 bytes of ``value``, upper-case hex.

    Only ``A-Za-z0-9-._~`` stay literal: space becomes ``%20``, ``+`` ``%2B``, ``*`` ``%2A``.
    A string with lone surrogates cannot be UTF-8 encoded and raises ``UnicodeEncodeError``.
    """
    # quote() never leaves anything but its always-safe set (exactly the unreserved set) literal.
    return quote(value, safe="", encoding="utf-8", errors="strict")


def canonical_uri(path: str, base_path: str = "") -> str:
    """The URI part of the canonical request (SPEC 1.5).

    ``base_path`` is the path part of the app's baseUrl (``"/jira-app"``; a trailing ``/`` is
    ignored). It is removed only as a whole segment prefix: ``/jira-app/x`` -> ``/x`` but
    ``/jira-appx`` is kept. Then empty becomes ``/``, one trailing ``/`` is removed unless the
    result is ``/``, and every ``&`` becomes ``%26``.

    ``path`` is used exactly as given: no percent-decoding or encoding happens here. Atlassian's
    signers hash the path as it appears in the URL they call; Django's ``request.path`` is
    percent-decoded. The two agree for every path without ``%`` escapes, which covers all the
    descriptor's lifecycle and webhook URLs; an adapter that serves escaped paths should pass the
    raw path as sent on the wire.
    """
    prefix = base_path.rstrip("/")
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        path = path[len(prefix) :]
    if not path:
        path = "/"
    if path != "/" and path.endswith("/"):
        path = path[:-1]
    return path.replace("&", "%26")


def _java_order(value: str) -> bytes:
    """Sort key giving UTF-16 code-unit order, the order of Atlassian's Java ``String`` sort."""
    return value.encode("utf-16-be", errors="surrogatepass")


def canonical_query(query_string: str) -> str:
    """The QUERY part of the canonical request, from the RAW query string (SPEC 1.5).

    The string is parsed as form data (``+`` and ``%20`` are both a space; blank values kept);
    the ``jwt`` parameter is dropped. Repeated names are grouped and each name's values sorted in
    their decoded form (the official "Multi-value II" vector, ``.1,.2,%3A1,%3A2``, pins decoded
    rather than encoded order), in UTF-16 code-unit order as Atlassian's Java does; the values are
    then percent-encoded and joined with ``,``. Names are sorted by their encoded form and emitted
    as ``enc(name)=values`` joined by ``&``. No parameters give ``""``.
    """
    grouped: dict[str, list[str]] = {}
    for name, value in parse_qsl(query_string, keep_blank_values=True):
        if name != "jwt":
            grouped.setdefault(name, []).append(value)
    encoded = sorted(
        (percent_encode(name), ",".join(percent_encode(v) for v in sorted(values, key=_java_order)))
        for name, values in grouped.items()
    )
    return "&".join(f"{name}={values}" for name, values in encoded)


def canonical_request(method: str, path: str, query_string: str, base_path: str = "") -> str:
    """``METHOD&URI&QUERY`` as Atlassian hashes it; see ``canonical_uri`` and ``canonical_query``.

    ``query_string`` is the raw query string (without ``?``); ``base_path`` as in
    ``canonical_uri``. ``POST /installed`` with no query gives ``"POST&/installed&"``.
    """
    uri = canonical_uri(path, base_path)
    return f"{method.upper()}&{uri}&{canonical_query(query_string)}"


def query_string_hash(canonical: str) -> str:
    """The ``qsh`` claim for a canonical request: lower-case hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --- Token framing -----------------------------------------------------------------------------


def extract_token(authorization: str | None) -> str:
    """The token from an ``Authorization: JWT <token>`` header value.

    The scheme is matched case-insensitively (RFC 9110 11.1; Atlassian sends ``JWT``) and extra
    whitespace around the token is tolerated. No header, an empty one or another scheme raises
    ``MissingToken``; a token over ``MAX_TOKEN_BYTES`` or containing whitespace raises
    ``MalformedToken``. Details never echo the token.
    """
    parts = (authorization or "").split(maxsplit=1)
    if not parts:
        raise MissingToken("The request has no Authorization header; send 'JWT <token>'.")
    scheme = parts[0]
    if scheme.lower() != "jwt":
        named = f" uses the {scheme!r} scheme but" if scheme.lower() in _KNOWN_SCHEMES else ""
        raise MissingToken(f"The Authorization header{named} must use the JWT scheme: 'JWT <token>'.")
    token = parts[1].strip() if len(parts) == 2 else ""
    if not token:
        raise MissingToken("The Authorization header has the JWT scheme but no token.")
    return _sized(token)


def _sized(token: str) -> str:
    """``token`` if it is at most ``MAX_TOKEN_BYTES`` without whitespace, else ``MalformedToken``."""
    size = len(token.encode("utf-8"))
    if size > MAX_TOKEN_BYTES:
        raise MalformedToken(f"The token is {size} bytes; at most {MAX_TOKEN_BYTES} are accepted.")
    if _WHITESPACE.search(token):
        raise MalformedToken("The token contains whitespace; a JWT is three base64url parts.")
    return token


def extract_query_token(value: str | None) -> str:
    """The token of an iframe load's ``jwt`` query parameter (how Jira loads an app's pages).

    None or an empty value raises ``PageTokenMissing`` (a ``MissingToken``); a token over
    ``MAX_TOKEN_BYTES`` or with whitespace raises ``MalformedToken``, as in the header.
    """
    token = (value or "").strip()
    if not token:
        raise PageTokenMissing("The page was loaded without its 'jwt' query parameter.")
    return _sized(token)


@dataclass(frozen=True)
class TokenHeader:
    """The JOSE header fields this app looks at, read before the signature is checked."""

    alg: str
    kid: str | None
    typ: str | None


def _segments(token: str) -> list[str]:
    """The three base64url parts of a compact JWS, or ``MalformedToken``."""
    if not isinstance(token, str):
        raise MalformedToken("The token is not a string.")
    if not token.isascii():
        raise MalformedToken("The token contains non-ASCII characters.")
    if len(token) > MAX_TOKEN_BYTES:
        raise MalformedToken(f"The token is over {MAX_TOKEN_BYTES} bytes.")
    parts = token.split(".")
    if len(parts) != 3:
        raise MalformedToken(f"The token has {len(parts)} dot-separated parts instead of three.")
    for name, part in zip(("header", "payload", "signature"), parts, strict=True):
        # Python's base64 decoder silently skips foreign characters, so check the alphabet here.
        if not _B64URL.fullmatch(part) or len(part) % 4 == 1:
            raise MalformedToken(f"The token's {name} is not base64url.")
        if not part and name != "signature":
            raise MalformedToken(f"The token's {name} is empty.")
    return parts


def _json_object(segment: str, name: str) -> dict[str, Any]:
    """Decode one base64url segment that must hold a JSON object."""
    try:
        data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(data)
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise MalformedToken(f"The token's {name} is not base64url-encoded JSON.") from exc
    if not isinstance(value, dict):
        raise MalformedToken(f"The token's {name} is not a JSON object.")
    return value


def read_header(token: str) -> TokenHeader:
    """Check the token's framing and return its unverified header.

    The token must be ASCII, at most ``MAX_TOKEN_BYTES``, three base64url parts (the signature
    may be empty, so that ``alg: none`` is refused as an algorithm, not as junk), with a header
    that is a JSON object holding a string ``alg``, optional string ``kid`` and ``typ``, and no
    ``crit``/``b64`` extensions (Atlassian never sends them). Anything else: ``MalformedToken``.
    """
    header = _json_object(_segments(token)[0], "header")
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise MalformedToken("The token's header has no string 'alg'.")
    for name in ("kid", "typ"):
        if name in header and not isinstance(header[name], str):
            raise MalformedToken(f"The token's '{name}' header is not a string.")
    if "crit" in header or "b64" in header:
        raise MalformedToken("The token's header uses crit/b64, which Connect never sends.")
    return TokenHeader(alg=alg, kid=header.get("kid"), typ=header.get("typ"))


def unverified_claims(token: str) -> dict[str, object]:
    """The token's payload WITHOUT verifying anything but framing.

    Only for choosing the key (the HS256 tenant is looked up by ``iss``); the token must then go
    through ``verify_token``. Junk raises ``MalformedToken``.
    """
    return _json_object(_segments(token)[1], "payload")


def validate_kid(kid: object) -> str:
    """Return ``kid`` if it is a safe key id (SPEC 3.3), else raise.

    ``None`` raises ``MissingKid``. A non-string, or a string not matching ``KID_PATTERN``, or
    containing ``..`` or ``//``, or starting with ``/`` raises ``InvalidKid``. The kid becomes a
    URL path on the key server, hence the strictness. Details show at most an escaped prefix.
    """
    if kid is None:
        raise MissingKid()
    if not isinstance(kid, str):
        raise InvalidKid(f"The kid header is a JSON {type(kid).__name__}, not a string.")
    if not kid:
        problem = "is empty"
    elif len(kid) > 256:
        problem = "is longer than 256 characters"
    elif not KID_PATTERN.fullmatch(kid):
        problem = "has characters other than A-Z a-z 0-9 _ - /"
    elif ".." in kid or "//" in kid or kid.startswith("/"):
        problem = "contains '..' or '//' or starts with '/'"
    else:
        return kid
    raise InvalidKid(f"The kid {_excerpt(kid, 40)} {problem}.")


# --- Verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerificationPolicy:
    """What ``verify_token`` accepts besides the signature.

    ``audiences``: accepted ``aud`` values (compared after trimming one trailing ``/``), or
    ``None`` to skip the audience comparison. ``leeway``: clock skew in seconds. ``max_lifetime``:
    largest ``exp - iat`` in seconds. ``require_aud``: ``aud`` must be present.
    ``allow_context_qsh``: a ``qsh`` of ``context-qsh`` (a context token, bound to no request)
    is accepted instead of this request's hash; never for lifecycle calls or webhooks.
    """

    audiences: tuple[str, ...] | None
    leeway: int
    max_lifetime: int
    require_aud: bool
    allow_context_qsh: bool = False

    def __post_init__(self) -> None:
        if self.leeway < 0 or self.max_lifetime <= 0:
            raise ValueError("leeway must be >= 0 and max_lifetime > 0")
        if self.audiences is not None and not all(
            isinstance(a, str) and a.rstrip("/") for a in self.audiences
        ):
            raise ValueError("audiences must be non-empty strings")


def _trim_slash(value: str) -> str:
    return value[:-1] if value.endswith("/") else value


def audience_matches(aud: object, audiences: tuple[str, ...]) -> bool:
    """Whether an ``aud`` claim names one of ``audiences``.

    ``aud`` may be a string or a one-element list of strings (SPEC 1.3); one trailing ``/`` is
    trimmed on both sides, then strings compare exactly. Anything else does not match.
    """
    if isinstance(aud, list) and len(aud) == 1:
        aud = aud[0]
    if not isinstance(aud, str) or not aud:
        return False
    return _trim_slash(aud) in {_trim_slash(a) for a in audiences}


def _time_claim(claims: dict[str, Any], name: str) -> int | float:
    value = claims[name]
    # bool is an int subclass; NaN would slip through every comparison; and bounding the
    # magnitude keeps the arithmetic below in float range (JSON ints can have 400 digits).
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not -_MAX_SECONDS <= value <= _MAX_SECONDS
    ):
        raise MalformedToken(f"The token's '{name}' claim is not a number of seconds.")
    return value


_REQUIRED = {False: ["iss", "iat", "exp", "qsh"], True: ["iss", "iat", "exp", "qsh", "aud"]}
# PyJWT checks the signature and claim presence only: verify_token checks time against an
# injectable clock, and aud/iss with Connect's own rules.
_OPTIONS = {
    required_aud: {
        "verify_signature": True,
        "require": required,
        "verify_exp": False,
        "verify_nbf": False,
        "verify_iat": False,
        "verify_aud": False,
        "verify_iss": False,
        "verify_sub": False,
        "verify_jti": False,
    }
    for required_aud, required in _REQUIRED.items()
}


def _check_header(header: dict[str, Any]) -> None:
    """What ``read_header`` refuses, for the header PyJWT parsed: a string ``alg``, string
    ``kid``/``typ`` when present, no ``crit``/``b64``."""
    for name in ("kid", "typ"):
        if name in header and not isinstance(header[name], str):
            raise MalformedToken(f"The token's '{name}' header is not a string.")
    if "crit" in header or "b64" in header:
        raise MalformedToken("The token's header uses crit/b64, which Connect never sends.")


def _decode(
    token: str, key: object, algorithm: str, required: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Signature and presence checks by PyJWT, its errors mapped to reason classes; returns the
    claims and the header."""
    options = _OPTIONS[len(required) == len(_REQUIRED[True])]
    try:
        decoded = jwt.decode_complete(
            token, cast(Any, key), algorithms=[algorithm], options=cast(Any, options)
        )
        return decoded["payload"], decoded["header"]
    except jwt.InvalidAlgorithmError as exc:
        raise UnsupportedAlgorithm(f"This endpoint accepts only {algorithm} tokens.") from exc
    except jwt.InvalidSignatureError as exc:
        raise BadSignature(f"The {algorithm} signature does not verify with this key.") from exc
    except jwt.InvalidKeyError as exc:
        raise BadSignature(f"The configured key cannot verify {algorithm} tokens.") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise MissingClaim(f"The token has no '{exc.claim}' claim.") from exc
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired() from exc
    except jwt.ImmatureSignatureError as exc:
        raise TokenNotYetValid() from exc
    except jwt.PyJWTError as exc:  # DecodeError and the rest: the token is not what it claims
        raise MalformedToken("The token could not be decoded.") from exc


def verify_token(
    token: str,
    key: object,
    *,
    algorithm: str,
    policy: VerificationPolicy,
    expected_qsh: str,
    canonical: str,
    now: float | None = None,
) -> dict[str, object]:
    """Verify a Connect JWT for one request and return its claims.

    ``algorithm`` is pinned: ``"RS256"`` with a cryptography ``RSAPublicKey``, or ``"HS256"``
    with the tenant's shared secret (``str``/``bytes``); a wrong key type is a programming error
    (``TypeError``). ``expected_qsh`` is ``query_string_hash(canonical)`` for this request;
    ``canonical`` only feeds the mismatch detail. ``now`` defaults to ``time.time()``.

    Checks, first failure wins: framing and ``alg`` (``UnsupportedAlgorithm``) -> signature ->
    required ``iss``/``iat``/``exp``/``qsh`` (+ ``aud`` if ``policy.require_aud``) -> ``exp``,
    ``iat``, ``nbf`` against ``now`` with leeway -> ``exp - iat`` <= ``max_lifetime`` -> ``aud``
    -> ``qsh`` (``context-qsh`` refused unless ``policy.allow_context_qsh``).
    """
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise ValueError(f"algorithm must be one of {SUPPORTED_ALGORITHMS}")
    if algorithm == "RS256" and not isinstance(key, RSAPublicKey):
        raise TypeError("RS256 needs a cryptography RSAPublicKey")
    if algorithm == "HS256" and not (isinstance(key, (str, bytes)) and key):
        raise TypeError("HS256 needs a non-empty shared secret (str or bytes)")

    if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES or not token.isascii():
        read_header(token)  # raises the precise MalformedToken, before PyJWT sees it
    try:
        # PyJWT parses, pins the algorithm and checks the signature; the header is read again
        # (framing, alg) only to name what went wrong, so a good token is parsed once.
        claims, header = _decode(token, key, algorithm, _REQUIRED[policy.require_aud])
    except AuthenticationFailed:
        seen = read_header(token)  # a framing fault raises its precise MalformedToken here
        if seen.alg != algorithm:
            raise UnsupportedAlgorithm(
                f"The token is signed with {_excerpt(seen.alg, 20)}; this endpoint takes only {algorithm}."
            ) from None
        raise
    _check_header(header)
    if not isinstance(claims["iss"], str):
        raise MalformedToken("The token's 'iss' claim is not a string.")
    if not claims["iss"]:
        raise MissingClaim("The token's 'iss' claim is empty.")

    current = time.time() if now is None else now
    times = {name: _time_claim(claims, name) for name in _TIME_CLAIMS if name in claims}
    exp, iat = times["exp"], times["iat"]
    if exp < current - policy.leeway:
        raise TokenExpired(f"The token expired {current - exp:.0f} s ago.")
    if iat > current + policy.leeway:
        raise TokenNotYetValid(f"The token's iat is {iat - current:.0f} s in the future.")
    if "nbf" in times and times["nbf"] > current + policy.leeway:
        raise TokenNotYetValid(f"The token's nbf is {times['nbf'] - current:.0f} s in the future.")
    if exp < iat:
        raise MalformedToken("The token's exp is before its iat.")
    if exp - iat > policy.max_lifetime:
        raise TokenLifetimeTooLong(
            f"The token lives {exp - iat:.0f} s; at most {policy.max_lifetime} s are accepted."
        )

    if policy.audiences is not None and claims.get("aud") is not None:
        if not audience_matches(claims["aud"], policy.audiences):
            expected = ", ".join(ascii(a) for a in policy.audiences)
            raise AudienceMismatch(
                f"The token's aud is {ascii(claims['aud'])[:200]}; this app accepts {expected[:200]}."
            )

    qsh = claims["qsh"]
    if not isinstance(qsh, str):
        raise MalformedToken("The token's 'qsh' claim is not a string.")
    if qsh == CONTEXT_QSH:
        if policy.allow_context_qsh:
            return claims
        raise ContextQshNotAllowed()
    if not hmac.compare_digest(qsh.encode("utf-8"), expected_qsh.encode("utf-8")):
        raise QshMismatch(
            f"The token's qsh does not match this request; the server computed the canonical "
            f"request {_excerpt(canonical, 300)}."
        )
    return claims
