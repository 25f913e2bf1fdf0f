"""Markers that put a view behind the verification middleware.

The middleware (``lifecycle.middleware.ConnectVerificationMiddleware``) reads the marker in
``process_view`` and verifies the request before the view runs. A marked view that runs without
the middleware fails closed with ``ImproperlyConfigured`` naming the fix.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

MIDDLEWARE_PATH = "lifecycle.middleware.ConnectVerificationMiddleware"

View = Callable[..., HttpResponse]


@dataclass(frozen=True)
class ConnectMarker:
    """How the middleware verifies a view, and whether an accepted call gets an audit row.

    ``kind``: ``"lifecycle"`` (RS256, signed by Atlassian), ``"tenant_lifecycle"`` (HS256,
    enabled/disabled) or ``"webhook"`` (HS256). Accepted webhooks are recorded as
    ``WebhookDelivery`` rows instead of audit rows; rejected ones are audited like the rest.
    """

    kind: str
    event: str
    audit_accepted: bool = True


def _mark(kind: str, event: str, audit_accepted: bool = True) -> Callable[[View], View]:
    def decorate(view: View) -> View:
        @functools.wraps(view)
        def guarded(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            if getattr(request, "connect", None) is None:
                raise ImproperlyConfigured(
                    f"{view.__qualname__} needs the Connect verification middleware: "
                    f"add {MIDDLEWARE_PATH!r} to MIDDLEWARE."
                )
            return view(request, *args, **kwargs)

        guarded.connect_marker = ConnectMarker(kind, event, audit_accepted)  # type: ignore[attr-defined]
        # Jira sends no CSRF token; the JWT is what authenticates these requests.
        return csrf_exempt(guarded)

    return decorate


def signed_lifecycle(event: str) -> Callable[[View], View]:
    """An ``installed``/``uninstalled`` callback: RS256 signed-install tokens only."""
    return _mark("lifecycle", event)


def tenant_lifecycle(event: str) -> Callable[[View], View]:
    """An ``enabled``/``disabled`` callback: HS256 with the tenant's sharedSecret."""
    return _mark("tenant_lifecycle", event)


def webhook(view: View) -> View:
    """A webhook receiver: HS256 with the tenant's sharedSecret, deliveries recorded by the view."""
    return _mark("webhook", "webhook", audit_accepted=False)(view)
