"""The project's URLconf plus ``GET /bench/noop``: a view that does nothing (204), behind the same
middleware stack. The benchmark's ceiling for "a trivial view"; never part of the app itself."""

from django.http import HttpRequest, HttpResponse
from django.urls import include, path


def noop(request: HttpRequest) -> HttpResponse:
    return HttpResponse(status=204)


urlpatterns = [
    path("bench/noop", noop),
    path("", include("connectsite.urls")),
]
