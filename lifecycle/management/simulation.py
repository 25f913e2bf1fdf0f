"""The scenarios of ``manage.py connect_simulate``: walk a running server through what Jira does.

Signs with the test kit (``connect_testkit``) and serves the signing key from its loopback key
server; imported by that command only. The server trusts the simulator only when
``CONNECT_KEY_SERVERS`` points at the key server's URL.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from connect_testkit import KeyServer, generate_rsa_key, sign_install, sign_tenant


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


SCENARIOS = ("happy", "legacy", "attacks")


class Simulator:
    """Plays Atlassian against a server at ``server_url``, with ``key_server`` publishing its key.

    The server must trust the key server (``CONNECT_KEY_SERVERS``); nothing here weakens it.
    """

    def __init__(self, server_url: str, key_server: KeyServer, timeout: float = 15.0) -> None:
        self.server_url = server_url.rstrip("/")
        self.key_server = key_server
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # loopback: no proxies
        self.private_key = generate_rsa_key()
        self.kid = f"simulator/{uuid.uuid4()}"
        key_server.publish(self.kid, self.private_key)
        self.base_url = ""
        self.app_key = ""

    # -- plumbing --

    def _descriptor(self) -> None:
        response = self.session.get(f"{self.server_url}/atlassian-connect.json", timeout=self.timeout)
        response.raise_for_status()
        data = response.json()
        self.base_url, self.app_key = str(data["baseUrl"]), str(data["key"])
        self.lifecycle_urls = dict(data.get("lifecycle") or {})

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
    ) -> tuple[int, str | None, str | None]:
        import json as _json

        sent_headers = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            sent_headers["Authorization"] = f"JWT {token}"
        data = body if isinstance(body, str) else _json.dumps(body)
        response = self.session.post(
            self.server_url + path, data=data, headers=sent_headers, timeout=self.timeout
        )
        error = detail = None
        if response.status_code >= 400:
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
                if len(results) == 1 and not step.ok and not self.trusted():
                    return results  # nothing else can work: the caller explains what to set
        return results

    def _step(
        self,
        scenario: str,
        name: str,
        sent: str,
        expected: tuple[int, str | None],
        outcome: tuple[int, str | None, str | None],
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

    def trusted(self) -> bool:
        """Did the server ask this simulator's key server for its kid (i.e. does it trust it)?"""
        return any(path == "/" + self.kid for path in self.key_server.requests)
