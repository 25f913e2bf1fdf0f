"""URLs: Django admin, and the routes Jira calls (``lifecycle.urls``).

When ``CONNECT_BASE_URL`` has a path prefix (``https://example.com/jira-app``), Jira calls the
descriptor's URLs below it (``/jira-app/lifecycle/installed``), so the Connect routes are served
there, and also at the root for a proxy that strips the prefix before passing a request on. The
qsh is computed relative to the prefix either way (SPEC 1.5), so both verify alike.
"""

from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path, re_path
from django.views.generic import RedirectView

# Admin pages of the audit history before it moved to its own app: bookmarks keep working.
MOVED_ADMIN_PAGES = {
    "tenants/lifecycleevent": "audit/lifecycleevent",
    "lifecycle/failedverification": "audit/failedverification",
}


def build(base_path: str) -> list[URLPattern | URLResolver]:
    """The URL patterns for a base URL whose path is ``base_path`` (``""`` or ``"/jira-app"``)."""
    patterns: list[URLPattern | URLResolver] = [
        *(
            re_path(
                rf"^admin/{old}/(?P<rest>.*)$",
                RedirectView.as_view(url=f"/admin/{new}/%(rest)s", permanent=True, query_string=True),
            )
            for old, new in MOVED_ADMIN_PAGES.items()
        ),
        path("admin/", admin.site.urls),
        path("", include("lifecycle.urls")),
    ]
    prefix = base_path.strip("/")
    if prefix:
        patterns.append(path(f"{prefix}/", include(("lifecycle.urls", "lifecycle"), namespace="prefixed")))
    return patterns


urlpatterns = build(urlsplit(settings.CONNECT["BASE_URL"]).path)
