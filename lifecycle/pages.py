"""The app's one shipped iframe module, as a fork would build its own (atlassian-connect.json's
``generalPages`` "hello"): a page that shows the tenant and the user, and the endpoint it calls
with a context token, which calls Jira back as that user. And its Forge counterpart: the view a
Forge UI module's resolver calls with ``invokeRemote`` (``/forge/hello``).

Replace or extend it: a page is ``@connect_page`` plus a template that loads Atlassian's
``all.js``; an endpoint the page calls is ``@connect_context``; Jira is called through
``outbound.jira``.
"""

from __future__ import annotations

from typing import cast

import requests
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from lifecycle.decorators import connect_context, connect_page, forge_remote
from lifecycle.verification import ConnectRequest
from outbound import jira

# Connect requires pages to load all.js from Atlassian's CDN; never from a host the request names.
ALL_JS = "https://connect-cdn.atl-paas.net/all.js"


@connect_page(event="page:hello")
def hello(request: HttpRequest) -> HttpResponse:
    """GET /pages/hello: the tenant, the user, and a button that asks Jira who the user is."""
    call = cast(ConnectRequest, request).connect
    return render(
        request,
        "lifecycle/hello.html",
        {
            "all_js": ALL_JS,
            "site": call.tenant.base_url,
            "account_id": call.account_id,
            "license": call.license,
        },
    )


@connect_context(event="context:hello", methods=("GET",))
def hello_me(request: HttpRequest) -> JsonResponse:
    """GET /api/hello/me with a context token: Jira's ``myself`` for the token's user, asked as
    that user (OAuth 2.0 JWT bearer grant). 502 with the reason when Jira cannot be asked."""
    call = cast(ConnectRequest, request).connect
    if not call.account_id:
        detail = "The context token names no user: get it with AP.context.getToken() inside the page."
        return JsonResponse({"error": "no_user", "detail": detail}, status=400)
    try:
        answer = jira.as_user(call.client_key, call.account_id).get("/rest/api/3/myself")
        me = answer.json() if answer.status_code == 200 else None
    except (jira.JiraCallError, requests.RequestException, ValueError) as exc:
        detail = f"Jira could not be asked ({type(exc).__name__}): try again; if it lasts, check the site."
        return JsonResponse({"error": "jira_unavailable", "detail": detail}, status=502)
    if not isinstance(me, dict):
        detail = (
            f"Jira answered {answer.status_code}: check the app's ACT_AS_USER scope and the user's access."
        )
        return JsonResponse({"error": "jira_refused", "detail": detail}, status=502)
    return JsonResponse({"accountId": me.get("accountId"), "displayName": me.get("displayName", "")})


@forge_remote(event="forge:hello", methods=("GET",))
def forge_hello(request: HttpRequest) -> JsonResponse:
    """GET /forge/hello from Forge (``invokeRemote``, a FIT): the installation, its site, the user,
    its Connect tenant, and which OAuth tokens came with the call (never the tokens)."""
    forge = cast(ConnectRequest, request).connect.forge
    assert forge is not None  # noqa: S101 - @forge_remote verified a FIT
    return JsonResponse(
        {
            "installationId": forge.installation_id,
            "cloudId": forge.cloud_id,
            "siteUrl": forge.site_url,
            "accountId": forge.account_id,
            "connectTenant": forge.tenant.client_key if forge.tenant is not None else None,
            "tokens": {"system": forge.system_token is not None, "user": forge.user_token is not None},
        }
    )
