"""Verification middleware: the one place Connect errors become responses and audit rows.

Opt-in per view: only views marked with a ``lifecycle.decorators`` marker are verified. The
verified call is put on ``request.connect``; what is known about the request (accepted or not)
is on ``request.connect_audit`` and becomes one ``LifecycleEvent`` when the response leaves.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse

from audit.models import LifecycleEvent
from lifecycle import verification
from lifecycle.conf import connect_settings
from lifecycle.decorators import ConnectMarker
from lifecycle.errors import ConnectError, DatabaseUnavailable, MethodNotAllowed, ServiceUnavailable
from lifecycle.verification import AuditContext, IgnoredCall

logger = logging.getLogger("lifecycle.requests")

VERIFIERS: dict[str, Callable[[HttpRequest, str, AuditContext], verification.VerifiedCall]] = {
    "lifecycle": verification.verify_lifecycle,
    "tenant_lifecycle": verification.verify_tenant_lifecycle,
    "webhook": verification.verify_webhook,
}


def error_response(exc: ConnectError) -> JsonResponse:
    """The JSON error of SPEC section 2, with the headers its status calls for."""
    response = JsonResponse({"error": exc.code, "detail": exc.detail}, status=exc.status_code)
    response["Cache-Control"] = "no-store"
    if exc.status_code == 401:
        response["WWW-Authenticate"] = f'JWT realm="{connect_settings.APP_KEY}"'
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


class ConnectVerificationMiddleware:
    """Verifies marked views before they run; records every such request once."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        ctx: AuditContext | None = getattr(request, "connect_audit", None)
        if ctx is not None and not getattr(request, "_connect_recorded", False):
            marker: ConnectMarker = request._connect_marker  # type: ignore[attr-defined]
            if response.status_code < 400 and not marker.audit_accepted and ctx.outcome is None:
                pass  # recorded by the view itself (webhook deliveries)
            elif response.status_code < 400:
                outcome = ctx.outcome or LifecycleEvent.Outcome.ACCEPTED
                self._record(request, ctx, outcome=outcome, reason=ctx.reason, detail=ctx.detail)
            else:
                self._record(
                    request,
                    ctx,
                    outcome=LifecycleEvent.Outcome.REJECTED,
                    reason=f"http_{response.status_code}",
                    detail="The view failed after verification.",
                )
        return response

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        marker: ConnectMarker | None = getattr(view_func, "connect_marker", None)
        if marker is None:
            return None
        ctx = AuditContext(event=marker.event, path=request.path, remote_addr=_remote_addr(request))
        request.connect_audit = ctx  # type: ignore[attr-defined]
        request._connect_marker = marker  # type: ignore[attr-defined]
        request.connect = None  # type: ignore[attr-defined]
        try:
            request.connect = VERIFIERS[marker.kind](request, marker.event, ctx)  # type: ignore[attr-defined]
        except IgnoredCall as ignored:
            self._record(
                request,
                ctx,
                outcome=LifecycleEvent.Outcome.IGNORED,
                reason=ignored.reason,
                detail=ignored.detail,
            )
            return HttpResponse(status=204)
        except ConnectError as exc:
            return self._reject(request, ctx, exc)
        except DatabaseError as exc:
            return self._reject(request, ctx, self._database_error(exc))
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        ctx: AuditContext | None = getattr(request, "connect_audit", None)
        if ctx is None:
            return None
        if isinstance(exception, ConnectError):
            return self._reject(request, ctx, exception)
        if isinstance(exception, DatabaseError):
            return self._reject(request, ctx, self._database_error(exception))
        return None

    @staticmethod
    def _database_error(exc: DatabaseError) -> DatabaseUnavailable:
        logger.error("database error while handling a Connect request (%s)", type(exc).__name__)
        return DatabaseUnavailable("The database could not complete the request; Jira will retry.")

    def _reject(self, request: HttpRequest, ctx: AuditContext, exc: ConnectError) -> JsonResponse:
        self._record(
            request,
            ctx,
            outcome=LifecycleEvent.Outcome.REJECTED,
            reason=exc.audit_code,
            detail=exc.audit_detail,
        )
        return error_response(exc)

    def _record(
        self, request: HttpRequest, ctx: AuditContext, *, outcome: str, reason: str, detail: str
    ) -> None:
        request._connect_recorded = True  # type: ignore[attr-defined]
        log = logger.info if outcome != LifecycleEvent.Outcome.REJECTED else logger.warning
        log(
            "%s %s%s client_key=%r kid=%r token=%s",
            ctx.event,
            outcome,
            f" reason={reason}" if reason else "",
            ctx.client_key,
            ctx.kid,
            ctx.token_fingerprint or "-",
        )
        if ctx.written:
            return
        try:
            if outcome != LifecycleEvent.Outcome.ACCEPTED and not ctx.verified:
                LifecycleEvent.objects.fold_or_record(**ctx.row(outcome, reason, detail))
            else:
                LifecycleEvent.objects.record(**ctx.row(outcome, reason, detail))
        except DatabaseError as exc:
            logger.error("audit row for %s not written: database error (%s)", ctx.event, type(exc).__name__)
