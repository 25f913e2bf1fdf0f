"""gunicorn settings: `gunicorn connectsite.wsgi` reads this file from the project folder.

Workers come from WEB_CONCURRENCY (gunicorn's own variable; default 2 x cores + 1), the address
from HOST/PORT. The access log leaves out query strings and headers: no token ever reaches it.
"""

import multiprocessing
import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"  # noqa: S104 - behind a proxy
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
# Threads per worker; above 1, gunicorn uses gthread workers. bench/ measured sync workers ahead
# (interleaved A/B: 530 against 408 verified webhooks/s with 2 workers), so 1 is the default.
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
# %(U)s is the path without the query string; no headers, so no Authorization.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
