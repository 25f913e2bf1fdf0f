from typing import Any

from django import template

from lifecycle import dashboard

register = template.Library()


@register.inclusion_tag("lifecycle/dashboard.html")
def connect_dashboard() -> dict[str, Any]:
    """The admin index's lifecycle dashboard (inline SVG, no JavaScript)."""
    return dashboard.context()
