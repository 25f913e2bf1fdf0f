"""Settings of `make demo` (scripts/demo.sh): the project's settings, DEBUG required, plus the demo's
webhook receivers (``connectsite.demo``), which fail on purpose for two demo events so that the
retry and the parking of a failed delivery can be watched in admin. Never use it elsewhere.
"""

from connectsite.environment import fail
from connectsite.settings import *  # noqa: F403 - the project's settings, unchanged
from connectsite.settings import DEBUG, INSTALLED_APPS

if not DEBUG:
    raise fail("DJANGO_SETTINGS_MODULE", "connectsite.demo_settings is for the DEBUG demo only")

INSTALLED_APPS = [*INSTALLED_APPS, "connectsite.demo"]
