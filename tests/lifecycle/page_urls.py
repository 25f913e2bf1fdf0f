"""A URLconf with an iframe page and a context endpoint declared the way a fork declares them."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path

from lifecycle.decorators import connect_context, connect_page, connect_shell


@connect_page()
def panel(request: HttpRequest) -> HttpResponse:
    call = request.connect
    return HttpResponse(f"{call.client_key}|{call.account_id}|{call.license}|{sorted(call.context)}")


@connect_context(event="panel-data")
def panel_data(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"accountId": request.connect.account_id, "site": request.connect.tenant.base_url})


@connect_context(event="panel-save", methods=("POST",))
def panel_save(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"saved": request.POST.get("summary", "")})


@connect_shell
def cached_panel(request: HttpRequest) -> HttpResponse:
    return HttpResponse("<div id='app'>loading</div>")


urlpatterns = [
    path("pages/cached-panel", cached_panel),
    path("pages/panel", panel),
    path("api/panel-data", panel_data),
    path("api/panel-save", panel_save),
    path("", include("connectsite.urls")),
]
