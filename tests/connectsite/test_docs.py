"""README and .env.example stay true to the code: every variable the code reads is documented."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The readers of connectsite/environment.py, and the variables the apps' declarations name.
READ = re.compile(
    r"""(?:boolean|integer|number|strings|text|variable|environ\.get|env\.db_url|env\.cache_url)"""
    r"""\(\s*["']([A-Z][A-Z0-9_]+)["']"""
)


def variables(path):
    return set(READ.findall((ROOT / path).read_text(encoding="utf-8")))


def test_every_variable_read_is_in_env_example_and_readme():
    sources = ["connectsite/settings.py", "gunicorn.conf.py", "lifecycle/conf.py", "tenants/conf.py"]
    read = set().union(*map(variables, sources))
    assert {"SECRET_KEY", "CONNECT_BASE_URL", "TENANT_SECRET_KEYS", "WEB_CONCURRENCY"} <= read
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in sorted(read - {"CONNECT_READ_DOTENV"}):
        assert re.search(rf"^#? ?{name}=", example, re.MULTILINE), f"{name} missing from .env.example"
        assert f"`{name}`" in readme, f"{name} missing from README"
    assert "`CONNECT_READ_DOTENV=0`" in readme


def test_readme_names_the_two_commands_and_ci_calls_the_test_one():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make run" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
