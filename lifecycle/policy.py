"""What a view accepts: one :class:`Policy` per kind of Connect call, checked by one verifier.

A view declares its policy with ``lifecycle.decorators.verified(policy)``; the middleware hands
the request and the policy to ``lifecycle.verification.verify``. A new kind of call (an iframe
page, a context token, a Forge remote) is a new policy, not a new branch. Pure: no Django.

Protocol facts behind the rules (Atlassian, "Understanding JWT for Connect apps", "Connect app
lifecycle", "Webhooks"): ``installed``/``uninstalled`` with signed install are RS256 tokens from
Atlassian's key server (by ``kid``, ``aud`` the app's baseUrl); everything else Jira sends is
HS256 with the tenant's sharedSecret; iframe loads carry the token in the ``jwt`` query
parameter; a context token's ``qsh`` is the literal ``context-qsh``, bound to no request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class TokenSource(StrEnum):
    """Where the JWT is read from."""

    AUTHORIZATION = "authorization_header"  # "Authorization: JWT <token>": lifecycle, webhooks
    QUERY = "jwt_query_parameter"  # "?jwt=<token>": iframe page loads
    BEARER = "bearer_header"  # "Authorization: Bearer <FIT>": Forge remote calls


class Signature(StrEnum):
    """Who signs the token, and so which algorithm and key verify it."""

    INSTALL_KEY = "rs256_install_key"  # Atlassian, RS256, public key fetched by kid
    SHARED_SECRET = "hs256_shared_secret"  # noqa: S105 - a name: Jira for a tenant, HS256, its sharedSecret
    FORGE = "rs256_forge_jwks"  # Forge, RS256, key by kid from the Forge JWKS (a FIT)


class Qsh(StrEnum):
    """What the ``qsh`` claim must be."""

    REQUEST = "request"  # the hash of this very request (method, path, query)
    CONTEXT_ALLOWED = "context_allowed"  # that, or "context-qsh" (a context token)


class Tenant(StrEnum):
    """Which tenant the call must come from."""

    ANY = "any"  # none looked up before verification (Atlassian's RS256 lifecycle calls)
    INSTALLED = "installed"  # the token's iss: installed, with a secret, not suspended
    FORGE = "forge_installation"  # the FIT's app.installationId (tenants.forge.observe)


class Body(StrEnum):
    """What the request body must be."""

    NONE = "none"  # not read
    LIFECYCLE = "lifecycle"  # a lifecycle JSON object (at most LIFECYCLE_MAX_BODY), checked
    WEBHOOK = "webhook"  # a JSON object (at most WEBHOOK_MAX_BODY and WEBHOOK_MAX_JSON_VALUES)
    FORGE_EVENT = "forge_event"  # a JSON object (at most FORGE_EVENT_MAX_BODY), read after the FIT


class Render(StrEnum):
    """How a refusal is answered: both carry the reason code and the fix."""

    JSON = "json"  # {"error": code, "detail": ...}: machine calls
    HTML = "html"  # a small page: iframe loads, seen by a person


_EVENT = re.compile(r"[a-z][a-z0-9_:.-]{0,31}")
_METHOD = re.compile(r"[A-Z]{3,7}")


@dataclass(frozen=True)
class Policy:
    """The rules of one kind of Connect call.

    ``event``: the name its audit rows carry (1-32 of ``a-z0-9_:.-``). ``methods``: the HTTP
    methods accepted (others: 405). ``ignore_unverified``: a call that fails verification is
    answered 204 and recorded as ``ignored`` instead of refused (Jira's ``disabled``, which it
    sends after an uninstall unsigned or signed with the erased secret). ``atomic``: the view
    runs in one database transaction with its accepted audit row (off for webhooks, whose
    delivery row is their record and is written in one statement). ``remember_tenant``: take the
    tenant from the worker's ``tenants.tenant_cache`` when it is there; the view must then
    store its work with a check that the row has not changed (webhooks: the delivery's INSERT),
    raising ``tenants.deliveries.TenantChanged`` otherwise, and the middleware verifies again
    from the database.

    Raises ``ValueError`` for a combination the protocol forbids: an Atlassian-signed call that
    is not a lifecycle body in the Authorization header, a ``context-qsh`` on a lifecycle or
    webhook route, a shared-secret call without an installed tenant.
    """

    event: str
    signature: Signature
    methods: tuple[str, ...] = ("POST",)
    token: TokenSource = TokenSource.AUTHORIZATION
    qsh: Qsh = Qsh.REQUEST
    tenant: Tenant = Tenant.INSTALLED
    body: Body = Body.NONE
    errors: Render = Render.JSON
    ignore_unverified: bool = False
    atomic: bool = True
    remember_tenant: bool = False
    # Forge calls: a FIT's first use binds it to this request (method, path, body, OAuth headers).
    one_use_token: bool = True

    def __post_init__(self) -> None:
        if not _EVENT.fullmatch(self.event):
            raise ValueError(f"event {self.event!r}: 1-32 of a-z, 0-9, '_', ':', '.', '-'")
        if not self.methods or not all(_METHOD.fullmatch(method) for method in self.methods):
            raise ValueError(f"methods {self.methods!r}: upper-case HTTP method names")
        if self.signature is Signature.INSTALL_KEY and (
            self.body is not Body.LIFECYCLE or self.token is not TokenSource.AUTHORIZATION
        ):
            raise ValueError("Atlassian signs only lifecycle bodies, in the Authorization header")
        if self.signature is Signature.INSTALL_KEY and self.tenant is not Tenant.ANY:
            raise ValueError("an install-key call names its tenant in its body: tenant=Tenant.ANY")
        if self.signature is Signature.SHARED_SECRET and self.tenant is not Tenant.INSTALLED:
            raise ValueError("a shared-secret call needs its installed tenant's secret")
        if self.body in (Body.LIFECYCLE, Body.WEBHOOK) and self.methods != ("POST",):
            raise ValueError("Jira POSTs lifecycle bodies and webhooks: methods=('POST',)")
        if self.qsh is Qsh.CONTEXT_ALLOWED and self.body in (Body.LIFECYCLE, Body.WEBHOOK):
            raise ValueError("context-qsh is never accepted on lifecycle or webhook routes")
        forge = (
            self.signature is Signature.FORGE,
            self.token is TokenSource.BEARER,
            self.tenant is Tenant.FORGE,
        )
        if any(forge) and not all(forge):
            raise ValueError(
                "a Forge call is signature=FORGE, token=BEARER and tenant=FORGE, all three or none"
            )
        if self.body is Body.FORGE_EVENT and (
            self.signature is not Signature.FORGE or self.methods != ("POST",)
        ):
            raise ValueError("Forge POSTs its events with a FIT: signature=FORGE, methods=('POST',)")
        if self.signature is Signature.FORGE and self.body not in (Body.NONE, Body.FORGE_EVENT):
            raise ValueError("a Forge call has no Connect lifecycle or webhook body")
        if self.ignore_unverified and self.signature is not Signature.SHARED_SECRET:
            raise ValueError("only a shared-secret call can be ignored when it does not verify")

    @property
    def tenant_body(self) -> bool:
        """The body names the tenant (``clientKey``), which the token's ``iss`` must match."""
        return self.body is Body.LIFECYCLE

    @property
    def explains_qsh(self) -> bool:
        """A token that verifies but is bound to another request is answered with that reason
        (``qsh_mismatch``, ``context_qsh_not_allowed``) rather than the opaque ``invalid_token``:
        on page and context routes, whose callers are the app's own pages and its developers.
        Lifecycle and webhook routes keep one answer for every failure (SPEC section 3)."""
        return self.body is Body.NONE and (self.token is TokenSource.QUERY or self.qsh is Qsh.CONTEXT_ALLOWED)


# The routes Jira calls (SPEC section 3 and the descriptor's lifecycle and webhook modules).
INSTALLED = Policy("installed", Signature.INSTALL_KEY, tenant=Tenant.ANY, body=Body.LIFECYCLE)
UNINSTALLED = Policy("uninstalled", Signature.INSTALL_KEY, tenant=Tenant.ANY, body=Body.LIFECYCLE)
ENABLED = Policy("enabled", Signature.SHARED_SECRET, body=Body.LIFECYCLE)
DISABLED = Policy("disabled", Signature.SHARED_SECRET, body=Body.LIFECYCLE, ignore_unverified=True)
WEBHOOK = Policy("webhook", Signature.SHARED_SECRET, body=Body.WEBHOOK, atomic=False, remember_tenant=True)


def page(event: str = "page") -> Policy:
    """An iframe module's URL as Jira loads it: GET, the token in ``?jwt=`` (HS256, the tenant's
    secret, ``qsh`` of this GET), refusals as a small HTML page. Not atomic: a page that calls
    Jira must not hold a database transaction (on SQLite, the write lock) while it waits; a view
    that writes opens its own (``transaction.atomic()``)."""
    return Policy(
        event,
        Signature.SHARED_SECRET,
        methods=("GET",),
        token=TokenSource.QUERY,
        errors=Render.HTML,
        atomic=False,
    )


def context(event: str = "context", methods: tuple[str, ...] = ("GET", "POST", "PUT", "DELETE")) -> Policy:
    """A call from the app's own iframe with a context token (``AP.context.getToken()``: ``qsh``
    is ``context-qsh``) in the Authorization header; a request-bound token is accepted too. Not
    atomic, like :func:`page`: such calls often wait on Jira."""
    return Policy(event, Signature.SHARED_SECRET, methods=methods, qsh=Qsh.CONTEXT_ALLOWED, atomic=False)


# Forge remote calls (SPEC 6.4): a Forge Invocation Token, verified with the Forge JWKS.
FORGE_EVENTS = Policy(
    "forge:event",
    Signature.FORGE,
    token=TokenSource.BEARER,
    tenant=Tenant.FORGE,
    body=Body.FORGE_EVENT,
    atomic=False,
)


def forge_remote(
    event: str = "forge:remote",
    methods: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE"),
    one_use_token: bool = True,
) -> Policy:
    """A call from the app's Forge side (``invokeRemote`` from a UI module or a function): a
    FIT in ``Authorization: Bearer``. Not atomic: such calls often wait on Atlassian's APIs.
    ``one_use_token=False`` for a view the browser calls with ``requestRemote``, whose FIT the
    bridge may reuse for several requests (and which carries no OAuth tokens)."""
    return Policy(
        event,
        Signature.FORGE,
        methods=methods,
        token=TokenSource.BEARER,
        tenant=Tenant.FORGE,
        atomic=False,
        one_use_token=one_use_token,
    )
