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
from django.views.decorators.csrf import csrf_exempt

from lifecycle import policy as policies
from lifecycle.framing import allow_framing_by
from lifecycle.policy import Policy
from lifecycle.verification import ConnectRequest

MIDDLEWARE_PATH = "lifecycle.middleware.ConnectVerificationMiddleware"

View = Callable[..., HttpResponse]


def verified(policy: Policy) -> Callable[[View], View]:
    """Declare the :class:`~lifecycle.policy.Policy` a view's requests must satisfy.

    The view then sees ``request.connect`` (a ``VerifiedCall``: the client key, the claims, the
    checked body, the tenant) and may return ``audit.records.respond(Outcome(...))`` to say what
    the call did; any other response counts as accepted. CSRF does not apply: the JWT is what
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
