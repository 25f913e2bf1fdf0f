"""A gunicorn server of this project on loopback, with one installed tenant, for bench scripts.

    with serve(folder, {"WEB_CONCURRENCY": "1"}) as server:
        requests.post(server.url + ..., headers={"Authorization": f"JWT {server.sign(...)}"})

SQLite in ``folder``, no Redis (each worker keeps a local-memory cache), access log off.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connect_testkit import KeyServer, generate_rsa_key, sign_install, sign_tenant  # noqa: E402

__all__ = [
    "BASE",
    "CLIENT_KEY",
    "KeyServer",
    "Server",
    "generate_rsa_key",
    "serve",
    "sign_install",
    "sign_tenant",
]

BASE = "https://bench.example.test"
CLIENT_KEY = "bench-tenant"
SECRET = "bench-tenant-shared-secret-0123456789abcdef0123456789"  # noqa: S105 - a loopback tenant


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Server:
    url: str
    process: subprocess.Popen

    def sign(self, method: str, path: str, **overrides: object) -> str:
        """An HS256 token of the installed tenant for ``method path``, as Jira signs webhooks."""
        return sign_tenant(SECRET, client_key=CLIENT_KEY, method=method, url=path, overrides=overrides)


@contextmanager
def serve(folder: Path, environ: dict[str, str]) -> Iterator[Server]:
    """Migrate a fresh SQLite database, install the tenant, run gunicorn until the block ends.

    ``environ`` adds to or overrides the server's environment (``PYTHONPATH`` is prefixed to
    this project's root).
    """
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CACHE_URL"}},
        "CONNECT_READ_DOTENV": "0",
        "DEBUG": "0",
        "SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnop",
        "CONNECT_BASE_URL": BASE,
        "TENANT_SECRET_KEYS": "q8Mn2ZQy0E3cdj8B3zZ6m1cJ8vZ0kQ2xN9mVb7a1c3E=",
        "DATABASE_URL": f"sqlite:///{folder / f'{uuid.uuid4().hex}.sqlite3'}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "GUNICORN_ACCESS_LOG": "off",
        "LOG_LEVEL": "ERROR",
        **environ,
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [environ.get("PYTHONPATH"), str(ROOT)]))
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=ROOT, capture_output=True)
    install = (
        f"from tenants import services; services.install({{'clientKey': {CLIENT_KEY!r}, 'sharedSecret': "
        f"{SECRET!r}, 'baseUrl': 'https://bench.atlassian.net', 'key': 'django-connect-app', "
        "'eventType': 'installed'})"
    )
    subprocess.run([*manage, "shell", "-c", install], env=env, check=True, cwd=ROOT, capture_output=True)
    process = subprocess.Popen(
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
        else:
            raise SystemExit(f"gunicorn did not answer on {url}")
        yield Server(url, process)
    finally:
        process.terminate()
        process.wait(timeout=30)
