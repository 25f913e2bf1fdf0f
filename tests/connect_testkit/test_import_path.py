"""The test kit stays off the server's import path: no fault-injection switch ships with it."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import pkgutil, importlib, sys
import django
django.setup()
import audit, lifecycle, outbound, tenants, connectsite.urls, connectsite.wsgi
for package in (audit, lifecycle, outbound, tenants):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if module.name.endswith(("management.simulation", "commands.connect_simulate")):
            continue  # the simulator command's own modules, imported only when it runs
        importlib.import_module(module.name)
print(sorted(name for name in sys.modules if name.startswith("connect_testkit")))
"""


def test_no_server_module_imports_the_test_kit():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env={"DJANGO_SETTINGS_MODULE": "tests.settings", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
