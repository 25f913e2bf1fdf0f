"""WSGI entry point: ``gunicorn connectsite.wsgi``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "connectsite.settings")

application = get_wsgi_application()
