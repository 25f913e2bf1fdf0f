"""lifecycle/doctor.py through manage.py connect_doctor: one line per finding, exit code."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from lifecycle.descriptor import load_template

pytestmark = pytest.mark.django_db


def run(*args):
    out = StringIO()
    try:
        call_command("connect_doctor", *args, stdout=out)
    except CommandError as exc:
        return out.getvalue(), str(exc)
    return out.getvalue(), None


@pytest.fixture
def write(tmp_path, settings):
    def _write(**changes):
        data = load_template()
        data["baseUrl"] = settings.CONNECT["BASE_URL"]
        data["key"] = settings.CONNECT["APP_KEY"]
        for path, value in changes.items():
            target = data
            *parents, leaf = path.split(".")
            for parent in parents:
                target = target[parent]
            if value is None:
                target.pop(leaf, None)
            else:
                target[leaf] = value
        file = tmp_path / "atlassian-connect.json"
        file.write_text(json.dumps(data))
        return str(file)

    return _write


@pytest.fixture(autouse=True)
def production_like(settings):
    settings.ALLOWED_HOSTS = ["connect-app.example.test"]


def test_a_good_setup_passes(write):
    out, error = run("--descriptor", write())
    assert (out, error) == ("all checks passed\n", None)


def test_the_served_descriptor_passes_with_test_settings():
    assert run() == ("all checks passed\n", None)


def test_missing_signed_install_names_the_fix(write):
    out, error = run("--descriptor", write(**{"apiMigrations.signed-install": None}))
    assert error == "1 error(s), 0 warning(s)"
    [line] = out.splitlines()
    assert line.startswith("ERROR   descriptor.apiMigrations: signed-install is off")
    assert 'Fix: add "apiMigrations": {"signed-install": true} to atlassian-connect.json.' in line


@pytest.mark.parametrize(
    ("changes", "topic"),
    [
        ({"apiMigrations.context-qsh": False}, "descriptor.apiMigrations"),
        ({"authentication": {"type": "none"}}, "descriptor.authentication"),
        ({"key": "bad key!"}, "descriptor.key"),
        ({"key": "another-app"}, "descriptor.key"),
        ({"baseUrl": "http://connect-app.example.test"}, "descriptor.baseUrl"),
        ({"baseUrl": "https://elsewhere.example.com"}, "descriptor.baseUrl"),
        ({"lifecycle.installed": None}, "descriptor.lifecycle.installed"),
        ({"lifecycle.enabled": "/nowhere"}, "descriptor.enabled"),
        (
            {"modules": {"webhooks": [{"event": "jira:issue_deleted", "url": "/hooks/x"}]}},
            "descriptor.webhook:jira:issue_deleted",
        ),
        ({"scopes": ["WRITE"]}, "descriptor.scopes"),
        (
            {
                "modules": {
                    "webPanels": [{"key": "issue-panel", "url": "/pages/nowhere?issueKey=${issue.key}"}]
                }
            },
            "descriptor.webPanels:issue-panel",
        ),
        (
            {"modules": {"jiraIssueContents": [{"key": "c", "url": "/pages/none"}]}},
            "descriptor.jiraIssueContents:c",
        ),
    ],
)
def test_each_descriptor_problem_is_one_error_line(write, changes, topic):
    out, error = run("--descriptor", write(**changes))
    lines = out.splitlines()
    assert error == f"{len(lines)} error(s), 0 warning(s)"
    assert any(line.startswith(f"ERROR   {topic}:") and " Fix: " in line for line in out.splitlines()), out


def test_unreadable_descriptor(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text("{nope")
    out, error = run("--descriptor", str(bad))
    assert error and "descriptor: " in out and "not a readable JSON file" in out


def test_settings_problems(settings):
    settings.ALLOWED_HOSTS = ["localhost"]
    settings.DEBUG = True
    settings.TENANTS = {**settings.TENANTS, "SECRET_KEYS": ["not-a-key"]}
    out, error = run()
    assert error == "3 error(s), 0 warning(s)"
    topics = [line.split(":")[0].split()[-1] for line in out.splitlines()]
    assert topics == ["settings.TENANT_SECRET_KEYS", "settings.DEBUG", "settings.ALLOWED_HOSTS"]
    assert "not-a-key" not in out


def test_key_server_reachability(key_server, settings):
    assert run("--check-key-servers") == ("all checks passed\n", None)
    settings.CONNECT = {**settings.CONNECT, "KEY_SERVERS": [key_server.url, "http://127.0.0.1:9"]}
    out, error = run("--check-key-servers")
    assert error == "1 error(s), 0 warning(s)"
    assert out.startswith("ERROR   key_servers: http://127.0.0.1:9 did not answer as a key server")


def test_forge_settings_and_jwks(forge, settings):
    settings.CONNECT = {**settings.CONNECT, "KEY_SERVERS": [forge.server.url]}
    assert run("--check-key-servers") == ("all checks passed\n", None)  # the JWKS serves a key
    forge.server.kid_behaviours[".well-known/jwks.json"] = "html"  # the JWKS only
    out, error = run("--check-key-servers")
    assert error.startswith("1 error(s)") and "ERROR   forge_jwks:" in out and "not JSON" in out
    settings.CONNECT = {**settings.CONNECT, "FORGE_JWKS_URL": "http://forge.example.com/jwks.json"}
    out, error = run()
    assert error == "1 error(s), 0 warning(s)"
    assert "settings.FORGE_JWKS_URL" in out and "is not https" in out


# --- The database and the cache, on a real process (issue 11, item 11) -----------------------


def _manage(*arguments, **environment):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    return subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=root,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "connectsite.settings", **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_doctor_names_an_unreachable_database_without_its_password():
    result = _manage("connect_doctor", DATABASE_URL="postgres://app:s3cret-pw@127.0.0.1:1/nowhere")
    assert result.returncode == 1
    assert (
        "ERROR   database: the postgresql database 'nowhere' at 127.0.0.1:1 does not answer" in result.stdout
    )
    assert "OperationalError" in result.stdout
    assert "s3cret-pw" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_doctor_names_an_unreachable_cache_without_its_password(tmp_path):
    result = _manage(
        "connect_doctor",
        DATABASE_URL=f"sqlite:///{tmp_path / 'doctor.sqlite3'}",
        CACHE_URL="redis://:cache-pw@127.0.0.1:1/0",
    )
    assert result.returncode == 1
    assert "ERROR   cache: the RedisCache at 127.0.0.1:1/0 does not answer (ConnectionError" in result.stdout
    assert "cache-pw" not in result.stdout + result.stderr
    assert "database:" not in result.stdout  # SQLite in a writable folder answers


def test_doctor_passes_with_both_answering(tmp_path):
    result = _manage("connect_doctor", DATABASE_URL=f"sqlite:///{tmp_path / 'doctor.sqlite3'}")
    assert result.stdout.strip().endswith("all checks passed"), result.stdout + result.stderr


def test_a_command_failing_on_the_database_says_which_one_and_why_in_one_line():
    result = _manage("migrate", "--noinput", DATABASE_URL="postgres://app:s3cret-pw@127.0.0.1:1/nowhere")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]  # after the system checks' warnings, if any
    assert last.startswith("Database error: postgresql database 'nowhere' at 127.0.0.1:1: OperationalError:")
    assert "s3cret-pw" not in result.stderr
