"""Keeps the ``audit`` alias (a second connection to the same database) out of migrations."""

from __future__ import annotations

from typing import Any

AUDIT_DB = "audit"


class AuditRouter:
    """The audit alias shares the default database; only ``default`` is ever migrated."""

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        return False if db == AUDIT_DB else None
