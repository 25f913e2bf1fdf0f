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

from lifecycle.policy import Policy

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
