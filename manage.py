#!/usr/bin/env python
"""Django's command-line utility. A configuration error is printed as one line, not a traceback."""

import importlib
import os
import sys

# Help needs no configuration: when only help is asked for, these stand in for the values that
# are required with DEBUG off, in this process only (nothing is served, stored or encrypted).
HELP_STAND_INS = {
    "SECRET_KEY": "manage-py-help-only",
    "CONNECT_BASE_URL": "https://help.invalid",
    "TENANT_SECRET_KEYS": "bWFuYWdlLnB5IC0taGVscCBzdGFuZC1pbiB1bnVzZWQ=",  # base64 of a 32-byte phrase
}


def wants_help(argv: list[str]) -> bool:
    """``manage.py``, ``manage.py help [...]``, ``manage.py [command] -h|--help`` or ``--version``."""
    if len(argv) < 2:
        return True
    options = argv[1 : argv.index("--")] if "--" in argv else argv[1:]  # after "--": the command's own
    return bool(options) and (options[0] in {"help", "--version"} or bool({"-h", "--help"} & set(options)))


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "connectsite.settings")
    if wants_help(sys.argv):
        for name, value in HELP_STAND_INS.items():
            os.environ.setdefault(name, value)
    from django.core.exceptions import ImproperlyConfigured

    try:
        importlib.import_module(os.environ["DJANGO_SETTINGS_MODULE"])
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"Configuration error: {exc}\n")
        sys.exit(2)

    from django.core.management import execute_from_command_line
    from django.db import DatabaseError

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:  # e.g. an app's settings refused at start-up
        sys.stderr.write(f"Configuration error: {exc}\n")
        sys.exit(2)
    except DatabaseError as exc:  # e.g. migrate with the database down: one line, not a traceback
        from connectsite.diagnostics import database_label, reason

        sys.stderr.write(f"Database error: {database_label()}: {reason(exc)}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
