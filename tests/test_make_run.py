"""scripts/run.sh (make run): the server and one task worker start together, a webhook is
acknowledged by the one and processed by the other, and Ctrl-C stops both."""

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import requests

from connect_testkit import sign_tenant

ROOT = Path(__file__).resolve().parents[1]
SECRET = "make-run-secret-0123456789abcdef0123456789"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def _worker_pid(log: Path) -> int:
    match = re.search(r"task worker \(pid (\d+)\)", log.read_text())
    assert match, log.read_text()[-2000:]
    return int(match.group(1))


def test_make_run_serves_processes_webhooks_and_stops_on_ctrl_c(tmp_path):
    port = _free_port()
    database = tmp_path / "run.sqlite3"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "CONNECT_READ_DOTENV": "0",
        "DATABASE_URL": f"sqlite:///{database}",
        "PORT": str(port),
    }
    run = subprocess.Popen(
        ["bash", "scripts/run.sh"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=(tmp_path / "run.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        else:
            raise AssertionError("make run did not serve: " + (tmp_path / "run.log").read_text()[-2000:])
        worker = _worker_pid(tmp_path / "run.log")
        assert _alive(worker)
        # A tenant, then a signed webhook: acknowledged by the server, processed by the worker.
        subprocess.run(
            [
                sys.executable,
                "manage.py",
                "shell",
                "-v0",
                "--no-startup",
                "-c",
                "from tenants import services; services.install({'key': 'django-connect-app', "
                f"'clientKey': 'run-1', 'sharedSecret': '{SECRET}', 'baseUrl': "
                "'https://run-1.atlassian.net', 'productType': 'jira', 'eventType': 'installed'})",
            ],
            cwd=ROOT,
            env={**env, "DEBUG": "1"},
            check=True,
            timeout=60,
        )
        hook = "/webhooks/jira:issue_created"
        token = sign_tenant(SECRET, client_key="run-1", method="POST", url=hook)
        answer = requests.post(
            url + hook,
            data=json.dumps({"webhookEvent": "jira:issue_created"}),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"JWT {token}",
                "X-Atlassian-Webhook-Identifier": "run-hook-1",
            },
            timeout=30,
        )
        assert answer.status_code == 204
        deadline = time.monotonic() + 30
        state = None
        while time.monotonic() < deadline and state != "done":
            with sqlite3.connect(database) as db:
                row = db.execute(
                    "SELECT state FROM tenants_webhookdelivery WHERE identifier = 'run-hook-1'"
                ).fetchone()
            state = row[0] if row else None
            time.sleep(0.3)
        assert state == "done"
    finally:
        os.killpg(run.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole foreground group
        try:
            run.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            raise
    worker = _worker_pid(tmp_path / "run.log")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _alive(worker):
        time.sleep(0.2)
    assert not _alive(worker), "make run left its task worker running"


def test_make_run_stops_and_says_so_when_its_task_worker_dies(tmp_path):
    port = _free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "CONNECT_READ_DOTENV": "0",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'run.sqlite3'}",
        "PORT": str(port),
    }
    log = tmp_path / "run.log"
    run = subprocess.Popen(
        ["bash", "scripts/run.sh"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        os.kill(_worker_pid(log), signal.SIGKILL)
        assert run.wait(timeout=30) != 0
        assert "the task worker exited" in log.read_text()
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            served = True
        except requests.RequestException:
            served = False
        assert not served  # the server was stopped with it
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
