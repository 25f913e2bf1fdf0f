"""Settings for the test suite: production-like (DEBUG off), configured through the environment.

The suite must not depend on the caller's shell: every variable documented in ``.env.example``
is removed from this process's environment (and so from every subprocess a test starts), then the
test values below are set. ``DATABASE_URL`` alone is left to the caller: ``make test`` runs the
suite on SQLite (unset) and then on PostgreSQL.
"""

import os
import re
from pathlib import Path

_DOCUMENTED = re.compile(r"^#? ?([A-Z][A-Z0-9_]+)=", re.MULTILINE)
_EXAMPLE = (Path(__file__).resolve().parents[1] / ".env.example").read_text(encoding="utf-8")
for _name in set(_DOCUMENTED.findall(_EXAMPLE)) - {"DATABASE_URL"}:
    os.environ.pop(_name, None)

os.environ.update(
    {
        "CONNECT_READ_DOTENV": "0",
        "DEBUG": "0",
        "SECRET_KEY": "test-secret-key-not-used-anywhere-else-0123456789",
        "ALLOWED_HOSTS": "testserver,localhost,127.0.0.1",
        "CONNECT_BASE_URL": "https://connect-app.example.test",
        "CONNECT_APP_KEY": "django-connect-app",
        "CONNECT_KEY_SERVERS": "http://127.0.0.1:9",
        # Two fixed Fernet keys: the first encrypts, both decrypt.
        "TENANT_SECRET_KEYS": (
            "q8Mn2ZQy0E3cdj8B3zZ6m1cJ8vZ0kQ2xN9mVb7a1c3E=,Zk3Q5lH9sV0yJ2bX8mN4cR6tW1aD7fG3hK5pL9oU2iE="
        ),
    }
)

from connectsite.settings import *  # noqa: E402, F403

# On SQLite the test database is a file, not Django's shared-cache in-memory database: in that
# mode concurrent threads (the key-fetch and tenant races) hit table locks that fail at once
# ("database table is locked"), where a file waits for its lock as production does.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    import tempfile

    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": str(Path(tempfile.gettempdir()) / f"connect-tests-{os.getpid()}.sqlite3")
    }

WHITENOISE_USE_FINDERS = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only

# The suite runs in one process; lifecycle.W002 (a per-process cache) is expected here.
SILENCED_SYSTEM_CHECKS = ["lifecycle.W002"]
