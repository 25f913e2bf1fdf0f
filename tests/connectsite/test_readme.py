"""README's snippets, run as written where a test can: the local PostgreSQL one, and the
Deploying steps with the production environment pointed at loopback services."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from connect_testkit import KeyServer

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
pytestmark = pytest.mark.postgres  # they need PostgreSQL and Redis on this machine
DEPLOY_DATABASE = f"connect_readme_deploy_{os.getpid()}"  # one of its own: suites may run side by side


def section(title: str) -> str:
    return README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, seconds: float = 60) -> requests.Response:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-c", sql], check=True, capture_output=True
    )


def test_the_local_postgresql_snippet_runs_as_written():
    [snippet] = sh_blocks(section("PostgreSQL and Redis"))
    # As written, but with a database name and a port of its own: a developer's connect_dev and a
    # server on port 8000 stay untouched.
    database, port = f"connect_readme_{os.getpid()}", _free_port()
    assert snippet.count("connect_dev") == 2 and "make run" in snippet
    snippet = snippet.replace("connect_dev", database).replace("make run", f"make run PORT={port}")
    environment = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "DATABASE_URL", "CACHE_URL"}}
    server = subprocess.Popen(
        ["bash", "-euc", snippet],
        cwd=ROOT,
        env=environment,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        response = _wait_for(f"http://127.0.0.1:{port}/healthz", seconds=120)
        assert server.poll() is None, server.stdout.read()  # our server answered, not another one
        assert response.json() == {"status": "ok", "database": "ok"}
        tables = subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                database,
                "-Atc",
                "SELECT count(*) FROM django_migrations WHERE app = 'tenants'",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert int(tables.stdout) >= 1  # make run migrated the PostgreSQL database
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        _psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def _deploy_environment(key_server_url: str, port: int) -> dict[str, str]:
    _venv, _create, environment_block, _release, _worker = sh_blocks(section("Deploying"))
    values = dict(re.findall(r"^([A-Z_]+)=(\S+)", environment_block, re.M))
    values.update(  # the placeholders, and the hosts of this machine instead of db.internal etc.
        SECRET_KEY="readme-deploy-test-secret-key-0123456789-abcdefghijklmnop",
        TENANT_SECRET_KEYS="q8Mn2ZQy0E3cdj8B3zZ6m1cJ8vZ0kQ2xN9mVb7a1c3E=",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DEPLOY_DATABASE}",
        CACHE_URL="redis://127.0.0.1:6379/12",
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY="2",
        CONNECT_KEY_SERVERS=key_server_url,
    )
    assert set(values) >= {"DEBUG", "SECURE_SSL_REDIRECT", "HOST", "PORT", "WEB_CONCURRENCY"}
    base = {k: v for k, v in os.environ.items() if k not in values}
    return {**base, **values, "DJANGO_SETTINGS_MODULE": "connectsite.settings"}


def test_the_deploying_steps_run_as_written_on_loopback():
    _psql(f"DROP DATABASE IF EXISTS {DEPLOY_DATABASE} WITH (FORCE)")
    _psql(f"CREATE DATABASE {DEPLOY_DATABASE}")
    try:
        _deploy(_free_port())
    finally:
        _psql(f"DROP DATABASE IF EXISTS {DEPLOY_DATABASE} WITH (FORCE)")


def _deploy(port: int) -> None:
    with KeyServer() as key_server:
        environment = _deploy_environment(key_server.url, port)
        release = sh_blocks(section("Deploying"))[3]
        steps = [line.split("#")[0].strip() for line in release.splitlines() if line.strip()]
        assert steps[0] == ".venv/bin/python manage.py migrate --noinput"
        for step in steps:
            command = step.split()
            command[0] = sys.executable if command[0] == ".venv/bin/python" else command[0]
            result = subprocess.run(
                command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
            )
            assert result.returncode == 0, f"{step}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            if "check --deploy" in step:
                assert "System check identified no issues" in result.stdout
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "connectsite.wsgi"],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            probe = _wait_for(f"http://127.0.0.1:{port}/healthz")
            assert probe.json()["status"] == "ok"
            admin_css = requests.get(
                f"http://127.0.0.1:{port}/static/admin/css/base.css",
                headers={"Host": "connect.example.com", "X-Forwarded-Proto": "https"},
                timeout=5,
            )
            assert admin_css.status_code == 200  # collected and served by whitenoise
        finally:
            server.terminate()
            server.wait(timeout=30)
