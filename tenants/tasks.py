"""The background tasks of webhook deliveries, on Django's Tasks framework API.

``django_tasks`` is the backport of Django 6's ``django.tasks`` with the same API: on Django 6
only the import below changes. The backend is ``settings.TASKS`` (the database by default; RQ
when ``TASKS_RQ_URL`` is set); workers run them (``manage.py db_worker``, or ``manage.py
rqworker --with-scheduler --job-class django_tasks_rq.Job default``). The work itself is in
``tenants.deliveries``; each task takes a delivery id only, never a body.
"""

from __future__ import annotations

from django_tasks import task, task_backends
from django_tasks_db import DatabaseBackend

from tenants import deliveries


def uses_database_backend() -> bool:
    """True when tasks are rows of the same database as the deliveries (one transaction)."""
    return isinstance(task_backends["default"], DatabaseBackend)


@task()
def process_webhook_delivery(delivery_id: int, looks: int = 0) -> str:
    """Run ``webhook_received`` for one delivery: see ``tenants.deliveries.process_delivery``."""
    return deliveries.process_delivery(delivery_id, looks)


@task()
def check_webhook_deliveries() -> int:
    """The watchdog, a minute after the deadline of the attempts it covers: give back those whose
    worker died, and queue again pending deliveries whose task was lost (``deliveries.sweep``)."""
    return deliveries.sweep()


@task()
def check_webhook_delivery(delivery_id: int, started: str) -> str:
    """The per-attempt watchdog of earlier versions, kept so that tasks already queued by them
    still run: give one attempt back if its worker died."""
    return deliveries.check_delivery(delivery_id, started)
