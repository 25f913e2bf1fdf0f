"""Logging filters named in ``settings.LOGGING``."""

from __future__ import annotations

import logging


class OneLineWarning(logging.Filter):
    """Turns a record into one line at WARNING: no traceback.

    For ``django.security.DisallowedHost``: a request with a host this server does not serve is
    the client's mistake (or a scanner's), worth one line, not a 15-line ERROR for every probe.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        record.levelno = logging.WARNING
        record.levelname = logging.getLevelName(logging.WARNING)
        return True
