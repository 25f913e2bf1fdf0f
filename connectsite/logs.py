"""Logging filters and formatters named in ``settings.LOGGING`` (and gunicorn.conf.py).

Values that come from a request (a path, an event name, a clientKey, a kid, a Host header) can
carry newlines and terminal escapes. :func:`escape_control` turns every control character into a
visible ``\\xNN`` so that one request can never forge a second log line or drive a terminal.
"""

from __future__ import annotations

import logging
import re
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_control(text: str) -> str:
    """``text`` with each control character (C0, DEL, C1) written as ``\\xNN``."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


class SafeFormatter(logging.Formatter):
    """Formats as usual, with control characters in the message escaped (a traceback is kept)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_control(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        """A traceback keeps its line breaks, but every line is indented and escaped: an exception
        message that quotes a request value cannot start a line that looks like a log record."""
        text = super().formatException(ei)
        return "\n".join("  " + escape_control(line) for line in text.split("\n"))


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


_QUERY = re.compile(r"\?[^\s\"]*")


class NoQueryString(logging.Filter):
    """Drops the query string from request lines (``django.server``, what ``manage.py runserver``
    logs): iframe pages are loaded with their token in the URL (``?jwt=...``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_QUERY.sub("", arg) if isinstance(arg, str) else arg for arg in record.args)
        return True
