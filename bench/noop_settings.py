"""Settings of the benchmark's "trivial view" server: the project's settings, plus one route.

Only bench/bench.py uses it, for the noop ceiling, on a separate gunicorn started with
DJANGO_SETTINGS_MODULE=bench.noop_settings; every other scenario runs connectsite.settings as is.
"""

from connectsite.settings import *  # noqa: F403

ROOT_URLCONF = "bench.noop_urls"
