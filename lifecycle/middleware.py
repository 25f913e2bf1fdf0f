"""Verification middleware: the one place Connect errors become responses and audit rows.

Opt-in per view: only views declared with ``lifecycle.decorators.verified(policy)`` are touched.
For those, ``process_view`` verifies the request against the view's policy, runs the view (in one
transaction with its accepted audit row when the policy says ``atomic``), and writes the one
audit row of the request from what verification learnt and the outcome the view returned. A
refused or failed request's row is written after its transaction has rolled back, so it survives.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, cast

from django.core.handlers.exception import response_for_exception
from django.db import DatabaseError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.template.response import SimpleTemplateResponse

from audit import records
from audit.models import LifecycleEvent
from audit.records import AuditContext
from lifecycle import verification
from lifecycle.conf import connect_settings
from lifecycle.errors import (
    ConnectError,
    DatabaseUnavailable,
    MethodNotAllowed,
    ServiceUnavailable,
    TenantChangedMeanwhile,
)
from lifecycle.framing import allow_framing_by_tenant_sites
from lifecycle.policy import Policy, Render
from lifecycle.verification import ConnectRequest, IgnoredCall
from tenants.deliveries import TenantChanged
from tenants.tenant_cache import tenant_cache

logger = logging.getLogger("lifecycle.requests")


def error_response(exc: ConnectError, render: Render = Render.JSON) -> HttpResponse:
    """The refusal of SPEC section 2 with the headers its status calls for: JSON
    ``{"error", "detail"}``, or for an iframe load a small HTML page with the same reason code,
    detail and fix."""
    if render is Render.HTML:
        page = render_to_string(
            "lifecycle/refused.html",
            {"code": exc.code, "detail": exc.detail, "fix": type(exc).fix, "status": exc.status_code},
        )
        response: HttpResponse = HttpResponse(page, status=exc.status_code, content_type="text/html")
        allow_framing_by_tenant_sites(response)  # seen inside Jira's iframe, before a tenant is known
    else:
        response = JsonResponse({"error": exc.code, "detail": exc.detail}, status=exc.status_code)
    response["Cache-Control"] = "no-store"
    if exc.status_code == 401:
        scheme = getattr(getattr(exc, "cause", exc), "scheme", "JWT")  # Forge's FIT: Bearer
        response["WWW-Authenticate"] = f'{scheme} realm="{connect_settings.APP_KEY}"'
    if isinstance(exc, ServiceUnavailable):
        response["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, MethodNotAllowed):
        response["Allow"] = ", ".join(exc.allowed)
    return response


def _remote_addr(request: HttpRequest) -> str | None:
    value = request.META.get("REMOTE_ADDR") or ""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _database_error(exc: DatabaseError) -> DatabaseUnavailable:
    logger.error("database error while handling a Connect request (%s)", type(exc).__name__)
    return DatabaseUnavailable("The database could not complete the request; Jira will retry.")


class ConnectVerificationMiddleware:
    """Verifies the views that declare a policy, runs them, and records each such request once.

    Place it last in ``MIDDLEWARE``: it calls the view itself, so view middleware after it does
    not run for these views.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        policy: Policy | None = getattr(view_func, "connect_policy", None)
        if policy is None:
            return None
        try:
            return self._handle(request, policy, view_func, view_args, view_kwargs, fresh=False)
        except TenantChanged as changed:
            # The tenant this worker remembered (tenants/tenant_cache.py) changed in the database
            # before the view could store its work: forget it, and verify the call again.
            tenant_cache.drop(str(changed))
            return self._handle(request, policy, view_func, view_args, view_kwargs, fresh=True)

    def _handle(
        self,
        request: HttpRequest,
        policy: Policy,
        view_func: Callable[..., Any],
        view_args: Any,
        view_kwargs: Any,
        *,
        fresh: bool,
    ) -> HttpResponse:
        ctx = AuditContext(event=policy.event, path=request.path, remote_addr=_remote_addr(request))
        try:
            cast(ConnectRequest, request).connect = verification.verify(request, policy, ctx, fresh=fresh)
        except IgnoredCall as ignored:
            records.write_after(
                ctx, outcome=LifecycleEvent.Outcome.IGNORED, reason=ignored.reason, detail=ignored.detail
            )
            return HttpResponse(status=204)
        except ConnectError as exc:
            return self._refuse(ctx, exc, policy)
        except DatabaseError as exc:
            return self._refuse(ctx, _database_error(exc), policy)
        # A Forge call that first showed an installation, or its new id, says so in its row,
        # whatever the view answers (verification already stored it).
        forge = cast(ConnectRequest, request).connect.forge
        noted = forge.observed.detail() if forge is not None else ""
        try:
            with transaction.atomic() if policy.atomic else nullcontext():
                response: HttpResponse = view_func(request, *view_args, **view_kwargs)
                if isinstance(response, SimpleTemplateResponse):
                    response.render()  # now, so that a template error is this call's failure
                outcome = records.outcome_of(response)
                if response.status_code < 400 and outcome.status != "recorded":
                    detail = " ".join(filter(None, [noted, outcome.detail]))
                    records.write(ctx, outcome=outcome.status, reason=outcome.reason, detail=detail)
                elif response.status_code < 400 and noted:
                    records.write(ctx, outcome=LifecycleEvent.Outcome.ACCEPTED, detail=noted)
        except ConnectError as exc:
            return self._refuse(ctx, exc, policy, noted)
        except DatabaseError as exc:
            return self._refuse(ctx, _database_error(exc), policy, noted)
        except TenantChanged:
            if not fresh:
                raise  # verified with a remembered tenant: process_view verifies again
            return self._refuse(
                ctx,
                TenantChangedMeanwhile("The tenant's row changed again while this call was stored."),
                policy,
            )
        except Exception as exc:  # a bug in the view: Django's own answer (500), and the row below
            response = response_for_exception(request, exc)
        if response.status_code >= 400:
            records.write_after(
                ctx,
                outcome=LifecycleEvent.Outcome.REJECTED,
                reason=f"http_{response.status_code}",
                detail=" ".join(filter(None, [noted, "The view failed after verification."])),
            )
        return response

    @staticmethod
    def _refuse(ctx: AuditContext, exc: ConnectError, policy: Policy, noted: str = "") -> HttpResponse:
        detail = " ".join(filter(None, [noted, exc.audit_detail]))
        records.write_after(
            ctx, outcome=LifecycleEvent.Outcome.REJECTED, reason=exc.audit_code, detail=detail
        )
        return error_response(exc, policy.errors)
