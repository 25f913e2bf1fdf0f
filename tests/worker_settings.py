"""The project's settings plus the test receivers (``tests.receivers``): for a task worker or a
server that a multi-process test starts."""

from connectsite.settings import *  # noqa: F403
from connectsite.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.receivers"]
