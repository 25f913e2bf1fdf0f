"""The scenarios of ``manage.py connect_simulate``: walk a running server through what Jira does.

Signs with the test kit (``connect_testkit``) and serves the signing key from its loopback key
server; imported by that command only. The server trusts the simulator only when
``CONNECT_KEY_SERVERS`` points at the key server's URL. The page and outbound scenarios install a
tenant whose site is the test kit's loopback fake Jira, which the server accepts only when
``CONNECT_SIMULATED_JIRA`` (DEBUG only) names it.
"""

from __future__ import annotations

import html
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from connect_testkit import (
    CONTEXT_QSH,
    FORGE_APP_ID,
    KeyServer,
    forge_event,
    forge_oauth_token,
    generate_rsa_key,
    sign_fit,
    sign_install,
    sign_tenant,
)
from connect_testkit.fakejira import Answer, FakeJira
from connect_testkit.keyserver import JWKS_NAME


class ServerRefused(Exception):
    """The server answered, but not with its descriptor: the message says what to check."""


@dataclass
class StepResult:
    scenario: str
    name: str
    sent: str
    expected: tuple[int, str | None]
    status: int
    error: str | None
    detail: str | None

    @property
    def ok(self) -> bool:
        return (self.status, self.error) == self.expected

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        got = f"{self.status}" + (f" {self.error}" if self.error else "")
        text = f"[{mark}] {self.scenario:<7} {self.name:<42} {self.sent:<48} -> {got}"
        if not self.ok:
            want = f"{self.expected[0]}" + (f" {self.expected[1]}" if self.expected[1] else "")
            text += f"  (expected {want})"
        if self.detail and (self.error or not self.ok):
            text += f"\n        detail: {self.detail}"
        return text


SCENARIOS = ("happy", "legacy", "attacks", "pages", "outbound")
JIRA_SCENARIOS = ("pages", "outbound")  # they need the fake Jira
# Not in "all": it needs the demo's failing receivers (connectsite.demo_settings), a task worker,
# and the server's database (it watches the deliveries' states there).
DELIVERY_SCENARIO = "deliveries"
# Not in "all" either: the server must trust the simulator's JWKS (FORGE_APP_ID, FORGE_JWKS_URL).
FORGE_SCENARIO = "forge"
FORGE_FLOOD = 30  # made-up kids sent in the flood step
DELIVERY_WAIT = 60.0  # seconds to wait for the worker to finish a delivery

Outcome = tuple[int, str | None, str | None]
_REASON = re.compile(r'<p id="reason">Reason: <code>([a-z0-9_]+)</code>')
_DETAIL = re.compile(r'<p id="detail">(.*?)</p>', re.S)


class Simulator:
    """Plays Atlassian against a server at ``server_url``, with ``key_server`` publishing its key.

    The server must trust the key server (``CONNECT_KEY_SERVERS``); nothing here weakens it.
    """

    def __init__(
        self,
        server_url: str,
        key_server: KeyServer,
        jira: FakeJira | None = None,
        timeout: float = 15.0,
        forge_app_id: str = FORGE_APP_ID,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.key_server = key_server
        self.jira = jira
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # loopback: no proxies
        self.private_key = generate_rsa_key()
        self.kid = f"simulator/{uuid.uuid4()}"
        key_server.publish(self.kid, self.private_key)
        self.base_url = ""
        self.app_key = ""
        self.jira_refused = False
        # Forge: the app id the server must be configured with, and a JWKS key on the key server.
        self.forge_app_id = forge_app_id
        self.forge_key = generate_rsa_key()
        self.forge_kid = f"forge/invocation-token/wf-{uuid.uuid4()}"
        key_server.publish_jwk(self.forge_kid, self.forge_key)
        self.forge_refused = ""
        self.forge_installation = self.forge_cloud = ""

    # -- plumbing --

    def _descriptor(self) -> None:
        response = self.session.get(f"{self.server_url}/atlassian-connect.json", timeout=self.timeout)
        if response.status_code != 200:
            raise ServerRefused(
                f"the server at {self.server_url} answered {response.status_code} to GET "
                "/atlassian-connect.json"
                + (
                    ": its ALLOWED_HOSTS does not name this host (a stale ALLOWED_HOSTS in the shell?); "
                    "try --url http://localhost:<port> or fix ALLOWED_HOSTS"
                    if response.status_code == 400
                    else ""
                )
            )
        data = response.json()
        self.base_url, self.app_key = str(data["baseUrl"]), str(data["key"])
        self.lifecycle_urls = dict(data.get("lifecycle") or {})
        pages = (data.get("modules") or {}).get("generalPages") or [{}]
        self.page_url = str(pages[0].get("url") or "/pages/hello")

    def _tenant(self) -> dict[str, Any]:
        tag = uuid.uuid4().hex[:12]
        return {
            "key": self.app_key,
            "clientKey": f"simulated-{tag}",
            "sharedSecret": "sim-" + uuid.uuid4().hex + uuid.uuid4().hex,
            "baseUrl": f"https://sim-{tag}.atlassian.net",
            "displayUrl": f"https://sim-{tag}.atlassian.net",
            "productType": "jira",
            "description": "Simulated Jira site (manage.py connect_simulate)",
            "serverVersion": "100",
            "pluginsVersion": "1001.0.0",
        }

    def _prefixed(self, path: str) -> str:
        # Descriptor URLs are relative to baseUrl: Jira calls them below its path prefix.
        return urlsplit(self.base_url).path.rstrip("/") + path

    def _path(self, event: str) -> str:
        return self._prefixed(str(self.lifecycle_urls.get(event, f"/lifecycle/{event}")))

    def _post(
        self, path: str, body: dict[str, Any] | str, token: str | None, headers: dict[str, str] | None = None
    ) -> Outcome:
        sent_headers = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            sent_headers["Authorization"] = f"JWT {token}"
        data = body if isinstance(body, str) else json.dumps(body)
        response = self.session.post(
            self.server_url + path, data=data, headers=sent_headers, timeout=self.timeout
        )
        return self._outcome(response)

    def _get(self, path: str, headers: dict[str, str] | None = None) -> requests.Response:
        return self.session.get(self.server_url + path, headers=headers or {}, timeout=self.timeout)

    @staticmethod
    def _outcome(response: requests.Response) -> Outcome:
        """(status, reason code, detail) of a JSON refusal or of a refused page's HTML."""
        error = detail = None
        if response.status_code >= 400:
            if response.headers.get("Content-Type", "").startswith("text/html"):
                reason, shown = _REASON.search(response.text), _DETAIL.search(response.text)
                error = reason.group(1) if reason else None
                detail = html.unescape(shown.group(1)) if shown else response.text[:200]
                return response.status_code, error, detail
            try:
                payload = response.json()
                error, detail = payload.get("error"), payload.get("detail")
            except ValueError:
                detail = response.text[:200]
        return response.status_code, error, detail

    def _install_token(self, tenant: dict[str, Any], event: str, **kwargs: Any) -> str:
        return sign_install(
            kwargs.pop("key", self.private_key),
            kid=kwargs.pop("kid", self.kid),
            client_key=tenant["clientKey"],
            audience=kwargs.pop("audience", self.base_url),
            url=kwargs.pop("url", self._path(event)),
            base_url=self.base_url,
            **kwargs,
        )

    def _tenant_token(self, tenant: dict[str, Any], path: str, secret: str | None = None) -> str:
        return sign_tenant(
            secret or tenant["sharedSecret"],
            client_key=tenant["clientKey"],
            method="POST",
            url=path,
            base_url=self.base_url,
        )

    @staticmethod
    def _lifecycle_body(tenant: dict[str, Any], event: str) -> dict[str, Any]:
        body = {k: v for k, v in tenant.items() if k != "sharedSecret" or event == "installed"}
        return {**body, "eventType": event}

    # -- scenarios --

    def run(
        self, names: Iterable[str], report: Callable[[StepResult], None] | None = None
    ) -> list[StepResult]:
        """Run the named scenarios in order; ``report`` sees each step as it completes."""
        self._descriptor()
        results: list[StepResult] = []
        for name in names:
            for step in getattr(self, f"_scenario_{name}")():
                results.append(step)
                if report is not None:
                    report(step)
                if name == FORGE_SCENARIO and step.error in (
                    "forge_not_configured",
                    "forge_jwks_unavailable",
                ):
                    self.forge_refused = step.error
                    break  # the server does not trust this JWKS: the caller says what to set
                if len(results) == 1 and not step.ok and not self.trusted() and name != FORGE_SCENARIO:
                    return results  # nothing else can work: the caller explains what to set
                if step.error == "tenant_host_not_allowed" and name in JIRA_SCENARIOS:
                    self.jira_refused = True
                    break  # the server does not accept the fake Jira: the caller says what to set
        return results

    def _step(
        self, scenario: str, name: str, sent: str, expected: tuple[int, str | None], outcome: Outcome
    ) -> StepResult:
        return StepResult(scenario, name, sent, expected, *outcome)

    def _scenario_happy(self) -> Iterator[StepResult]:
        tenant = self._tenant()
        path = self._path("installed")
        yield self._step(
            "happy",
            "installed (signed install, RS256)",
            f"POST {path} kid={self.kid[:18]}...",
            (204, None),
            self._post(
                path, self._lifecycle_body(tenant, "installed"), self._install_token(tenant, "installed")
            ),
        )
        for event in ("enabled",):
            path = self._path(event)
            yield self._step(
                "happy",
                f"{event} (HS256, the issued sharedSecret)",
                f"POST {path}",
                (204, None),
                self._post(path, self._lifecycle_body(tenant, event), self._tenant_token(tenant, path)),
            )
        hook = self._prefixed("/webhooks/jira:issue_created?issueKey=SIM-1")
        identifier = str(uuid.uuid4())
        webhook_body = {"webhookEvent": "jira:issue_created", "issue": {"key": "SIM-1"}}
        for name in ("webhook jira:issue_created", "same webhook again (Jira's retry)"):
            yield self._step(
                "happy",
                name,
                f"POST {hook}",
                (204, None),
                self._post(
                    hook,
                    webhook_body,
                    self._tenant_token(tenant, hook),
                    {"X-Atlassian-Webhook-Identifier": identifier},
                ),
            )
        path = self._path("disabled")
        yield self._step(
            "happy",
            "disabled (HS256)",
            f"POST {path}",
            (204, None),
            self._post(path, self._lifecycle_body(tenant, "disabled"), self._tenant_token(tenant, path)),
        )
        path = self._path("uninstalled")
        yield self._step(
            "happy",
            "uninstalled (signed install, RS256)",
            f"POST {path}",
            (204, None),
            self._post(
                path, self._lifecycle_body(tenant, "uninstalled"), self._install_token(tenant, "uninstalled")
            ),
        )

    def _scenario_legacy(self) -> Iterator[StepResult]:
        tenant = self._tenant()
        path = self._path("installed")
        body = self._lifecycle_body(tenant, "installed")
        yield self._step(
            "legacy",
            "first install without a JWT",
            f"POST {path} (no Authorization)",
            (401, "signed_install_required"),
            self._post(path, body, None),
        )
        own = sign_tenant(tenant["sharedSecret"], client_key=tenant["clientKey"], method="POST", url=path)
        yield self._step(
            "legacy",
            "reinstall signed with the body's own secret",
            f"POST {path} (HS256)",
            (401, "signed_install_required"),
            self._post(path, body, own),
        )

    def _scenario_attacks(self) -> Iterator[StepResult]:
        tenant = self._tenant()
        path = self._path("installed")
        body = self._lifecycle_body(tenant, "installed")
        yield self._step(
            "attacks",
            "set-up: genuine install",
            f"POST {path}",
            (204, None),
            self._post(path, body, self._install_token(tenant, "installed")),
        )
        forged = {**body, "sharedSecret": "attacker-" + uuid.uuid4().hex}
        yield self._step(
            "attacks",
            "forged reinstall replacing the secret",
            f"POST {path} (no JWT)",
            (401, "signed_install_required"),
            self._post(path, forged, None),
        )
        yield self._step(
            "attacks",
            "forged reinstall signed by another key",
            f"POST {path} (RS256, wrong key)",
            (401, "bad_signature"),
            self._post(path, forged, self._install_token(tenant, "installed", key=generate_rsa_key())),
        )
        yield self._step(
            "attacks",
            "token issued for another app (aud)",
            f"POST {path}",
            (401, "audience_mismatch"),
            self._post(
                path,
                forged,
                self._install_token(tenant, "installed", audience="https://other-app.example.com"),
            ),
        )
        yield self._step(
            "attacks",
            "token for another URL (qsh)",
            f"POST {path}",
            (401, "qsh_mismatch"),
            self._post(path, forged, self._install_token(tenant, "installed", url="/lifecycle/uninstalled")),
        )
        yield self._step(
            "attacks",
            "hostile kid (path traversal)",
            f"POST {path} kid=../../etc/passwd",
            (401, "invalid_kid"),
            self._post(path, forged, self._install_token(tenant, "installed", kid="../../etc/passwd")),
        )
        hook = self._prefixed("/webhooks/jira:issue_created?issueKey=SIM-2")
        yield self._step(
            "attacks",
            "webhook signed with a guessed secret",
            f"POST {hook}",
            (401, "invalid_token"),
            self._post(
                hook,
                {"webhookEvent": "jira:issue_created"},
                self._tenant_token(tenant, hook, secret="guess-" * 8),
            ),
        )
        uninstall = self._path("uninstalled")
        yield self._step(
            "attacks",
            "clean-up: genuine uninstall",
            f"POST {uninstall}",
            (204, None),
            self._post(
                uninstall,
                self._lifecycle_body(tenant, "uninstalled"),
                self._install_token(tenant, "uninstalled"),
            ),
        )

    # -- pages, context calls and calls back into Jira (the fake Jira is the tenant's site) --

    @property
    def fake(self) -> FakeJira:
        if self.jira is None:
            raise RuntimeError("the pages and outbound scenarios need the fake Jira")
        return self.jira

    def _jira_tenant(self) -> dict[str, Any]:
        """A tenant whose site is the fake Jira; the fake now checks that tenant's tokens."""
        tenant = {**self._tenant(), "baseUrl": self.fake.base_url, "displayUrl": self.fake.base_url}
        tenant["oauthClientId"] = self.fake.oauth_client_id
        self.fake.app_key, self.fake.shared_secret = self.app_key, tenant["sharedSecret"]
        return tenant

    def _install_jira_tenant(self, scenario: str, tenant: dict[str, Any], name: str) -> StepResult:
        path = self._path("installed")
        return self._step(
            scenario,
            name,
            f"POST {path} baseUrl={tenant['baseUrl']}",
            (204, None),
            self._post(
                path, self._lifecycle_body(tenant, "installed"), self._install_token(tenant, "installed")
            ),
        )

    def _page_path(self, tenant: dict[str, Any]) -> str:
        """The page URL as Jira's iframe loads it, with its Connect parameters (no jwt yet)."""
        query = (
            f"xdm_e={quote(tenant['baseUrl'], safe='')}&xdm_c=channel-hello&cp="
            f"&xdm_deprecated_addon_key_do_not_use={self.app_key}&lic=active&cv=1001.0.0&user_locale=en-US"
        )
        return f"{self._prefixed(self.page_url)}?{query}"

    def _page_token(self, tenant: dict[str, Any], path: str, account: str, **claims: Any) -> str:
        return sign_tenant(
            claims.pop("secret", tenant["sharedSecret"]),
            client_key=tenant["clientKey"],
            method=claims.pop("method", "GET"),
            url=path,
            base_url=self.base_url,
            lifetime=claims.pop("lifetime", 180),
            now=claims.pop("now", None),
            overrides={"sub": account, "context": {}, **claims},
        )

    def _context_token(self, tenant: dict[str, Any], account: str, secret: str | None = None) -> str:
        return self._page_token(
            tenant, "/", account, qsh=CONTEXT_QSH, secret=secret or tenant["sharedSecret"]
        )

    def _load_page(self, path: str, token: str, check: Callable[[requests.Response], str]) -> Outcome:
        response = self._get(f"{path}&jwt={token}")
        outcome = self._outcome(response)
        problem = check(response) if response.status_code == 200 else ""
        return (response.status_code, "page_not_as_expected", problem) if problem else outcome

    def _hello_path(self) -> str:
        return self._prefixed("/api/hello/me")

    def _ask_me(self, account: str, token: str, *, in_query: bool = False, referer: str = "") -> Outcome:
        """GET the shipped context endpoint, which asks Jira's ``myself`` as ``account``."""
        headers = {"Referer": referer} if referer else {}
        url = self.server_url + self._hello_path()
        if in_query:
            url += f"?jwt={token}"
        else:
            headers["Authorization"] = f"JWT {token}"
        response = self.session.get(url, headers=headers, timeout=self.timeout)
        outcome = self._outcome(response)
        if response.status_code == 200 and response.json().get("accountId") != account:
            return 200, "wrong_account", f"the endpoint answered {response.text[:200]}"
        return outcome

    def _scenario_pages(self) -> Iterator[StepResult]:
        tenant = self._jira_tenant()
        account = "557058:simulated-" + uuid.uuid4().hex[:8]
        yield self._install_jira_tenant("pages", tenant, "set-up: install on the fake Jira site")
        page = self._page_path(tenant)
        site = tenant["baseUrl"]

        def framed_by_the_site_only(response: requests.Response) -> str:
            ancestors = response.headers.get("Content-Security-Policy", "")
            if ancestors != f"frame-ancestors {site}":
                return f"Content-Security-Policy is {ancestors[:200]!r}, not frame-ancestors {site}"
            if "connect-cdn.atl-paas.net/all.js" not in response.text or account not in response.text:
                return "the page does not load all.js from Atlassian's CDN or does not name the user"
            return ""

        yield self._step(
            "pages",
            "page load (?jwt=, qsh of this GET)",
            f"GET {page.split('?')[0]}?xdm_e=...&lic=active",
            (200, None),
            self._load_page(page, self._page_token(tenant, page, account), framed_by_the_site_only),
        )
        yield self._step(
            "pages",
            "context call from the page (context-qsh)",
            f"GET {self._hello_path()} (Authorization: JWT)",
            (200, None),
            self._ask_me(account, self._context_token(tenant, account)),
        )
        other = page.replace("lic=active", "lic=none")
        yield self._step(
            "pages",
            "page token replayed on another URL",
            f"GET {other.split('?')[0]}?...lic=none",
            (401, "qsh_mismatch"),
            self._load_page(other, self._page_token(tenant, page, account), lambda r: ""),
        )
        yield self._step(
            "pages",
            "expired page token",
            f"GET {page.split('?')[0]}?...",
            (401, "invalid_token"),
            self._load_page(
                page, self._page_token(tenant, page, account, now=time.time() - 600), lambda r: ""
            ),
        )
        yield self._step(
            "pages",
            "context token on the page route",
            f"GET {page.split('?')[0]}?...",
            (401, "context_qsh_not_allowed"),
            self._load_page(page, self._context_token(tenant, account), lambda r: ""),
        )
        yield self._step(
            "pages",
            "page token sent on to the context route",
            f"GET {self._hello_path()}?jwt=<page token>",
            (401, "qsh_mismatch"),
            self._ask_me(
                account,
                self._page_token(tenant, page, account),
                in_query=True,
                referer=self.server_url + page,
            ),
        )
        yield self._step(
            "pages",
            "page token signed with another secret",
            f"GET {page.split('?')[0]}?...",
            (401, "invalid_token"),
            self._load_page(page, self._page_token(tenant, page, account, secret="guess-" * 8), lambda r: ""),
        )
        enabled = self._path("enabled")
        yield self._step(
            "pages",
            "context token on a lifecycle route",
            f"POST {enabled}",
            (401, "invalid_token"),
            self._post(
                enabled, self._lifecycle_body(tenant, "enabled"), self._context_token(tenant, account)
            ),
        )
        yield from self._uninstall_jira_tenant("pages", tenant)

    def _uninstall_jira_tenant(self, scenario: str, tenant: dict[str, Any]) -> Iterator[StepResult]:
        path = self._path("uninstalled")
        yield self._step(
            scenario,
            "clean-up: genuine uninstall",
            f"POST {path}",
            (204, None),
            self._post(
                path, self._lifecycle_body(tenant, "uninstalled"), self._install_token(tenant, "uninstalled")
            ),
        )

    def _jira_saw(self, outcome: Outcome, before: tuple[int, int], grants: int, calls: int) -> Outcome:
        """``outcome``, unless the fake Jira did not see ``grants`` new user grants and ``calls``
        new accepted calls since ``before`` (its counts of calls and grants; then a failed step
        saying so)."""
        since, grants_before = before
        seen = self.fake.seen[since:]
        refused = [f"{item.method} {item.path}: {item.refused}" for item in seen if item.refused]
        accepted = [item for item in seen if not item.refused]
        new_grants = len(self.fake.grants) - grants_before
        if refused or len(accepted) != calls or new_grants != grants:
            problem = (
                f"the fake Jira saw {new_grants} grant(s) and {len(accepted)} accepted call(s), "
                f"expected {grants} and {calls}" + (f"; refused: {refused[0]}" if refused else "")
            )
            return outcome[0], "jira_not_as_expected", problem
        return outcome

    def _as_user(
        self, tenant: dict[str, Any], account: str, *, grants: int, calls: int, secret: str | None = None
    ) -> Outcome:
        """A context call whose endpoint asks Jira as the user, and what the fake Jira saw of it."""
        before = len(self.fake.seen), len(self.fake.grants)
        outcome = self._ask_me(account, self._context_token(tenant, account, secret))
        return self._jira_saw(outcome, before, grants, calls)

    def _scenario_outbound(self) -> Iterator[StepResult]:
        tenant = self._jira_tenant()
        account = "557058:simulated-" + uuid.uuid4().hex[:8]
        me = self._hello_path()
        myself = f"{self.fake.path_prefix}/rest/api/3/myself"
        yield self._install_jira_tenant("outbound", tenant, "set-up: install on the fake Jira site")
        yield self._step(
            "outbound",
            "as the user: JWT bearer grant, then myself",
            f"GET {me} -> POST /oauth2/token, GET {myself}",
            (200, None),
            self._as_user(tenant, account, grants=1, calls=1),
        )
        yield self._step(
            "outbound",
            "the user's token is cached",
            f"GET {me} -> GET {myself}",
            (200, None),
            self._as_user(tenant, account, grants=0, calls=1),
        )
        self.fake.script(myself, Answer(429, headers={"Retry-After": "1"}))
        yield self._step(
            "outbound",
            "Jira answers 429 Retry-After: 1, retried",
            f"GET {me} -> GET {myself} x2",
            (200, None),
            self._as_user(tenant, account, grants=0, calls=2),
        )
        self.fake.script(myself, Answer(403, body={"errorMessages": ["no access"]}))
        yield self._step(
            "outbound",
            "Jira refuses (403): a 502 with the fix",
            f"GET {me} -> GET {myself}",
            (502, "jira_refused"),
            self._as_user(tenant, account, grants=0, calls=1),
        )
        old_secret = tenant["sharedSecret"]
        tenant["sharedSecret"] = "sim-" + uuid.uuid4().hex + uuid.uuid4().hex
        yield self._install_jira_tenant("outbound", tenant, "reinstall: Jira issues a new secret")
        self.fake.shared_secret = tenant["sharedSecret"]
        yield self._step(
            "outbound",
            "the new secret is used at once",
            f"GET {me} -> POST /oauth2/token, GET {myself}",
            (200, None),
            self._as_user(tenant, account, grants=1, calls=1),
        )
        yield self._step(
            "outbound",
            "context token signed with the old secret",
            f"GET {me}",
            (401, "invalid_token"),
            self._as_user(tenant, account, grants=0, calls=0, secret=old_secret),
        )
        yield from self._uninstall_jira_tenant("outbound", tenant)
        yield self._step(
            "outbound",
            "a call for the uninstalled tenant",
            f"GET {me}",
            (401, "invalid_token"),
            self._as_user(tenant, account, grants=0, calls=0),
        )

    # -- webhook deliveries: acknowledged at once, processed by the worker, retried, parked --

    def _wait_for_delivery(self, identifier: str, states: tuple[str, ...]) -> tuple[str, int, str]:
        """(state, attempts, error type) of the delivery once it is in one of ``states`` (or
        when DELIVERY_WAIT has passed), read from the server's database."""
        from tenants.models import WebhookDelivery

        deadline = time.monotonic() + DELIVERY_WAIT
        found = ("missing", 0, "")
        while time.monotonic() < deadline:
            row = WebhookDelivery.objects.filter(identifier=identifier).values_list(
                "state", "attempts", "error_type"
            )
            found = row.first() or found
            if found[0] in states:
                break
            time.sleep(0.2)
        return found

    def _deliver(self, tenant: dict[str, Any], event: str, want: str, attempts: int) -> Outcome:
        hook = self._prefixed(f"/webhooks/{event}")
        identifier = str(uuid.uuid4())
        outcome = self._post(
            hook,
            {"webhookEvent": event},
            self._tenant_token(tenant, hook),
            {"X-Atlassian-Webhook-Identifier": identifier},
        )
        if outcome[0] != 204:
            return outcome
        state, tried, error = self._wait_for_delivery(identifier, ("done", "failed"))
        if (state, tried) != (want, attempts):
            problem = f"the delivery is {state} after {tried} attempt(s), expected {want} after {attempts}"
            if state == "missing":
                problem += " (is this the server's database? is a task worker running?)"
            return 204, "delivery_not_as_expected", problem
        return 204, None, f"{state} after {tried} attempt(s)" + (f", last error {error}" if error else "")

    def _scenario_deliveries(self) -> Iterator[StepResult]:
        from tenants.conf import tenant_settings

        tenant = self._tenant()
        path = self._path("installed")
        yield self._step(
            "deliveries",
            "set-up: genuine install",
            f"POST {path}",
            (204, None),
            self._post(
                path, self._lifecycle_body(tenant, "installed"), self._install_token(tenant, "installed")
            ),
        )
        yield self._step(
            "deliveries",
            "webhook, acknowledged, then processed",
            "POST /webhooks/jira:issue_updated -> worker",
            (204, None),
            self._deliver(tenant, "jira:issue_updated", "done", 1),
        )
        yield self._step(
            "deliveries",
            "receiver fails once: retried, then done",
            "POST /webhooks/demo:fails-once -> worker x2",
            (204, None),
            self._deliver(tenant, "demo:fails-once", "done", 2),
        )
        most = tenant_settings.WEBHOOK_MAX_ATTEMPTS
        yield self._step(
            "deliveries",
            "receiver always fails: parked as failed",
            f"POST /webhooks/demo:always-fails -> worker x{most}",
            (204, None),
            self._deliver(tenant, "demo:always-fails", "failed", most),
        )

    # -- Forge remote calls --

    def _fit(self, **kwargs: Any) -> str:
        return sign_fit(
            kwargs.pop("key", self.forge_key),
            kid=kwargs.pop("kid", self.forge_kid),
            app_id=kwargs.pop("app_id", self.forge_app_id),
            installation_id=kwargs.pop("installation_id", self.forge_installation),
            cloud_id=self.forge_cloud,
            **kwargs,
        )

    def _forge(
        self, method: str, path: str, body: dict[str, Any] | None, token: str | None, **headers: str
    ) -> requests.Response:
        sent = {"Content-Type": "application/json", **headers}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body)
        return self.session.request(
            method, self.server_url + self._prefixed(path), data=data, headers=sent, timeout=self.timeout
        )

    def _forge_post(self, body: dict[str, Any], token: str | None) -> Outcome:
        return self._outcome(self._forge("POST", "/forge/events", body, token))

    def jwks_fetches(self) -> int:
        """How many times the server fetched this simulator's JWKS."""
        return sum(path == "/" + JWKS_NAME for path in self.key_server.requests)

    def _scenario_forge(self) -> Iterator[StepResult]:
        """Forge calls the backend (Connect on Forge): lifecycle, product and scheduled events, a
        retry, a UI call with its OAuth tokens; then a forged token, another app's, an expired one,
        HS256, no token, and a flood of made-up kids that must not make the server refetch the JWKS."""
        self.forge_installation = f"ari:cloud:ecosystem::installation/{uuid.uuid4()}"
        self.forge_cloud = str(uuid.uuid4())
        ok, refused, s = (204, None), (401, "invalid_token"), "forge"
        installed = {
            "eventType": "avi:forge:installed:app",
            "id": self.forge_installation.rsplit("/", 1)[-1],  # lifecycle bodies: bare UUIDs
            "app": {"id": self.forge_app_id.rsplit("/", 1)[-1], "version": "1.0.0"},
            "context": f"ari:cloud:jira::site/{self.forge_cloud}",
        }
        yield self._step(
            s,
            "lifecycle avi:forge:installed:app",
            "POST /forge/events",
            ok,
            self._forge_post(installed, self._fit()),
        )
        issue = forge_event("avi:jira:created:issue", issue={"id": "10001", "key": "SIM-1"})
        yield self._step(
            s,
            "product event avi:jira:created:issue",
            "POST /forge/events",
            ok,
            self._forge_post(issue, self._fit()),
        )
        retry = forge_event("avi:jira:created:issue", retry_count=1, issue={"id": "10001", "key": "SIM-1"})
        yield self._step(
            s,
            "the same event retried (retryContext)",
            "POST /forge/events, a fresh FIT",
            ok,
            self._forge_post(retry, self._fit()),
        )
        trigger = {"context": {"cloudId": self.forge_cloud, "moduleKey": "sim-hourly"}}
        yield self._step(
            s,
            "scheduled trigger",
            "POST /forge/events",
            ok,
            self._forge_post(trigger, self._fit(module_key="sim-hourly")),
        )
        response = self._forge(
            "GET",
            "/forge/hello",
            None,
            self._fit(ui=True, principal="557058:sim-user"),
            **{"x-forge-oauth-system": forge_oauth_token(), "x-forge-oauth-user": forge_oauth_token()},
        )
        outcome = self._outcome(response)
        if response.status_code == 200 and response.json().get("installationId") != self.forge_installation:
            outcome = (599, "wrong_installation", response.text[:200])
        yield self._step(
            s, "UI call (invokeRemote) with its OAuth tokens", "GET /forge/hello", (200, None), outcome
        )
        yield self._step(
            s,
            "forged FIT (another key, a real kid)",
            "POST /forge/events",
            refused,
            self._forge_post(issue, self._fit(key=generate_rsa_key())),
        )
        other = "ari:cloud:ecosystem::app/" + str(uuid.uuid4())
        yield self._step(
            s,
            "FIT issued for another app (aud)",
            "POST /forge/events",
            refused,
            self._forge_post(issue, self._fit(app_id=other)),
        )
        yield self._step(
            s,
            "expired FIT",
            "POST /forge/events",
            refused,
            self._forge_post(issue, self._fit(now=time.time() - 3600)),
        )
        yield self._step(
            s,
            "HS256 FIT",
            "POST /forge/events",
            refused,
            self._forge_post(issue, self._fit(algorithm="HS256")),
        )
        yield self._step(s, "no token", "POST /forge/events", refused, self._forge_post(issue, None))
        before = self.jwks_fetches()
        answers = [
            self._forge_post(issue, self._fit(kid=f"forge/invocation-token/wf-{uuid.uuid4()}"))[:2]
            for _ in range(FORGE_FLOOD)
        ]
        fetched = self.jwks_fetches() - before
        held = all(answer == refused for answer in answers) and fetched <= 1
        detail = f"{FORGE_FLOOD} made-up kids: {fetched} JWKS fetch(es); answers {sorted(set(answers))}"
        yield self._step(
            s,
            f"{FORGE_FLOOD} made-up kids (a flood)",
            "POST /forge/events x30",
            refused,
            (401, "invalid_token", None) if held else (599, "jwks_refetched", detail),
        )

    def trusted(self) -> bool:
        """Did the server ask this simulator's key server for its kid (i.e. does it trust it)?"""
        return any(path == "/" + self.kid for path in self.key_server.requests)
