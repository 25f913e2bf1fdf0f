from typing import Any

from django import template

from audit import dashboard
from tenants import deliveries

register = template.Library()


@register.inclusion_tag("audit/dashboard.html", takes_context=True)
def connect_dashboard(context: dict[str, Any]) -> dict[str, Any]:
    """The admin index's lifecycle dashboard (inline SVG, no JavaScript).

    Shown only to users who may view the audit history it summarises (tenant counts, totals,
    rejection reasons): the ``audit.view_lifecycleevent`` permission; the webhook backlog and
    failures to those who may also view deliveries (``tenants.view_webhookdelivery``).
    """
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.has_perm("audit.view_lifecycleevent"):
        return {"hidden": True}
    shown = dict(dashboard.context())
    if user.has_perm("tenants.view_webhookdelivery"):
        shown["deliveries"] = deliveries.summary()  # live: a backlog must not wait for the cache
    return shown
