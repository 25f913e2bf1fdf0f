"""A URLconf for tests of policies no shipped route uses yet: an iframe page and a context call."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import include, path

from lifecycle.decorators import verified
from lifecycle.policy import Policy, Qsh, Render, Signature, TokenSource

PAGE = Policy("page", Signature.SHARED_SECRET, methods=("GET",), token=TokenSource.QUERY, errors=Render.HTML)
CONTEXT = Policy("context", Signature.SHARED_SECRET, methods=("GET",), qsh=Qsh.CONTEXT_ALLOWED)


@verified(PAGE)
def page(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"<p>hello {request.connect.client_key}</p>")


@verified(CONTEXT)
def context(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"clientKey": request.connect.client_key, "qsh": request.connect.claims["qsh"]})


@verified(PAGE)
def broken_template(request: HttpRequest) -> TemplateResponse:
    return TemplateResponse(request, "no/such/template.html", {})


urlpatterns = [
    path("pages/panel", page),
    path("pages/broken", broken_template),
    path("api/context", context),
    path("", include("connectsite.urls")),
]
