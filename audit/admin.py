"""Operators' view of the audit history: every row, and the failed verifications apart.

Read-only, and fast at millions of rows: fixed filter choices (no DISTINCT), exact-match search
on indexed columns, no date hierarchy, a capped count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import Truncator

from audit.models import NOT_A_CONNECT_CALL, FailedVerification, LifecycleEvent
from lifecycle.errors import REASONS
from tenants.admin import ReadOnlyAdmin

LIST_FIX_CHARS = 72  # a list column stays narrow enough that 1400 px show every column


def explain(code: str) -> str:
    """The human explanation and fix for a reason code ("" for none)."""
    cls = REASONS.get(code)
    if cls is None:
        return ""
    return f"{cls.explanation} Fix: {cls.fix}"


def short_fix(code: str) -> str:
    """The fix for a reason code, cut for a list column, the whole of it on hover ("-" for none)."""
    cls = REASONS.get(code)
    if cls is None:
        return "-"
    return format_html('<span title="{}">{}</span>', cls.fix, Truncator(cls.fix).chars(LIST_FIX_CHARS))


if TYPE_CHECKING:  # django-stubs makes Paginator generic; Django's own class is not subscriptable
    _Paginator = Paginator[Any]
else:
    _Paginator = Paginator


class CappedCountPaginator(_Paginator):
    """Counts at most ``CAP`` rows: an exact COUNT(*) over millions of audit rows takes seconds.

    Past the cap the list offers the newest ``CAP`` rows' pages; filters and search narrow it.
    """

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        rows = cast(QuerySet[Any], self.object_list)  # admin pages a queryset
        return len(rows.values_list("pk", flat=True)[: self.CAP])


class ReasonFilter(admin.SimpleListFilter):
    """By reason code, from the fixed enumeration (no DISTINCT over the whole table)."""

    title = "reason"
    parameter_name = "reason"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(code, code) for code in sorted(REASONS)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(reason=self.value()) if self.value() else queryset


class EventFilter(admin.SimpleListFilter):
    """By event: the lifecycle events, webhooks, Forge calls, operators' actions (a fixed list)."""

    title = "event"
    parameter_name = "event"
    EVENTS = ("installed", "uninstalled", "enabled", "disabled", "webhook", "forge:event")

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(event, event) for event in self.EVENTS] + [
            ("forge", "Forge calls (all)"),
            ("admin", "operators' actions"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "admin":
            return queryset.filter(event_type__startswith="admin_")
        if self.value() == "forge":
            return queryset.filter(event_type__startswith="forge:")
        return queryset.filter(event_type=self.value()) if self.value() else queryset


@admin.register(LifecycleEvent)
class LifecycleEventAdmin(ReadOnlyAdmin):
    list_display = (  # fits 1400 px; the kid, fingerprint and detail are on each row's page
        "created_at",
        "event_type",
        "outcome",
        "reason_code",
        "client_key",
        "remote_addr",
        "actor",
    )
    # Fast at millions of rows: fixed filter choices (no DISTINCT), no date hierarchy (no
    # DISTINCT dates), a capped count and no second count of the whole table.
    list_filter: ClassVar[tuple[Any, ...]] = ("outcome", "verified", EventFilter, ReasonFilter, "created_at")
    search_fields = ("=client_key", "=key_id", "=token_fingerprint")
    paginator = CappedCountPaginator
    show_full_result_count = False
    fields = (
        "created_at",
        "event_type",
        "outcome",
        "reason",
        "reason_explained",
        "detail",
        "client_key",
        "verified",
        "count",
        "last_seen_at",
        "key_id",
        "token_fingerprint",
        "remote_addr",
        "path",
        "actor",
        "body",
    )
    readonly_fields = fields

    @admin.display(description="what it means and the fix")
    def reason_explained(self, obj: LifecycleEvent) -> str:
        return explain(obj.reason) or "-"

    @admin.display(description="reason", ordering="reason")
    def reason_code(self, obj: LifecycleEvent) -> str:
        """The reason code, breakable after each underscore so that a narrow column can wrap it."""
        return format_html_join(mark_safe("_<wbr>"), "{}", ((part,) for part in obj.reason.split("_")))


class CallKindFilter(admin.SimpleListFilter):
    """Verification failures apart from requests that were never Connect calls (bots, browsers)."""

    title = "kind"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("verification", "verification failures"), ("not_connect", "not Connect calls")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "verification":
            return queryset.exclude(NOT_A_CONNECT_CALL)
        if self.value() == "not_connect":
            return queryset.filter(NOT_A_CONNECT_CALL)
        return queryset


@admin.register(FailedVerification)
class FailedVerificationAdmin(LifecycleEventAdmin):
    list_display = (
        "created_at",
        "event_type",
        "reason_code",
        "tenant",
        "fix",
        "remote_addr",
        "count",
    )
    list_filter = (CallKindFilter, "verified", EventFilter, ReasonFilter, "created_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[LifecycleEvent]:
        return super().get_queryset(request).filter(outcome=LifecycleEvent.Outcome.REJECTED)

    @admin.display(description="client key", ordering="client_key")
    def tenant(self, obj: LifecycleEvent) -> str:
        """The client key, marked as a claim when no verified token backed it."""
        if not obj.client_key:
            return "-"
        if obj.verified:
            return obj.client_key
        return format_html(
            '{} <span class="claimed" title="not verified: only claimed">(claimed)</span>', obj.client_key
        )

    @admin.display(description="fix")
    def fix(self, obj: LifecycleEvent) -> str:
        return short_fix(obj.reason)
