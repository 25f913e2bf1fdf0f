"""Deployment plumbing that must run before Django's own middleware."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from csp import middleware as csp_middleware
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from lifecycle.views import healthz


class HealthCheckMiddleware:
    """Answers ``GET``/``HEAD /healthz`` before host validation and the https redirect.

    A load balancer probes each server by its IP address over plain http: with the host check
    (``ALLOWED_HOSTS``) and ``SECURE_SSL_REDIRECT`` in its way, the probe would get 400 or a 301
    and never see the database's state. Every other route keeps both rules. Put it first in
    ``MIDDLEWARE``.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        prefix = urlsplit(settings.CONNECT["BASE_URL"]).path.rstrip("/")
        self.paths = {"/healthz", f"{prefix}/healthz"}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info in self.paths and request.method in {"GET", "HEAD"}:
            response = healthz(request)
            if request.method == "HEAD":
                response.content = b""  # a WSGI server warns about body bytes on a HEAD answer
            return response
        return self.get_response(request)


class CSPMiddleware(csp_middleware.CSPMiddleware):
    """django-csp's middleware, except for responses without a body (204, 304).

    The policy here is ``frame-ancestors``, which governs documents; a 204 has none. django-csp
    4.0 builds the policy, twice (enforced and report-only), for every response before it looks
    at exemptions: a quarter of the CPU of a request to a do-nothing view, on every webhook and
    lifecycle callback Jira sends (all answered 204).
    """

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if response.status_code in (204, 304):
            return response
        return super().process_response(request, response)
