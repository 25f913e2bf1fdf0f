"""Operators' view of tenants: read-only protocol data, masked secrets, audited actions."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from audit.models import LifecycleEvent
from tenants import deliveries, services
from tenants.models import ForgeInstallation, Installation, WebhookDelivery

RECENT_ROWS = 20


def masked_secret(installation: Installation) -> str:
    """What an operator may know about a shared secret: whether it is set, and when it changed."""
    if not installation.has_secret:
        return "not set (erased on uninstall)" if not installation.is_installed else "not set"
    changed = installation.secret_updated_at
    when = timezone.localtime(changed).strftime("%Y-%m-%d %H:%M:%S %Z") if changed else "unknown"
    return f"set, encrypted, last rotated {when}"


def _when(moment: Any) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")


def html_table(css_class: str, headers: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> str:
    """A small escaped HTML table for a read-only admin field ("none" when there are no rows)."""
    rows = list(rows)
    if not rows:
        return "none"
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "", "<tr>{}</tr>", ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows)
    )
    return format_html(
        '<table class="{}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', css_class, head, body
    )


if TYPE_CHECKING:  # django-stubs makes ModelAdmin generic; Django's own class is not subscriptable
    ModelAdmin = admin.ModelAdmin[Any]
else:
    ModelAdmin = admin.ModelAdmin


class ReadOnlyAdmin(ModelAdmin):
    """Nothing added, changed or deleted through admin: the rows are a record."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ManageInstallationMixin:
    """Actions change tenants only for users with the ``manage_installation`` permission."""

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("tenants.manage_installation")


@admin.register(Installation)
class InstallationAdmin(ManageInstallationMixin, ModelAdmin):
    # Seven columns fit 1400 px beside the navigation and the filters; the rest is on each page.
    list_display = (
        "client_key",
        "site",
        "state",
        "enabled",
        "suspended",
        "installed_at",
        "last_outcome",
    )
    list_filter = ("state", "enabled", "suspended", "product_type")
    search_fields = (
        "client_key",
        "base_url",
        "description",
        "service_entitlement_number",
        "entitlement_number",
        "entitlement_id",
    )
    date_hierarchy = "installed_at"
    actions = ("suspend", "resume", "forget_uninstalled")
    fieldsets = (
        (None, {"fields": ("client_key", "site", "state", "enabled", "suspended", "suspended_at", "notes")}),
        ("Secret", {"fields": ("shared_secret_summary",)}),
        (
            "From Jira",
            {
                "fields": (
                    "app_key",
                    "display_url",
                    "display_url_servicedesk_help_center",
                    "product_type",
                    "description",
                    "server_version",
                    "plugins_version",
                    "service_entitlement_number",
                    "entitlement_id",
                    "entitlement_number",
                    "oauth_client_id",
                    "installation_id",
                    "last_event_type",
                    "extra",
                )
            },
        ),
        ("Times", {"fields": ("installed_at", "uninstalled_at", "created_at", "updated_at")}),
        ("History", {"fields": ("recent_events", "recent_deliveries")}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Installation | None = None) -> list[str]:
        fields = [str(f) for fieldset in self.fieldsets for f in fieldset[1]["fields"]]
        return [f for f in fields if f != "notes"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Installation]:
        # Only verified rows: a request that merely claimed this clientKey is not its history.
        latest = LifecycleEvent.objects.filter(client_key=OuterRef("client_key"), verified=True).order_by(
            "-created_at", "-id"
        )
        rows = super().get_queryset(request).annotate(_last_outcome=Subquery(latest.values("outcome")[:1]))
        return cast(QuerySet[Installation], rows)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tenants come from Jira's signed installs only

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # "forget uninstalled tenants" is the audited way

    @admin.display(description="base URL", ordering="base_url")
    def site(self, obj: Installation) -> str:
        return format_html(
            '<a href="{}" rel="noopener noreferrer" target="_blank">{}</a>', obj.base_url, obj.base_url
        )

    @admin.display(description="last event")
    def last_outcome(self, obj: Installation) -> str:
        return getattr(obj, "_last_outcome", None) or "-"

    @admin.display(description="shared secret")
    def shared_secret_summary(self, obj: Installation) -> str:
        return masked_secret(obj)

    @admin.display(description="recent lifecycle events")
    def recent_events(self, obj: Installation) -> str:
        events = LifecycleEvent.objects.filter(client_key=obj.client_key, verified=True)[:RECENT_ROWS]
        return html_table(
            "recent-events",
            ("time", "event", "outcome", "reason", "operator / kid"),
            (
                (_when(e.created_at), e.event_type, e.outcome, e.reason or "-", e.actor or e.key_id or "-")
                for e in events
            ),
        )

    @admin.display(description="recent webhook deliveries")
    def recent_deliveries(self, obj: Installation) -> str:
        deliveries = obj.webhook_deliveries.all()[:RECENT_ROWS] if obj.pk else []
        return html_table(
            "recent-deliveries",
            ("time", "event", "identifier", "retry", "bytes"),
            (
                (_when(d.received_at), d.event, d.identifier or "-", d.retry_count, d.body_size)
                for d in deliveries
            ),
        )

    def save_model(self, request: HttpRequest, obj: Installation, form: Any, change: bool) -> None:
        if change and "notes" in form.changed_data:
            services.update_notes(obj, obj.notes, actor=request.user.get_username())

    @admin.action(
        description="Suspend selected tenants (refuse their webhooks and enabled/disabled)",
        permissions=["manage"],
    )
    def suspend(self, request: HttpRequest, queryset: QuerySet[Installation]) -> None:
        actor = request.user.get_username()
        changed = sum(services.set_suspended(i.client_key, True, actor=actor) for i in queryset)
        self.message_user(request, f"Suspended {changed} tenant(s).", messages.SUCCESS)

    @admin.action(description="Resume selected tenants", permissions=["manage"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Installation]) -> None:
        actor = request.user.get_username()
        changed = sum(services.set_suspended(i.client_key, False, actor=actor) for i in queryset)
        self.message_user(request, f"Resumed {changed} tenant(s).", messages.SUCCESS)

    @admin.action(
        description="Forget selected uninstalled tenants (delete row and secret)", permissions=["manage"]
    )
    def forget_uninstalled(
        self, request: HttpRequest, queryset: QuerySet[Installation]
    ) -> HttpResponse | None:
        uninstalled = list(queryset.filter(state=Installation.State.UNINSTALLED))
        skipped = queryset.count() - len(uninstalled)
        if request.POST.get("confirmed") == "yes":
            count = services.forget([i.client_key for i in uninstalled], actor=request.user.get_username())
            self.message_user(
                request,
                f"Forgot {count} uninstalled tenant(s); their audit history stays."
                + (f" Skipped {skipped} still installed." if skipped else ""),
                messages.SUCCESS,
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Forget uninstalled tenants?",
            "opts": self.model._meta,
            "tenants": uninstalled,
            "skipped": skipped,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "selected": [str(i.pk) for i in queryset],
        }
        return TemplateResponse(request, "admin/tenants/installation/forget_confirmation.html", context)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """Deliveries and their processing; *retry now* and *discard* need
    ``tenants.retry_webhookdelivery``."""

    # The list fits a 1400 px screen; the detail page has every field (the body excepted).
    list_display = ("received_at", "sent_by", "event", "identifier", "state", "attempts", "error_type")
    list_filter = ("state", "event", "received_at")
    search_fields = ("identifier", "installation__client_key", "forge_installation__installation_id")
    date_hierarchy = "received_at"
    list_select_related = ("installation", "forge_installation")
    exclude = ("body_sealed",)  # users' data, encrypted; never shown in admin
    actions = ("retry_now", "discard")

    @admin.display(description="sent by", ordering="installation__client_key")
    def sent_by(self, obj: WebhookDelivery) -> str:
        """The Connect tenant's clientKey, or "Forge " and the Forge installation's id."""
        return obj.sender if obj.installation_id is not None else f"Forge {obj.sender}"

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("tenants.retry_webhookdelivery")

    @admin.action(description="Retry selected failed deliveries now", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        self._act(
            request,
            queryset,
            deliveries.retry_now,
            "Queued {} delivery(ies) for processing now",
            "not failed: done, pending or being processed",
        )

    @admin.action(description="Discard selected failed deliveries (drop their bodies)", permissions=["retry"])
    def discard(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        self._act(request, queryset, deliveries.discard, "Discarded {} failed delivery(ies)", "not failed")

    def _act(
        self,
        request: HttpRequest,
        queryset: QuerySet[WebhookDelivery],
        change: Callable[..., bool],
        done: str,
        why_skipped: str,
    ) -> None:
        actor = request.user.get_username()
        rows = list(queryset)
        changed = sum(change(delivery, actor=actor) for delivery in rows)
        skipped = len(rows) - changed
        self.message_user(
            request,
            done.format(changed) + (f"; {skipped} skipped ({why_skipped})." if skipped else "."),
            messages.SUCCESS if changed else messages.WARNING,
        )


@admin.register(ForgeInstallation)
class ForgeInstallationAdmin(ReadOnlyAdmin):
    """Forge installations (Forge remote calls): linked to their Connect tenant, or Forge only.
    A record; its history is in the audit trail under its installation id."""

    list_display = (
        "installation_id",
        "tenant",
        "cloud_id",
        "environment_type",
        "state",
        "app_version",
        "last_seen_at",
    )
    list_filter = ("state", "environment_type")
    search_fields = ("=installation_id", "=cloud_id", "tenant__client_key", "site_url")
    list_select_related = ("tenant",)
    exclude = ("lifecycle_iat", "fit_iat")  # epoch seconds: shown as times below
    readonly_fields = ("previous_installation_ids", "last_lifecycle_token", "newest_token")

    @admin.display(description="newest applied lifecycle event's token issued at")
    def last_lifecycle_token(self, obj: ForgeInstallation) -> str:
        return _epoch(obj.lifecycle_iat)

    @admin.display(description="newest token's claims, issued at")
    def newest_token(self, obj: ForgeInstallation) -> str:
        return _epoch(obj.fit_iat or None)


def _epoch(seconds: int | None) -> str:
    """Epoch seconds as an ISO time in UTC ("-" for none)."""
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
