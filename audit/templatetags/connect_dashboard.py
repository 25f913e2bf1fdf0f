from typing import Any

from django import template

from audit import dashboard

register = template.Library()


@register.inclusion_tag("audit/dashboard.html", takes_context=True)
def connect_dashboard(context: dict[str, Any]) -> dict[str, Any]:
    """The admin index's lifecycle dashboard (inline SVG, no JavaScript).

    Shown only to users who may view the audit history it summarises (tenant counts, totals,
    rejection reasons): the ``audit.view_lifecycleevent`` permission.
    """
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.has_perm("audit.view_lifecycleevent"):
        return {"hidden": True}
    return dashboard.context()
