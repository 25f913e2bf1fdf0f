"""Every entry point refuses a bad configuration with one line: gunicorn (gunicorn.conf.py),
manage.py (runserver and every other command) and any WSGI server (connectsite/wsgi.py).

Each runs in a subprocess under exactly the environment given, from a clean one.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOOD_KEY = "q8Mn2ZQy0E3cdj8B3zZ6m1cJ8vZ0kQ2xN9mVb7a1c3E="
OTHER_KEY = "Zk3Q5lH9sV0yJ2bX8mN4cR6tW1aD7fG3hK5pL9oU2iE="
BASE = {
    "PATH": os.environ["PATH"],
    "HOME": os.environ.get("HOME", "/root"),
    "CONNECT_READ_DOTENV": "0",
    "SECRET_KEY": "entry-point-test-secret-key-0123456789",
    "CONNECT_BASE_URL": "https://connect-app.example.test",
    "TENANT_SECRET_KEYS": GOOD_KEY,
    "DATABASE_URL": "sqlite:///:memory:",
}
GUNICORN = [sys.executable, "-m", "gunicorn", "connectsite.wsgi"]
ENTRY_POINTS = {
    "gunicorn": GUNICORN,
    "runserver": [sys.executable, "manage.py", "runserver", "127.0.0.1:0", "--noreload"],
    "migrate": [sys.executable, "manage.py", "migrate"],
    "other WSGI server": [sys.executable, "-c", "import connectsite.wsgi"],
}


def run(command, cwd=ROOT, **environment):
    return subprocess.run(
        command,
        cwd=cwd,
        env={**BASE, **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("abc", "entry 1 is not a Fernet key"),
        (f"{GOOD_KEY} {OTHER_KEY}", "entry 1 holds whitespace"),  # a space instead of a comma
        (f'"{GOOD_KEY}",{OTHER_KEY}', "entry 1 is wrapped in quotes"),
        (f"{GOOD_KEY},,{OTHER_KEY}", "entry 2 is empty"),
    ],
    ids=["not-a-key", "space-not-comma", "quoted", "empty-entry"],
)
def test_a_malformed_tenant_secret_keys_stops_every_entry_point_with_one_line(entry_point, value, problem):
    result = run(ENTRY_POINTS[entry_point], TENANT_SECRET_KEYS=value)
    assert result.returncode == 2, result.stderr[-3000:]
    line = one_line(result)
    assert line.startswith(f"Configuration error: TENANT_SECRET_KEYS: {problem}")
    if "whitespace" in problem or "quotes" in problem or "empty" in problem:
        assert "comma-separated, newest first, without spaces or quotes" in line
    assert GOOD_KEY not in line and OTHER_KEY not in line  # never echo a key


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("GUNICORN_TIMEOUT", "30s", "GUNICORN_TIMEOUT: expected a whole number of seconds, got '30s'"),
        ("PORT", "80000", "PORT: must be between 1 and 65535, got 80000"),
        ("HOST", "127.0.0.1:8001", "HOST: '127.0.0.1:8001' holds a port: give the address alone"),
        ("ALLOWED_HOSTS", "$HOST", None),  # django-environ would read "$HOST" as a reference
        (
            "CONNECT_JWT_LEEWAY",
            "$UNSET",
            "CONNECT_JWT_LEEWAY: expected a whole number of seconds, got '$UNSET'",
        ),
        ("CONNECT_BASE_URL", "https://[::1", "CONNECT_BASE_URL: 'https://[::1' is not a valid URL"),
        (
            "CONNECT_BASE_URL",
            "https://admin:hunter2@app.example.com",
            "must not carry a query, fragment or user info",
        ),
        ("CONNECT_WEBHOOK_MAX_BODY", "5MB", "expected a whole number of bytes, got '5MB'"),
        ("TENANT_WEBHOOK_RETENTION_DAYS", "30d", "expected a whole number of days, got '30d'"),
    ],
)
def test_gunicorn_refuses_a_malformed_value_with_one_line_naming_the_unit(name, value, expected):
    result = run([*GUNICORN, "--check-config"], **{name: value})
    if expected is None:  # a value that is fine as it is
        assert result.returncode == 0, result.stderr[-2000:]
        return
    assert result.returncode == 2
    line = one_line(result)
    assert expected in line
    assert "hunter2" not in line


@pytest.fixture
def project_copy(tmp_path):
    """The project's code in a folder of its own, so that a test can give it a .env file."""
    for name in ("connectsite", "audit", "lifecycle", "tenants", "templates"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("gunicorn.conf.py", "manage.py", "atlassian-connect.json"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_gunicorn_reads_its_variables_from_dot_env(project_copy):
    (project_copy / ".env").write_text(  # README's block pasted with its comments
        "HOST=127.0.0.2                    # gunicorn's bind address\nPORT=8123\n"
        "WEB_CONCURRENCY=3   # workers\nGUNICORN_TIMEOUT=45\n"
    )
    result = run([*GUNICORN, "--print-config"], cwd=project_copy, CONNECT_READ_DOTENV="1")
    assert result.returncode == 0, result.stderr[-3000:]
    config = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition("=") for line in result.stdout.splitlines())
    )
    assert config["bind"] == "['127.0.0.2:8123']"
    assert (config["workers"], config["timeout"]) == ("3", "45")


def test_the_environment_wins_over_dot_env_for_gunicorn(project_copy):
    (project_copy / ".env").write_text("PORT=8123\n")
    result = run([*GUNICORN, "--print-config"], cwd=project_copy, CONNECT_READ_DOTENV="1", PORT="9001")
    assert "127.0.0.1:9001" in result.stdout or "0.0.0.0:9001" in result.stdout


BARE = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "CONNECT_READ_DOTENV": "0"}


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--help"], "connect_simulate"),
        ([], "connect_doctor"),
        (["help", "connect_doctor"], "--check-key-servers"),
        (["connect_keys", "--help"], "refresh: fetch every cached key again"),
        (["connect_keys", "fetch", "--help"], "warm the cache before Atlassian signs with a new kid"),
        (["connect_keys", "purge", "--help"], "stale-if-error"),
        (["rotate_tenant_secrets", "-h"], "usage: manage.py rotate_tenant_secrets"),
    ],
)
def test_help_works_on_a_bare_clone_without_configuration(arguments, expected):
    result = subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=ROOT,
        env=BARE,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert expected in " ".join((result.stdout + result.stderr).split())


def test_a_real_command_on_a_bare_clone_still_names_the_missing_variable():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=BARE, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert one_line(result).startswith("Configuration error: SECRET_KEY: is required when DEBUG is off")


def test_gunicorn_keeps_its_safe_log_settings():
    result = run([*GUNICORN, "--print-config"])
    config = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition("=") for line in result.stdout.splitlines())
    )
    # The path without the query string (a ?jwt= token never reaches the log), no headers.
    assert config["access_log_format"] == '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
    assert config["logger_class"] == "<SafeAccessLogger()>"
    assert (config["graceful_timeout"], config["keepalive"], config["errorlog"]) == ("20", "5", "-")


def test_a_forged_log_line_in_the_path_is_escaped_in_gunicorns_access_log(tmp_path):
    """Issue 12, item 1: GET /x%0A<a forged line>%1B[2J must stay one line, without a raw ESC."""
    import socket
    import time

    import requests

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "access.log"
    with log.open("w") as sink:
        server = subprocess.Popen(
            GUNICORN,
            cwd=ROOT,
            env={
                **BASE,
                "HOST": "127.0.0.1",
                "PORT": str(port),
                "WEB_CONCURRENCY": "1",
                "ALLOWED_HOSTS": "127.0.0.1",
            },
            stdout=sink,
            stderr=sink,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                requests.get(f"{url}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        forged = "/x%0A2026-11-29%2023:59:59,000%20ERROR%20lifecycle.keys%20FORGED%1B%5B2J"
        assert requests.get(url + forged, timeout=5).status_code == 404
    finally:
        server.terminate()
        server.wait(timeout=20)
    text = log.read_text()
    assert "\x1b" not in text
    forged_lines = [line for line in text.splitlines() if "FORGED" in line]
    assert len(forged_lines) == 1 and '"GET /x\\x0a2026-11-29 23:59:59,000 ERROR' in forged_lines[0]
    assert not any(line.startswith("2026-11-29 23:59:59,000 ERROR") for line in text.splitlines())
