"""The public decorator that puts a view behind the verification middleware: ``verified(policy)``.

The middleware (``lifecycle.middleware.ConnectVerificationMiddleware``) reads the view's policy
in ``process_view``, verifies the request against it, then runs the view. A view declared here
that runs without the middleware fails closed with ``ImproperlyConfigured`` naming the fix::

    from lifecycle.decorators import verified
    from lifecycle.policy import WEBHOOK

    @verified(WEBHOOK)
    def my_webhook(request, event):
        call = request.connect  # a lifecycle.verification.VerifiedCall
        ...
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, cast

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_cache_control
from django.views.decorators.csrf import csrf_exempt

from lifecycle import policy as policies
from lifecycle.framing import allow_framing_by, allow_framing_by_tenant_sites
from lifecycle.policy import Policy
from lifecycle.verification import ConnectRequest

MIDDLEWARE_PATH = "lifecycle.middleware.ConnectVerificationMiddleware"

View = Callable[..., HttpResponse]


def verified(policy: Policy) -> Callable[[View], View]:
    """Declare the :class:`~lifecycle.policy.Policy` a view's requests must satisfy.

    The view then sees ``request.connect`` (a ``VerifiedCall``: the client key, the claims, the
    checked body, the tenant) and may return ``audit.records.respond(Outcome(...))`` to say what
    the call did; any other response below 400 counts as accepted, and a 4xx or 5xx response is
    recorded as rejected with reason ``http_<status>``. CSRF does not apply: the JWT is what
    authenticates these requests, and Jira sends no CSRF token.
    """

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def guarded(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            if getattr(request, "connect", None) is None:
                raise ImproperlyConfigured(
                    f"{view.__qualname__} needs the Connect verification middleware: "
                    f"add {MIDDLEWARE_PATH!r} to MIDDLEWARE."
                )
            return view(request, *args, **kwargs)

        cast(Any, guarded).connect_policy = policy  # what the middleware reads
        return csrf_exempt(guarded)

    return decorate


def connect_page(*, event: str = "page") -> Callable[[View], View]:
    """An iframe module's page: ``@connect_page()`` or ``@connect_page(event="page:issue-panel")``.

    Verified as ``lifecycle.policy.page``: GET, ``?jwt=`` signed with the tenant's secret, this
    request's ``qsh``. The view sees ``request.connect`` with ``tenant``, ``account_id``,
    ``context`` and ``license``. Its response may be framed only by the tenant's own site: a
    ``Content-Security-Policy: frame-ancestors`` naming its baseUrl and displayUrl (every other
    response keeps ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``).
    """

    def decorate(inner: View) -> View:
        @functools.wraps(inner)
        def framed(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            response = inner(request, *args, **kwargs)
            tenant = cast(ConnectRequest, request).connect.tenant
            return allow_framing_by(response, [tenant.base_url, tenant.display_url])

        return verified(policies.page(event))(framed)

    return decorate


def connect_context(
    *, event: str = "context", methods: tuple[str, ...] = ("GET", "POST", "PUT", "DELETE")
) -> Callable[[View], View]:
    """A call from the app's own iframe with a context token (``AP.context.getToken()``):
    ``@connect_context()`` or ``@connect_context(event="context:data", methods=("GET",))``.

    Verified as ``lifecycle.policy.context``: the Authorization header, the tenant's secret, a
    ``qsh`` of ``context-qsh`` (or of this request). Never accepted on lifecycle, webhook or page
    routes.
    """
    return verified(policies.context(event, methods))


def forge_remote(
    *,
    event: str = "forge:remote",
    methods: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE"),
    one_use_token: bool = True,
) -> Callable[[View], View]:
    """A view Forge calls with ``invokeRemote`` (a UI module's resolver, or a Forge function):
    ``@forge_remote()`` or ``@forge_remote(event="forge:settings", methods=("GET",))``.

    Verified as ``lifecycle.policy.forge_remote``: a Forge Invocation Token in ``Authorization:
    Bearer``, RS256 with the Forge JWKS, ``aud`` = ``FORGE_APP_ID``. The view sees
    ``request.forge`` (a ``lifecycle.verification.ForgeCall``: installation id, cloud id, site,
    accountId, the Forge installation and its Connect tenant, and the ``x-forge-oauth-system`` /
    ``x-forge-oauth-user`` tokens, which it may use with ``outbound.forge.ForgeClient`` and must
    never log or store). Refusals are the opaque 401 ``invalid_token``, the reason in the audit.
    A FIT's first use binds it to its request (method, path, body, OAuth headers), so that a
    captured one carries nothing else; ``one_use_token=False`` for a view the browser calls with
    ``requestRemote``, whose FIT may serve several requests. The body is read into memory (up
    to Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``; larger: 413 ``body_too_large``).
    """

    def decorate(inner: View) -> View:
        @functools.wraps(inner)
        def with_forge(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            cast(Any, request).forge = cast(ConnectRequest, request).connect.forge
            return inner(request, *args, **kwargs)

        return verified(policies.forge_remote(event, methods, one_use_token))(with_forge)

    return decorate


SHELL_MAX_AGE = 3600  # seconds a cacheable page's shell may be cached by browsers and CDNs


def connect_shell(view: View) -> View:
    """A cacheable iframe's shell (a module declared ``"cacheable": true``): Jira loads it with
    no token, so it must hold nothing about a tenant or a user; its data comes from
    ``@connect_context`` calls made with ``AP.context.getToken()``.

    GET only (others: 405); the response is cacheable for ``SHELL_MAX_AGE`` seconds and may be
    framed by any site under ``CONNECT_TENANT_HOSTS`` (no tenant is known yet). Nothing from the
    request reaches the view's response through this decorator.
    """

    @functools.wraps(view)
    def shell(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            response = HttpResponse(status=405)
            response["Allow"] = "GET, HEAD"
            return response
        response = view(request, *args, **kwargs)
        patch_cache_control(response, public=True, max_age=SHELL_MAX_AGE)
        return allow_framing_by_tenant_sites(response)

    return shell
