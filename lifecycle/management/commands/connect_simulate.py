"""manage.py connect_simulate: play Atlassian against a running server, without Jira."""

from __future__ import annotations

from typing import Any

import requests
from django.core.management.base import BaseCommand, CommandError, CommandParser

from connect_testkit import FORGE_APP_ID, KeyServer
from connect_testkit.fakejira import FakeJira
from lifecycle.management.simulation import (
    DELIVERY_SCENARIO,
    FORGE_SCENARIO,
    JIRA_SCENARIOS,
    SCENARIOS,
    ServerRefused,
    Simulator,
    StepResult,
)


class Command(BaseCommand):
    help = (
        "Play Atlassian against a running server: serve a signing key on a loopback key server, "
        "sign calls like Jira (RS256 with a kid for installed/uninstalled; HS256 with the issued "
        "sharedSecret and a correct qsh for enabled/disabled/webhooks, pages and context calls), and "
        "walk a scenario, one line per step. For the Connect scenarios the server must trust the key "
        "server: start it with CONNECT_KEY_SERVERS=http://127.0.0.1:<--key-server-port>. The pages "
        "and outbound scenarios also serve a fake Jira site that checks the server's calls back into "
        "it; start the server with DEBUG=1 and CONNECT_SIMULATED_JIRA=http://127.0.0.1:<--jira-port>. "
        "The forge scenario plays Forge remote calls: start the server with "
        "FORGE_APP_ID=<--forge-app-id> and "
        "FORGE_JWKS_URL=http://127.0.0.1:<--key-server-port>/.well-known/jwks.json. Exits 1 when any "
        "step's outcome differs from what the scenario expects, so it doubles as a smoke test."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "scenario",
            nargs="?",
            default="all",
            choices=[*SCENARIOS, DELIVERY_SCENARIO, FORGE_SCENARIO, "all"],
            help="happy: install, enabled, webhook, duplicate webhook, disabled, uninstall; "
            "legacy: what a descriptor without signed-install sends; attacks: forged reinstalls, "
            "foreign audience, wrong qsh, hostile kid, forged webhook; pages: the shipped page loaded "
            "with ?jwt=, its context call, and bad page and context tokens; outbound: the context "
            "call's call back into Jira as the user (grant, cache, 429 retry, refusal, new secret "
            "after a reinstall, uninstalled tenant); all (default: every scenario above); "
            "deliveries (not in all: make demo plays it): webhooks processed by the task worker, one "
            "whose receiver fails once (retried, then done) and one whose receiver always fails "
            "(parked as failed); it needs the demo's receivers (DJANGO_SETTINGS_MODULE="
            "connectsite.demo_settings), a task worker, and the server's database; forge (not in all: "
            "make demo plays it): Forge remote calls signed with the simulator's JWKS: a lifecycle, a "
            "product and a scheduled event, a retry, a UI call (GET /forge/hello) with its OAuth tokens, "
            "then a forged FIT, another app's, an expired one, an HS256 one, no token, and a flood of "
            "made-up kids",
        )
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server (default %(default)s)")
        parser.add_argument(
            "--key-server-port",
            type=int,
            default=8765,
            help="loopback port of the simulator's key server (default %(default)s)",
        )
        parser.add_argument(
            "--forge-app-id",
            default=FORGE_APP_ID,
            help="the forge scenario's app id: the server's FORGE_APP_ID (default %(default)s)",
        )
        parser.add_argument(
            "--jira-port",
            type=int,
            default=8766,
            help="loopback port of the fake Jira site, for pages and outbound (default %(default)s)",
        )

    def handle(
        self,
        *args: Any,
        scenario: str,
        url: str,
        key_server_port: int,
        jira_port: int,
        forge_app_id: str,
        **options: Any,
    ) -> None:
        names = list(SCENARIOS) if scenario == "all" else [scenario]
        try:
            key_server = KeyServer(port=key_server_port).start()
        except OSError as exc:
            raise CommandError(
                f"cannot listen on 127.0.0.1:{key_server_port} ({exc}); pick --key-server-port"
            ) from exc
        jira = None
        if any(name in JIRA_SCENARIOS for name in names):
            try:
                jira = FakeJira("", "", port=jira_port).__enter__()
            except OSError as exc:
                key_server.stop()
                raise CommandError(
                    f"cannot listen on 127.0.0.1:{jira_port} ({exc}); pick --jira-port"
                ) from exc
        self.stdout.write(
            f"key server {key_server.url}"
            + (f", fake Jira {jira.base_url}" if jira else "")
            + f"  ->  server {url}"
        )
        try:
            simulator = Simulator(url, key_server, jira, forge_app_id=forge_app_id)
            results = simulator.run(names, report=self._report)
        except ServerRefused as exc:
            raise CommandError(str(exc)) from exc
        except requests.RequestException as exc:
            raise CommandError(
                f"cannot reach the server at {url} ({type(exc).__name__}); start it first (make run)"
            ) from exc
        finally:
            key_server.stop()
            if jira is not None:
                jira.__exit__(None, None, None)
        failed = [r for r in results if not r.ok]
        if simulator.forge_refused:
            raise CommandError(
                f"the server answered {simulator.forge_refused}: restart it with FORGE_APP_ID={forge_app_id} "
                f"FORGE_JWKS_URL={key_server.jwks_url}"
            )
        forge_only = names == [FORGE_SCENARIO]
        if failed and forge_only and simulator.jwks_fetches() == 0:
            raise CommandError(
                f"the server never fetched this simulator's JWKS, so it does not trust it: restart it with "
                f"FORGE_APP_ID={forge_app_id} FORGE_JWKS_URL={key_server.jwks_url}"
            )
        if failed and not forge_only and not simulator.trusted():
            raise CommandError(
                f"the server never asked this simulator's key server for its key, so it does not trust it: "
                f"restart the server with CONNECT_KEY_SERVERS={key_server.url}"
            )
        self.stdout.write(f"{len(results) - len(failed)} passed, {len(failed)} failed")
        if simulator.jira_refused and jira is not None:
            raise CommandError(
                f"the server refused a tenant on the fake Jira site {jira.base_url}: restart it with "
                f"DEBUG=1 and CONNECT_SIMULATED_JIRA={jira.base_url}"
            )
        if failed:
            raise CommandError(f"{len(failed)} step(s) did not go as expected; see the lines marked FAIL")

    def _report(self, step: StepResult) -> None:
        self.stdout.write(step.line())
