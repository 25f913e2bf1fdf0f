"""Operators' view of the install-key cache (the audit history's admin is in ``audit.admin``)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from lifecycle import keys
from lifecycle.models import InstallKey
from tenants.admin import ReadOnlyAdmin


@admin.register(InstallKey)
class InstallKeyAdmin(ReadOnlyAdmin):
    list_display = (
        "kid",
        "key_server",
        "fetched_at",
        "expires_at",
        "last_used_at",
        "short_fingerprint",
        "key_bits",
    )
    search_fields = ("kid", "fingerprint")
    fields = ("kid", "key_server", "fingerprint", "key_bits", "fetched_at", "expires_at", "last_used_at")
    readonly_fields = fields  # the PEM itself is never shown
    actions = ("refresh_selected", "evict_selected")

    @admin.display(description="fingerprint", ordering="fingerprint")
    def short_fingerprint(self, obj: InstallKey) -> str:
        return format_html('<span title="sha256:{}">sha256:{}…</span>', obj.fingerprint, obj.fingerprint[:16])

    def has_evict_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("lifecycle.delete_installkey")

    def has_refresh_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("lifecycle.change_installkey")

    @admin.action(description="Refresh selected keys from the key servers", permissions=["refresh"])
    def refresh_selected(self, request: HttpRequest, queryset: QuerySet[InstallKey]) -> None:
        report = keys.refresh_keys([row.kid for row in queryset])
        self.message_user(
            request,
            f"Refreshed {len(report.unchanged) + len(report.changed)} (changed {len(report.changed)}), "
            f"removed {len(report.removed)}, failed {len(report.failed)}.",
            messages.WARNING if report.failed else messages.SUCCESS,
        )

    @admin.action(description="Evict selected keys (fetched again when next needed)", permissions=["evict"])
    def evict_selected(self, request: HttpRequest, queryset: QuerySet[InstallKey]) -> None:
        count = keys.evict_keys([row.kid for row in queryset])
        self.message_user(request, f"Evicted {count} key(s).", messages.SUCCESS)
