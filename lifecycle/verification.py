"""The Django adapter between a request and the pure protocol module.

It turns an ``HttpRequest`` into (method, path, query, token, body), runs SPEC section 3's checks
in their order (first failure wins), and fills an :class:`AuditContext` as it learns facts, so
that the middleware can write a precise audit row whichever check fails.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured, RequestDataTooBig
from django.http import HttpRequest

from audit.records import AuditContext
from lifecycle import descriptor, fit, jwks, keys, protocol
from lifecycle.conf import connect_settings
from lifecycle.errors import (
    AppKeyMismatch,
    AuthenticationFailed,
    BodyTooLarge,
    CacheUnavailable,
    ContextQshNotAllowed,
    EventTypeMismatch,
    ForgeNotConfigured,
    ForgeTokenFailure,
    ForgeTokenMissing,
    InvalidWebhookEvent,
    InvalidWebhookIdentifier,
    IssuerMismatch,
    MalformedBody,
    MethodNotAllowed,
    MissingClaim,
    QshMismatch,
    ReplayBodyMismatch,
    SignedInstallHeaderMissing,
    SignedInstallRequired,
    SignedInstallStaleDescriptor,
    TenantHostNotAllowed,
    TenantSecretUnavailable,
    TenantSuspended,
    TenantUninstalled,
    TokenInQuery,
    TokenRejected,
    TokenSourcesDisagree,
    UnknownTenant,
    UnsupportedAlgorithm,
    UnsupportedMediaType,
)
from lifecycle.policy import Body, Policy, Qsh, Signature, TokenSource
from tenants import forge as forge_services
from tenants.crypto import SecretDecryptionError
from tenants.fields import get_secret_box
from tenants.models import ForgeInstallation, Installation
from tenants.tenant_cache import VerifiedTenant, tenant_cache

logger = logging.getLogger(__name__)

MAX_CLIENT_KEY = 255
MAX_SHARED_SECRET_BYTES = 400
REQUIRED_STRINGS = ("clientKey", "baseUrl", "key", "eventType")
OPTIONAL_STRINGS = (
    "displayUrl",
    "displayUrlServicedeskHelpCenter",
    "productType",
    "description",
    "serverVersion",
    "pluginsVersion",
    "serviceEntitlementNumber",
    "entitlementId",
    "entitlementNumber",
    "oauthClientId",
    "installationId",
)
MAX_FIELD_CHARS = 2048


@dataclass(frozen=True)
class ForgeCall:
    """A verified Forge remote call (``request.forge`` in a ``@forge_remote`` view).

    ``installation_id`` (an ARI), ``cloud_id``, ``site_url`` (UI calls), ``api_base_url`` (where
    Atlassian's APIs are called for this installation), ``account_id`` (the user of a UI call,
    else ""), ``environment_type``, ``module_key``, ``app_version``; ``installation`` (the
    ``ForgeInstallation`` row) and ``tenant`` (its Connect tenant, or None). ``system_token`` and
    ``user_token``: the ``x-forge-oauth-system`` / ``x-forge-oauth-user`` headers as
    ``lifecycle.fit.ForgeToken`` (or None): usable by the view, never in a repr, a log or a row.
    ``observed``: what knowing this installation changed (``tenants.forge.Observed``).
    """

    identity: fit.ForgeIdentity
    installation: ForgeInstallation = field(repr=False)
    observed: forge_services.Observed = field(repr=False)
    system_token: fit.ForgeToken | None = field(default=None, repr=False)
    user_token: fit.ForgeToken | None = field(default=None, repr=False)

    @property
    def installation_id(self) -> str:
        return self.identity.installation_id

    @property
    def cloud_id(self) -> str:
        return self.identity.cloud_id

    @property
    def site_url(self) -> str:
        return self.identity.site_url

    @property
    def api_base_url(self) -> str:
        return self.identity.api_base_url

    @property
    def account_id(self) -> str:
        return self.identity.account_id

    @property
    def environment_type(self) -> str:
        return self.identity.environment_type

    @property
    def module_key(self) -> str:
        return self.identity.module_key

    @property
    def app_version(self) -> str:
        return self.identity.app_version

    @property
    def tenant(self) -> Installation | None:
        """The Connect tenant of this Forge installation (Connect on Forge), or None."""
        return self.installation.tenant


@dataclass(frozen=True)
class VerifiedCall:
    """A request that passed verification: what the view may rely on."""

    event: str
    client_key: str
    claims: dict[str, Any]
    body: dict[str, Any] = field(repr=False)
    kid: str = ""
    installation: Installation | None = field(default=None, repr=False)
    token_digest: str = field(default="", repr=False)  # SHA-256 hex of the verified token
    license: str = ""  # an iframe load's "lic" parameter (active, none ...), covered by its qsh
    forge: ForgeCall | None = field(default=None, repr=False)  # a Forge remote call's identity

    @property
    def account_id(self) -> str:
        """The user's Atlassian accountId (the token's ``sub``); "" for calls with no user."""
        sub = self.claims.get("sub")
        return sub if isinstance(sub, str) else ""

    @property
    def context(self) -> dict[str, Any]:
        """The token's ``context`` claim (the module's context Jira gives); {} when absent."""
        value = self.claims.get("context")
        return value if isinstance(value, dict) else {}

    @property
    def tenant(self) -> Installation:
        """The verified, installed tenant of a policy with ``tenant=Tenant.INSTALLED``.

        ``RuntimeError`` for a call that names none (Atlassian's RS256 lifecycle calls carry the
        tenant in their body: use ``client_key``)."""
        if self.installation is None:
            raise RuntimeError(f"a {self.event} call has no verified installed tenant")
        return self.installation


class ConnectRequest(HttpRequest):
    """The type of a request a verified view receives: ``connect`` is set by the middleware."""

    connect: VerifiedCall


class IgnoredCall(Exception):
    """A call that is answered 204 and recorded as ``ignored`` without reaching the view.

    ``reason`` is the reason code of why it was not applied (empty when there is none).
    """

    def __init__(self, detail: str, reason: str = "") -> None:
        self.detail = detail
        self.reason = reason
        super().__init__(detail)


def token_digest(token: str) -> str:
    """SHA-256 hex of a token: what binds a webhook delivery to it (never the token itself)."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def token_fingerprint(token: str) -> str:
    """A short, non-reversible name for a token, fit for logs and the audit trail."""
    return token_digest(token)[:16]


def canonical_request(request: HttpRequest) -> str:
    """SPEC 1.5's canonical request for this request, relative to ``CONNECT_BASE_URL``'s path."""
    base_path = urlsplit(connect_settings.BASE_URL).path
    return protocol.canonical_request(
        request.method or "", request.path, request.META.get("QUERY_STRING", ""), base_path
    )


def audiences() -> tuple[str, ...]:
    return (connect_settings.BASE_URL, *connect_settings.EXTRA_AUDIENCES)


def claim_rules(*, require_aud: bool, allow_context_qsh: bool = False) -> protocol.VerificationPolicy:
    """The claim checks of ``protocol.verify_token``, from ``settings.CONNECT``."""
    return protocol.VerificationPolicy(
        audiences=audiences() if require_aud else None,
        leeway=connect_settings.JWT_LEEWAY,
        max_lifetime=connect_settings.JWT_MAX_LIFETIME,
        require_aud=require_aud,
        allow_context_qsh=allow_context_qsh,
    )


def verify_request_token(
    request: HttpRequest,
    token: str,
    key: object,
    *,
    algorithm: str,
    require_aud: bool,
    allow_context_qsh: bool = False,
) -> dict[str, Any]:
    """Signature and claims of ``token``, its qsh bound to this very request (SPEC 3 steps 5-6),
    or the literal ``context-qsh`` where ``allow_context_qsh``."""
    canonical = canonical_request(request)
    return protocol.verify_token(
        token,
        key,
        algorithm=algorithm,
        policy=claim_rules(require_aud=require_aud, allow_context_qsh=allow_context_qsh),
        expected_qsh=protocol.query_string_hash(canonical),
        canonical=canonical,
    )


MAX_REFERER_CHARS = 8192


def qsh_mismatch_detail(request: HttpRequest, policy: Policy, token: str) -> str:
    """For a page or context route: which request a verified token was issued for when that is
    the page that sent this one (a page token sent on with a form, a link or an AJAX call: its qsh
    is the hash of the GET in the ``Referer``), else the canonical request this server computed.
    Called only after the signature checked, so nothing here is an unsigned caller's claim."""
    canonical = protocol_excerpt(canonical_request(request), 300)
    page = _issued_for_referer(request, token)
    if page and policy.token is TokenSource.QUERY:
        return (
            f"The token was issued for {page} (the page that linked here), not for this page load "
            f"{canonical}. Jira signs each page load itself: open other pages through Jira "
            "(AP.navigator), not with a link that carries the token."
        )
    if page:
        return (
            f"The token was issued for {page} (the page that sent this request), not for {canonical}. "
            "A page token loads its page only: calls from the page take a context token "
            "(AP.context.getToken()) in the Authorization header."
        )
    if policy.token is TokenSource.QUERY:
        return (
            f"The token's qsh is not that of this page load: the server computed {canonical}. Jira "
            "signs each page load for its exact URL, so a token reused on another URL, or a proxy "
            "that changes the path or query, ends here."
        )
    return (
        f"The token's qsh is not that of this request: the server computed {canonical}. A page "
        "token loads its page only; calls from the page take a context token (AP.context.getToken())."
    )


def _issued_for_referer(request: HttpRequest, token: str) -> str:
    """The canonical GET of the ``Referer`` (quoted for a detail) when the token's qsh is its
    hash, else ""."""
    issued = protocol.unverified_claims(token).get("qsh")
    referer = request.META.get("HTTP_REFERER") or ""
    if not isinstance(issued, str) or not 0 < len(referer) <= MAX_REFERER_CHARS:
        return ""
    try:
        parts = urlsplit(referer)
        page = protocol.canonical_request(
            "GET", parts.path or "/", parts.query, urlsplit(connect_settings.BASE_URL).path
        )
    except ValueError:  # a Referer no URL parser reads ("http://[bad/x")
        return ""
    return protocol_excerpt(page, 300) if protocol.query_string_hash(page) == issued else ""


# --- Step 1: the request and its body ---------------------------------------------------------

_DIGITS = re.compile(r"[0-9]{1,15}")


def header_number(value: str | None) -> int | None:
    """A non-negative decimal header value, or None (``str.isdigit`` also accepts '²')."""
    value = (value or "").strip()
    return int(value) if _DIGITS.fullmatch(value) else None


def declared_length(request: HttpRequest) -> int | None:
    return header_number(request.META.get("CONTENT_LENGTH"))


# Bodies up to this size are parsed before the token is verified, so that a malformed one is
# named first and a rejected request's audit row shows the clientKey it claimed (Jira's lifecycle
# bodies are 1-2 KB). A larger body is parsed only after the token verifies: an anonymous request
# cannot make the server do work in proportion to what it sends.
PRE_AUTH_PARSE_BYTES = 8192


def read_json_object(request: HttpRequest, max_bytes: int, max_values: int | None = None) -> dict[str, Any]:
    """POST, ``application/json``, at most ``max_bytes``, a JSON object of at most ``max_values``
    values (see :func:`parse_json_object`); else the matching error."""
    return parse_json_object(read_json_request(request, max_bytes), max_values)


def read_json_request(request: HttpRequest, max_bytes: int) -> bytes:
    """The raw body of a POST of ``application/json`` of at most ``max_bytes``; else the error.

    The method, the type and the declared length are refused before the body is read.
    """
    if request.method != "POST":
        raise MethodNotAllowed(f"{request.method} is not accepted here; Atlassian sends POST.")
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"Content-Type {(request.content_type or '')[:60]!r} is not accepted; send application/json."
        )
    declared = declared_length(request)
    if declared is not None and declared > max_bytes:
        raise BodyTooLarge(f"The body is {declared} bytes; at most {max_bytes} are accepted here.")
    raw = request.body
    if len(raw) > max_bytes:
        raise BodyTooLarge(f"The body is {len(raw)} bytes; at most {max_bytes} are accepted here.")
    return raw


def json_values_bound(raw: bytes) -> int:
    """An upper bound on the number of values in the JSON text ``raw``: its commas plus its
    opening brackets plus one (every value but a container's first follows a comma). Counted
    in C, without parsing; punctuation inside strings only makes the bound looser."""
    return raw.count(b",") + raw.count(b"[") + raw.count(b"{") + 1


def parse_json_object(raw: bytes, max_values: int | None = None) -> dict[str, Any]:
    """UTF-8 JSON holding an object, no deeper than ``MAX_JSON_DEPTH``, without NUL or lone
    surrogates; else ``MalformedBody``.

    With ``max_values``, a body whose :func:`json_values_bound` exceeds it raises
    ``BodyTooLarge`` before any parsing: the Python objects a body becomes cost up to about
    150 bytes per value (an empty ``{}`` is 3 bytes of JSON and 64 of dict), so the value count
    bounds a request's memory together with the byte count (text costs up to about 9 times its
    size: one emoji makes a whole string 4 bytes per character).
    """
    if max_values is not None and (bound := json_values_bound(raw)) > max_values:
        raise BodyTooLarge(
            f"The body holds up to {bound} JSON values (commas and brackets counted); at most "
            f"{max_values} are accepted here."
        )
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedBody("The body is not valid UTF-8 JSON.") from exc
    if not isinstance(data, dict):
        raise MalformedBody(f"The body is a JSON {type(data).__name__}, not an object.")
    # A NUL or a lone surrogate can only come from a \u escape: strict UTF-8 decoding refuses
    # surrogates, and the parser refuses raw control characters. Without one, only the depth
    # is left to check, and none when there are fewer brackets than levels allowed.
    escapes = b"\\u" in raw
    if escapes or raw.count(b"[") + raw.count(b"{") >= MAX_JSON_DEPTH:
        check_json_text(data, strings=escapes)
    return data


MAX_JSON_DEPTH = 32


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def is_clean_text(value: str) -> bool:
    """No NUL and no lone surrogate: text every database and encoder accepts."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_json_text(data: Any, *, strings: bool = True) -> None:
    """Refuse bodies nested deeper than ``MAX_JSON_DEPTH`` or (``strings``) holding NULs or lone
    surrogates in their keys and strings; ``strings=False`` checks the depth alone.

    Walks the tree depth first with one iterator per level: memory in proportion to the depth,
    never to the number of values.
    """
    levels: list[Iterator[Any]] = [iter((data,))]  # the values of levels[-1] are at depth len(levels)
    while levels:
        for value in levels[-1]:
            if isinstance(value, dict):
                if strings and not all(is_clean_text(key) for key in value):
                    raise MalformedBody("The body holds a key with a NUL or an unpaired surrogate.")
                children: Iterator[Any] = iter(value.values())
            elif isinstance(value, list):
                children = iter(value)
            else:
                if strings and isinstance(value, str) and not is_clean_text(value):
                    raise MalformedBody("The body holds a string with a NUL or an unpaired surrogate.")
                continue
            if len(levels) >= MAX_JSON_DEPTH and len(value):  # its values would lie deeper
                raise MalformedBody(f"The body is nested deeper than {MAX_JSON_DEPTH} levels.")
            levels.append(children)
            break
        else:
            levels.pop()


def check_lifecycle_body(body: dict[str, Any], event: str, ctx: AuditContext) -> None:
    """Field presence and types, ``eventType`` against the endpoint, ``key`` against our app key.

    ``enabled``/``disabled`` bodies carry ``sharedSecret`` only when ``event`` is ``installed``.
    """
    for name in REQUIRED_STRINGS:
        value = body.get(name)
        if not isinstance(value, str) or not value:
            raise MalformedBody(f"The body's {name!r} is missing or not a non-empty string.")
    if len(body["clientKey"]) > MAX_CLIENT_KEY:
        raise MalformedBody(f"The body's 'clientKey' is longer than {MAX_CLIENT_KEY} characters.")
    if ctx.client_key != body["clientKey"]:
        ctx.verified = False  # the body's clientKey is a claim until a check binds it to the token
    ctx.client_key = body["clientKey"]
    for name in OPTIONAL_STRINGS:
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise MalformedBody(f"The body's {name!r} must be a string.")
        if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
            raise MalformedBody(f"The body's {name!r} is longer than {MAX_FIELD_CHARS} characters.")
    if event == "installed":
        secret = body.get("sharedSecret")
        if not isinstance(secret, str) or not 1 <= len(secret.encode("utf-8")) <= MAX_SHARED_SECRET_BYTES:
            raise MalformedBody(
                "The body's 'sharedSecret' is missing or not a string of "
                f"1 to {MAX_SHARED_SECRET_BYTES} bytes."
            )
    if body["eventType"] != event:
        raise EventTypeMismatch(
            f"eventType {protocol_excerpt(body['eventType'])} was sent to the {event} URL; "
            "check the lifecycle URLs in the descriptor."
        )
    if body["key"] != connect_settings.APP_KEY:
        raise AppKeyMismatch(
            f"The body's key is {protocol_excerpt(body['key'])} but this app is "
            f"{connect_settings.APP_KEY!r}; set CONNECT_APP_KEY to the installed descriptor's key."
        )


def protocol_excerpt(value: str, limit: int = 80) -> str:
    text = ascii(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- Step 7: the tenant's site -----------------------------------------------------------------


def check_tenant_base_url(base_url: str) -> None:
    """https, no user info, a plain DNS host name (not an IP) ending with an allowed suffix.

    The netloc must be exactly ``host`` or ``host:443``: characters that parsers disagree on
    (a backslash, ``%``, ``;``, whitespace) would let a URL pass here and reach another host later.
    """
    try:
        parts = urlsplit(base_url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise TenantHostNotAllowed(
            f"The tenant baseUrl {protocol_excerpt(base_url)} is not a valid URL."
        ) from exc
    if on_simulated_jira(base_url):
        return
    host = (parts.hostname or "").lower()
    netloc = parts.netloc.lower()
    problem = ""
    if parts.scheme != "https":
        problem = "is not https"
    elif parts.username is not None or parts.password is not None:
        problem = "carries user info"
    elif not host:
        problem = "has no host"
    elif _is_ip(host):
        problem = "is an IP address, not an Atlassian site"
    elif not _DNS_NAME.fullmatch(host) or netloc not in {host, f"{host}:443"} or _UNSAFE_URL.search(base_url):
        problem = "is not a plain https://host URL"
    elif not any(_host_matches(host, suffix) for suffix in connect_settings.TENANT_HOSTS):
        problem = f"is not under {', '.join(connect_settings.TENANT_HOSTS)}"
    if problem:
        advice = (
            "add the host suffix to CONNECT_TENANT_HOSTS if this site is genuine."
            if problem.startswith("is not under")
            else "Jira Cloud sites are plain https://<site> URLs; this one did not come from Jira."
        )
        raise TenantHostNotAllowed(f"The tenant baseUrl {protocol_excerpt(base_url)} {problem}; {advice}")


def on_simulated_jira(base_url: str) -> bool:
    """The simulator's loopback fake Jira (``CONNECT_SIMULATED_JIRA``, which the settings accept
    only with DEBUG on), or a path below it."""
    simulated = connect_settings.SIMULATED_JIRA
    if not simulated or not settings.DEBUG or _UNSAFE_URL.search(base_url) or "?" in base_url:
        return False
    return base_url == simulated or (base_url.startswith(simulated + "/") and "#" not in base_url)


_DNS_NAME = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
_UNSAFE_URL = re.compile(r"[\\\s\x00-\x1f\x7f]")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _host_matches(host: str, suffix: str) -> bool:
    suffix = suffix.lower()
    if suffix.startswith("."):
        return host.endswith(suffix) and len(host) > len(suffix)
    return host == suffix or host.endswith("." + suffix)


# --- Step 8: the replay guard ------------------------------------------------------------------


def guard_replay(token: str, raw_body: bytes, claims: dict[str, Any]) -> None:
    """The same token with a different body is refused; the same token and body is let through."""
    cache_key = "connect:replay:" + hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
    digest = hashlib.sha256(raw_body).hexdigest()
    exp = claims.get("exp")
    ttl = int(float(exp) - time.time()) if isinstance(exp, int | float) else 0
    ttl = max(ttl + connect_settings.JWT_LEEWAY, 1)
    try:
        add_or_get = getattr(cache, "add_or_get", None)  # connectsite.cache.RedisCache: one command
        if add_or_get is not None:
            seen = add_or_get(cache_key, digest, ttl)
        elif cache.add(cache_key, digest, ttl):
            return
        else:
            seen = cache.get(cache_key)
    except Exception as exc:  # any cache backend error: fail closed, Jira retries on 503
        logger.error("replay guard: cache unavailable (%s)", type(exc).__name__)
        raise CacheUnavailable() from exc
    if seen is not None and seen != digest:
        raise ReplayBodyMismatch(
            "This token was already presented with a different body; "
            "a lifecycle token is good for one body only."
        )


# --- One verifier, driven by the view's policy -------------------------------------------------


def verify(request: HttpRequest, policy: Policy, ctx: AuditContext, *, fresh: bool = False) -> VerifiedCall:
    """Check ``request`` against ``policy`` (SPEC section 3, first failure wins); fill ``ctx``.

    In order: the method; what of the body can be checked before the token (a small lifecycle
    body, a webhook's event name, identifier and declared size); the token from where the policy
    says; its signature and claims, with the install key (RS256, by ``kid``) or the installed
    tenant's sharedSecret (HS256); then the rest of the body, the token's ``iss`` against the
    body's ``clientKey``, and for Atlassian-signed calls the tenant's baseUrl and the replay
    guard. Raises a ``ConnectError`` (its HTTP meaning included), or :class:`IgnoredCall` for
    a policy with ``ignore_unverified`` whose call does not verify. ``fresh``: read the tenant
    from the database even where the policy would take it from the worker's tenant cache.
    """
    check_method(request, policy)
    if policy.signature is Signature.FORGE:
        return _verify_forge(request, policy, ctx)
    body = _body_before_token(request, policy, ctx)
    if policy.signature is Signature.INSTALL_KEY:
        return _verify_install_signed(request, policy, ctx, body)
    try:
        return _verify_shared_secret(
            request, policy, ctx, body, remembered=policy.remember_tenant and not fresh
        )
    except AuthenticationFailed as exc:
        if not policy.ignore_unverified:
            raise
        # Jira sends disabled after (or alongside) uninstalled, without a JWT or signed with the
        # erased secret. An unverified call of this kind changes nothing and gets the same 204
        # whatever the tenant's state, so that the answer tells an anonymous caller nothing
        # (SPEC 1.4).
        cause = exc.cause if isinstance(exc, TokenRejected) else exc
        raise IgnoredCall(
            f"{policy.event} not verified, so nothing changed: {cause.detail} Jira sends disabled "
            f"after an uninstall without a JWT or signed with the erased secret; otherwise: "
            f"{type(cause).fix}",
            reason=cause.code,
        ) from exc


_SENDERS = {Body.LIFECYCLE: "Atlassian sends POST.", Body.WEBHOOK: "Jira sends webhooks as POST."}


def check_method(request: HttpRequest, policy: Policy) -> None:
    """405 for a method the policy does not accept (bots and browsers send GET)."""
    if request.method not in policy.methods:
        sender = _SENDERS.get(policy.body, f"this endpoint takes {', '.join(policy.methods)}.")
        raise MethodNotAllowed(f"{request.method} is not accepted here; {sender}", allowed=policy.methods)


def _body_before_token(request: HttpRequest, policy: Policy, ctx: AuditContext) -> dict[str, Any] | None:
    """What of the body is checked before the token: cheap checks only, never in proportion to
    what an anonymous caller sends beyond ``PRE_AUTH_PARSE_BYTES``."""
    if policy.body is Body.LIFECYCLE:
        return _lifecycle_body(request, policy.event, ctx, early=True)
    if policy.body is Body.WEBHOOK:
        match = request.resolver_match
        if match is None or "event" not in match.kwargs:
            raise ImproperlyConfigured(
                f"The webhook policy {policy.event!r} needs a route with an <event> parameter, like "
                "'webhooks/<str:event>': the event name is part of the delivery's dedupe key."
            )
        url_event = str(match.kwargs["event"])
        check_webhook_names(url_event, request.headers.get("X-Atlassian-Webhook-Identifier", "").strip())
        declared = declared_length(request)
        if declared is not None and declared > connect_settings.WEBHOOK_MAX_BODY:
            limit = connect_settings.WEBHOOK_MAX_BODY
            raise BodyTooLarge(f"The body is {declared} bytes; webhooks are accepted up to {limit}.")
    return None


def _body_after_token(
    request: HttpRequest, policy: Policy, ctx: AuditContext, body: dict[str, Any] | None
) -> dict[str, Any]:
    """The whole checked body, once the token has verified (``{}`` for a policy with no body)."""
    if body is not None:
        return body
    if policy.body is Body.LIFECYCLE:
        late = _lifecycle_body(request, policy.event, ctx, early=False)
        assert late is not None  # noqa: S101 - not parsed early, so parsed now
        return late
    if policy.body is Body.WEBHOOK:
        return read_json_object(
            request, connect_settings.WEBHOOK_MAX_BODY, connect_settings.WEBHOOK_MAX_JSON_VALUES
        )
    return {}


def read_token(request: HttpRequest, policy: Policy) -> str:
    """The JWT from where ``policy.token`` says: the Authorization header, or ``?jwt=``."""
    header = request.META.get("HTTP_AUTHORIZATION")
    in_query = (
        request.GET.getlist("jwt")
        if policy.token is TokenSource.QUERY or policy.qsh is Qsh.CONTEXT_ALLOWED
        else []
    )
    if len(in_query) > 1:
        raise TokenSourcesDisagree(f"The request carries {len(in_query)} jwt query parameters.")
    if policy.token is TokenSource.QUERY:
        token = protocol.extract_query_token(in_query[0] if in_query else None)
        if header and protocol.extract_token(header) != token:
            raise TokenSourcesDisagree(
                "The jwt query parameter and the Authorization header carry different tokens."
            )
        return token
    if header is None and in_query:
        # A context route called with ?jwt= (a form or a link from the page): verified all the
        # same, to say what the token is (a page token: qsh_mismatch naming its page), then
        # refused (TokenInQuery): a token in a URL ends up in logs.
        return protocol.extract_query_token(in_query[0])
    token = protocol.extract_token(header)
    if in_query and in_query[0].strip() != token:
        raise TokenSourcesDisagree(
            "The jwt query parameter and the Authorization header carry different tokens."
        )
    return token


def _lifecycle_body(
    request: HttpRequest, event: str, ctx: AuditContext, *, early: bool
) -> dict[str, Any] | None:
    """The checked lifecycle body: parsed before the token when small (``early``), else after;
    None when this is not its turn."""
    raw = read_json_request(request, connect_settings.LIFECYCLE_MAX_BODY)
    if (len(raw) <= PRE_AUTH_PARSE_BYTES) != early:
        return None
    body = parse_json_object(raw)
    ctx.body = body
    check_lifecycle_body(body, event, ctx)
    return body


def _verify_install_signed(
    request: HttpRequest, policy: Policy, ctx: AuditContext, body: dict[str, Any] | None
) -> VerifiedCall:
    """SPEC section 3, steps 2 to 8, for a signed-install ``installed``/``uninstalled`` callback.

    A body over ``PRE_AUTH_PARSE_BYTES`` is parsed and checked (step 1) only after the token's
    signature and claims (steps 2-5): no work in proportion to an anonymous request's size.
    """
    event = policy.event
    authorization = request.META.get("HTTP_AUTHORIZATION")
    if not authorization:
        if descriptor.signed_install_enabled():
            raise SignedInstallHeaderMissing(
                f"The {event} callback had no Authorization header, yet the served descriptor has "
                f"signed install on. {SignedInstallHeaderMissing.fix}"
            )
        raise SignedInstallRequired(
            f"The {event} callback carried no JWT, which Jira only sends without signed install: "
            'add "apiMigrations": {"signed-install": true} to atlassian-connect.json and reinstall.'
        )
    token = read_token(request, policy)
    ctx.token_fingerprint = token_fingerprint(token)
    header = protocol.read_header(token)
    if header.alg == "HS256":
        if descriptor.signed_install_enabled():
            raise SignedInstallStaleDescriptor(
                f"The {event} callback is signed with HS256 (the tenant's own sharedSecret), which "
                f"proves nothing, yet the served descriptor has signed install on. "
                f"{SignedInstallStaleDescriptor.fix}"
            )
        raise SignedInstallRequired(
            f"The {event} callback is signed with HS256 (the tenant's own sharedSecret), which proves "
            'nothing: add "apiMigrations": {"signed-install": true} to atlassian-connect.json '
            "so Atlassian signs it with RS256, then reinstall."
        )
    if header.alg != "RS256":
        raise UnsupportedAlgorithm(
            f"alg {protocol_excerpt(header.alg, 24)} is not accepted; "
            f"{event} must be RS256-signed by Atlassian."
        )
    kid = protocol.validate_kid(header.kid)
    ctx.kid = kid
    key = keys.provider.get(kid, source=ctx.remote_addr)
    claims = verify_request_token(request, token, key, algorithm="RS256", require_aud=True)
    body = _body_after_token(request, policy, ctx, body)
    if claims.get("iss") != body["clientKey"]:
        raise IssuerMismatch(
            f"The token's iss {protocol_excerpt(str(claims.get('iss')))} is not the body's clientKey "
            f"{protocol_excerpt(body['clientKey'])}."
        )
    ctx.verified = True  # Atlassian signed this token for the body's clientKey
    check_tenant_base_url(body["baseUrl"])
    guard_replay(token, request.body, claims)
    return VerifiedCall(event, body["clientKey"], claims, body, kid=kid, token_digest=token_digest(token))


def _verify_forge(request: HttpRequest, policy: Policy, ctx: AuditContext) -> VerifiedCall:
    """A Forge remote call (SPEC 6.4; Forge remote essentials): the FIT in ``Authorization:
    Bearer``, RS256 with the Forge JWKS key its kid names, ``iss`` ``forge/invocation-token``,
    ``aud`` and ``app.id`` exactly ``FORGE_APP_ID``, times with the leeway and at most
    ``FORGE_JWT_MAX_LIFETIME``, ``app.installationId`` present; then an event's body (after the
    token: an anonymous caller gets no parsing). Every token failure is the opaque 401
    ``invalid_token`` (``TokenRejected``), its reason in the audit row."""
    settings_ = connect_settings
    if not settings_.forge_enabled:
        raise ForgeNotConfigured()
    if policy.body is Body.FORGE_EVENT:
        declared = declared_length(request)
        if declared is not None and declared > settings_.FORGE_EVENT_MAX_BODY:
            raise BodyTooLarge(
                f"The body is {declared} bytes; Forge events are accepted up to "
                f"{settings_.FORGE_EVENT_MAX_BODY}."
            )
    try:
        token = _bearer_token(request)
        ctx.token_fingerprint = token_fingerprint(token)
        kid = fit.read_header(token)
        ctx.kid = kid[:255]
        key = jwks.provider.get(kid)
        claims = fit.decode(
            token,
            key,
            app_id=settings_.FORGE_APP_ID,
            leeway=settings_.JWT_LEEWAY,
            max_lifetime=settings_.FORGE_JWT_MAX_LIFETIME,
        )
    except ForgeTokenFailure as exc:
        raise TokenRejected(exc, forge=True) from exc
    identity = fit.ForgeIdentity.from_claims(claims)
    ctx.client_key = identity.installation_id[:255]
    ctx.verified = True
    # A FIT covers neither the request nor its OAuth headers: the first use binds them (the
    # replay guard, shared by every process), so a captured FIT cannot carry anything else.
    if policy.one_use_token:
        try:
            binding = _forge_binding(request)
        except RequestDataTooBig:
            raise BodyTooLarge(
                "The body is larger than Django's DATA_UPLOAD_MAX_MEMORY_SIZE "
                f"({settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes): raise it, or send less."
            ) from None
        try:
            guard_replay(token, binding, claims)
        except ReplayBodyMismatch as exc:
            raise TokenRejected(exc, forge=True) from exc
        except CacheUnavailable as exc:
            raise CacheUnavailable(
                "The Django cache (replay guard) could not be reached. Check CACHE_URL and the cache "
                "server; Forge retries events, not UI calls."
            ) from exc
    body: dict[str, Any] = {}
    if policy.body is Body.FORGE_EVENT:
        body = read_json_object(
            request, settings_.FORGE_EVENT_MAX_BODY, connect_settings.WEBHOOK_MAX_JSON_VALUES
        )
    subject = {item.name: getattr(identity, item.name) for item in fields(forge_services.FitSubject)}
    observed = forge_services.observe(forge_services.FitSubject(**subject))
    forge = ForgeCall(
        identity,
        observed.installation,
        observed,
        system_token=fit.ForgeToken.from_header(request.headers.get("x-forge-oauth-system")),
        user_token=fit.ForgeToken.from_header(request.headers.get("x-forge-oauth-user")),
    )
    return VerifiedCall(
        policy.event,
        identity.installation_id,
        claims,
        body,
        kid=kid,
        token_digest=token_digest(token),
        forge=forge,
    )


def _forge_binding(request: HttpRequest) -> bytes:
    """What a FIT's first use binds it to: the method, the path and query, the body and the
    ``x-forge-oauth-*`` headers (hashed by the replay guard; never stored as such)."""
    parts = [
        request.method or "",
        request.get_full_path(),
        request.headers.get("x-forge-oauth-system", ""),
        request.headers.get("x-forge-oauth-user", ""),
    ]
    return "\x00".join(parts).encode("utf-8", "replace") + b"\x00" + request.body


def _bearer_token(request: HttpRequest) -> str:
    """The FIT of ``Authorization: Bearer <FIT>`` (the scheme case-insensitive, RFC 6750)."""
    header = request.META.get("HTTP_AUTHORIZATION") or ""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ForgeTokenMissing()
    return token.strip()


_DECOY_SECRET = secrets.token_urlsafe(32)  # per process; never any tenant's
_decoy: dict[str, str] = {}


def _decoy_work(request: HttpRequest, token: str) -> None:
    """The work of a known tenant's check (decrypt a secret, check the signature), then nothing.

    Without it an unknown clientKey answered measurably faster than a known one with a wrong
    signature, which told a caller which client keys exist.
    """
    box = get_secret_box()
    try:
        ciphertext = _decoy.setdefault("sealed", box.encrypt(_DECOY_SECRET, "connect:decoy"))
        box.decrypt(ciphertext, "connect:decoy")
    except SecretDecryptionError:  # the keys changed since: the attempt cost the same
        _decoy.clear()
    try:
        verify_request_token(request, token, _DECOY_SECRET, algorithm="HS256", require_aud=False)
    except AuthenticationFailed:
        pass


class _RememberedSecretFailed(Exception):
    """The token did not verify with the tenant's remembered secret: verify it again from the row."""


def _tenant_and_secret(request: HttpRequest, token: str, issuer: str) -> tuple[Installation, str]:
    """The installed tenant ``issuer`` from the database, and its decrypted secret; or
    ``UnknownTenant``/``TenantUninstalled`` (after the decoy work) or ``TenantSecretUnavailable``."""
    installation = Installation.objects.for_verification(issuer)
    if installation is None:
        _decoy_work(request, token)
        raise UnknownTenant(f"No installation has clientKey {protocol_excerpt(issuer)}.")
    if not installation.is_installed or not installation.has_secret:
        _decoy_work(request, token)
        raise TenantUninstalled(f"The tenant {protocol_excerpt(issuer)} has uninstalled the app.")
    try:
        return installation, installation.reveal_shared_secret()
    except SecretDecryptionError as exc:
        logger.error("tenant %r: stored secret does not decrypt: %s", issuer, exc)
        raise TenantSecretUnavailable() from exc


def _verify_shared_secret(
    request: HttpRequest,
    policy: Policy,
    ctx: AuditContext,
    body: dict[str, Any] | None,
    *,
    remembered: bool,
    reread: bool = False,
) -> VerifiedCall:
    """HS256 pinned; the tenant by ``iss`` only; installed; signature, time, lifetime and qsh
    checked; then the body, whose ``clientKey`` (if it has one) must be the ``iss``.
    ``remembered``: the tenant and its secret may come from ``tenant_cache`` (and go there once
    the token verified with them); the caller then checks the row is unchanged when it writes.
    ``reread``: the remembered secret just failed; read the tenant from the database this time."""
    token = read_token(request, policy)
    ctx.token_fingerprint = token_fingerprint(token)
    header = protocol.read_header(token)
    if header.alg != "HS256":
        raise UnsupportedAlgorithm(
            f"alg {protocol_excerpt(header.alg, 24)} is not accepted here; "
            "Jira signs webhooks, enabled and disabled with HS256 and the tenant's sharedSecret."
        )
    try:
        issuer = protocol.unverified_claims(token).get("iss")
        if not isinstance(issuer, str) or not issuer or not is_clean_text(issuer):
            raise MissingClaim("The token has no string 'iss' naming the tenant's clientKey.")
        ctx.client_key = ctx.client_key or issuer[:MAX_CLIENT_KEY]
        known = tenant_cache.get(issuer) if remembered and not reread else None
        if known is not None:
            installation, secret = known.installation, known.shared_secret
        else:
            installation, secret = _tenant_and_secret(request, token, issuer)
        try:
            claims = verify_request_token(
                request,
                token,
                secret,
                algorithm="HS256",
                require_aud=False,
                allow_context_qsh=policy.qsh is Qsh.CONTEXT_ALLOWED,
            )
        except AuthenticationFailed:
            if known is None:
                raise
            # A remembered secret may be an old one (a reinstall gave a new one): forget it and
            # verify from the database, whose answer (and audit reason) stands.
            tenant_cache.drop(issuer)
            raise _RememberedSecretFailed() from None
        # The issuer is proven; the row's clientKey is, when it is the issuer (not a body's claim).
        ctx.verified = ctx.client_key == issuer
        if remembered and known is None and not installation.suspended:
            tenant_cache.put(issuer, VerifiedTenant(installation, secret))
    except _RememberedSecretFailed:
        return _verify_shared_secret(request, policy, ctx, body, remembered=True, reread=True)
    except AuthenticationFailed as exc:
        # Unknown tenant, bad signature, expiry, a wrong qsh...: one answer outside, the true
        # reason in the audit row (SPEC section 3), so callers cannot probe client keys. A qsh
        # that does not fit is checked after the signature and times, so its caller holds a
        # genuine token of this tenant: page and context routes tell it why.
        if policy.explains_qsh and isinstance(exc, QshMismatch):
            raise QshMismatch(qsh_mismatch_detail(request, policy, token)) from exc
        if policy.explains_qsh and isinstance(exc, ContextQshNotAllowed):
            raise
        raise TokenRejected(exc) from exc
    if policy.token is not TokenSource.QUERY and request.META.get("HTTP_AUTHORIZATION") is None:
        raise TokenInQuery(
            "The token came in ?jwt=; this route reads the Authorization header only (context tokens)."
        )
    if installation.suspended:  # said only to a caller who proved it holds the tenant's secret
        raise TenantSuspended(
            f"The tenant {protocol_excerpt(installation.client_key)} is suspended by this app's operators; "
            "its webhooks and enabled/disabled calls are refused until it is resumed in Django admin."
        )
    body = _body_after_token(request, policy, ctx, body)
    if policy.tenant_body and claims.get("iss") != body["clientKey"]:
        raise TokenRejected(
            IssuerMismatch(
                f"The token's iss {protocol_excerpt(str(claims.get('iss')))} is not the body's "
                f"clientKey {protocol_excerpt(body['clientKey'])}."
            )
        )
    return VerifiedCall(
        policy.event,
        installation.client_key,
        claims,
        body,
        installation=installation,
        token_digest=token_digest(token),
        license=str(request.GET.get("lic", ""))[:32] if policy.token is TokenSource.QUERY else "",
    )


MAX_EVENT_CHARS = 64
MAX_IDENTIFIER_CHARS = 255
_PRINTABLE = re.compile(r"[\x21-\x7e\u00a0-\U0010ffff]+")


def check_webhook_names(event: str, identifier: str) -> None:
    """The event (from the URL) and the identifier (a header) are dedupe keys: never truncated,
    so refused when too long; refused when they hold control characters (or NUL, which
    PostgreSQL cannot store)."""
    if len(event) > MAX_EVENT_CHARS or not _PRINTABLE.fullmatch(event) or not is_clean_text(event):
        raise InvalidWebhookEvent(
            f"The event name {protocol_excerpt(event, 40)} is not 1-{MAX_EVENT_CHARS} printable characters."
        )
    if identifier and (
        len(identifier) > MAX_IDENTIFIER_CHARS
        or not _PRINTABLE.fullmatch(identifier)
        or not is_clean_text(identifier)
    ):
        raise InvalidWebhookIdentifier(
            f"X-Atlassian-Webhook-Identifier {protocol_excerpt(identifier, 40)} is not 1-"
            f"{MAX_IDENTIFIER_CHARS} printable characters."
        )
