"""A URLconf for tests of policies no shipped route uses yet: an iframe page, a context call and
a view Forge calls with invokeRemote."""

import time

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import include, path

from lifecycle.decorators import forge_remote, verified
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


@forge_remote(event="forge:settings", methods=("GET", "POST"))
def forge_settings(request: HttpRequest) -> JsonResponse:
    forge = request.forge
    return JsonResponse(
        {
            "installationId": forge.installation_id,
            "cloudId": forge.cloud_id,
            "siteUrl": forge.site_url,
            "accountId": forge.account_id,
            "tenant": forge.tenant.client_key if forge.tenant else None,
            "systemToken": forge.system_token is not None and forge.system_token.usable(time.time()),
            "userToken": forge.user_token is not None,
            "repr": repr(forge) + repr(forge.system_token),
        }
    )


@forge_remote(event="forge:missing", methods=("GET",))
def forge_missing(request: HttpRequest) -> HttpResponse:
    return HttpResponse(status=404)


@forge_remote(event="forge:direct", methods=("POST",), one_use_token=False)
def forge_direct(request: HttpRequest) -> JsonResponse:
    """A view the browser calls with requestRemote: its FIT may serve several requests."""
    return JsonResponse({"size": len(request.body)})


urlpatterns = [
    path("forge/settings", forge_settings),
    path("forge/missing", forge_missing),
    path("forge/direct", forge_direct),
    path("pages/panel", page),
    path("pages/broken", broken_template),
    path("api/context", context),
    path("", include("connectsite.urls")),
]
