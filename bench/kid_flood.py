"""Verified webhooks during a flood of installs naming random kids (issue 12, item 4).

    .venv/bin/python bench/kid_flood.py [--seconds 15] [--flooders 12]

Runs twice, one after the other, on loopback only: gunicorn (2 sync workers, SQLite, local
cache per worker) and a key server that answers every kid 404 after 0.2 s. Each run sends
signed webhooks one at a time while --flooders threads post `installed` with ever new kids; it
prints the webhook latency p50/p99 with the fetch limits effectively off, then with the
defaults. Bounded: each run lasts --seconds and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

from loopback import BASE, KeyServer, generate_rsa_key, serve, sign_install

SETTINGS = """
from connectsite.settings import *  # noqa
import os
if os.environ.get("FLOOD_LIMITS") == "off":
    CONNECT = {**CONNECT, "KEY_FETCH_RATE_PER_SOURCE": "1000000/m", "KEY_FETCH_RATE": "1000000/m"}
"""


def run(limits: str, seconds: float, flooders: int, folder: Path, key_server: KeyServer) -> list[float]:
    environ = {
        "PYTHONPATH": str(folder),
        "DJANGO_SETTINGS_MODULE": "flood_settings",
        "FLOOD_LIMITS": limits,
        "CONNECT_KEY_SERVERS": key_server.url,
        "WEB_CONCURRENCY": "2",
    }
    with serve(folder, environ) as server:
        url = server.url
        stop = time.monotonic() + seconds
        forger = generate_rsa_key()

        def flood() -> None:
            session = requests.Session()
            while time.monotonic() < stop:
                body = {
                    "clientKey": "x",
                    "baseUrl": "https://x.atlassian.net",
                    "key": "django-connect-app",
                    "eventType": "installed",
                    "sharedSecret": "s",
                }
                token = sign_install(forger, kid=f"random/{uuid.uuid4()}", client_key="x", audience=BASE)
                try:
                    session.post(
                        f"{url}/lifecycle/installed",
                        data=json.dumps(body),
                        timeout=10,
                        headers={"Content-Type": "application/json", "Authorization": f"JWT {token}"},
                    )
                except requests.RequestException:
                    pass

        threads = [threading.Thread(target=flood) for _ in range(flooders)]
        for thread in threads:
            thread.start()
        latencies = []
        session = requests.Session()
        path = "/webhooks/jira:issue_created"
        while time.monotonic() < stop:
            # A jti makes each token unique: a webhook token is good for one delivery.
            token = server.sign("POST", path, jti=str(uuid.uuid4()))
            started = time.perf_counter()
            response = session.post(
                url + path,
                data="{}",
                timeout=30,
                headers={
                    "Content-Type": "application/json",
                    "Authorization": f"JWT {token}",
                    "X-Atlassian-Webhook-Identifier": str(uuid.uuid4()),
                },
            )
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 204:
                raise SystemExit(f"a verified webhook got {response.status_code}")
        for thread in threads:
            thread.join()
        return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--flooders", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, KeyServer() as key_server:
        folder = Path(tmp)
        (folder / "flood_settings.py").write_text(SETTINGS)
        key_server.behaviour = "slow_not_found"
        for limits in ("off", "on"):
            latencies = sorted(run(limits, args.seconds, args.flooders, folder, key_server))
            p99 = latencies[max(int(len(latencies) * 0.99) - 1, 0)]
            print(
                f"fetch limits {limits:>3}: {len(latencies)} webhooks, "
                f"p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms; "
                f"key server asked {len(key_server.requests)} times so far"
            )


if __name__ == "__main__":
    main()
