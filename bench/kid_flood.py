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
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lifecycle.simulator import KeyServer, generate_rsa_key, sign_install, sign_tenant  # noqa: E402

SECRET = "kid-flood-tenant-secret-0123456789abcdef0123456789"  # noqa: S105 - a loopback test tenant
BASE = "https://bench.example.test"
SETTINGS = """
from connectsite.settings import *  # noqa
import os
if os.environ.get("FLOOD_LIMITS") == "off":
    CONNECT = {**CONNECT, "KEY_FETCH_RATE_PER_SOURCE": "1000000/m", "KEY_FETCH_RATE": "1000000/m"}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(limits: str, seconds: float, flooders: int, folder: Path, key_server: KeyServer) -> list[float]:
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CACHE_URL"}},
        "PYTHONPATH": f"{folder}{os.pathsep}{ROOT}",
        "DJANGO_SETTINGS_MODULE": "flood_settings",
        "FLOOD_LIMITS": limits,
        "CONNECT_READ_DOTENV": "0",
        "DEBUG": "0",
        "SECRET_KEY": "kid-flood-secret-key-0123456789-abcdefghij",
        "CONNECT_BASE_URL": BASE,
        "TENANT_SECRET_KEYS": "q8Mn2ZQy0E3cdj8B3zZ6m1cJ8vZ0kQ2xN9mVb7a1c3E=",
        "CONNECT_KEY_SERVERS": key_server.url,
        "DATABASE_URL": f"sqlite:///{folder / f'flood-{limits}.sqlite3'}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "GUNICORN_ACCESS_LOG": "off",
        "LOG_LEVEL": "ERROR",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=ROOT, capture_output=True)
    install = (
        "from tenants import services; services.install({'clientKey': 'flood-tenant', 'sharedSecret': "
        f"{SECRET!r}, 'baseUrl': 'https://flood.atlassian.net', 'key': 'django-connect-app', "
        "'eventType': 'installed'})"
    )
    subprocess.run([*manage, "shell", "-c", install], env=env, check=True, cwd=ROOT, capture_output=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "connectsite.wsgi"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                requests.get(f"{url}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
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
            token = sign_tenant(
                SECRET,
                client_key="flood-tenant",
                method="POST",
                url=path,
                overrides={"jti": str(uuid.uuid4())},
            )
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
    finally:
        server.terminate()
        server.wait(timeout=30)


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
