"""tenants.task_backend: django-tasks-db's backend with a one-INSERT enqueue. Its rows must be
the rows django-tasks-db writes, and its results what django-tasks-db returns."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from django_tasks import task_backends
from django_tasks_db import DatabaseBackend as UpstreamBackend
from django_tasks_db.compat import TaskResultStatus, task_enqueued
from django_tasks_db.models import DBTaskResult

from tenants.task_backend import DatabaseBackend
from tenants.tasks import process_webhook_delivery

pytestmark = pytest.mark.django_db

# Columns that differ between any two rows: the id, and when each was queued.
_OWN = {"id", "enqueued_at"}


def _columns(row: DBTaskResult) -> dict[str, object]:
    return {f.name: getattr(row, f.name) for f in DBTaskResult._meta.concrete_fields if f.name not in _OWN}


@pytest.mark.parametrize(
    "options",
    [{}, {"priority": 7, "queue_name": "default"}, {"run_after": "later"}],
    ids=["plain", "priority", "run_after"],
)
def test_its_row_is_the_row_django_tasks_db_writes(options):
    if options.get("run_after") == "later":
        options = {"run_after": timezone.now().replace(microsecond=0) + timedelta(minutes=5)}
    ours = task_backends["default"]
    assert type(ours) is DatabaseBackend
    upstream = UpstreamBackend("default", {})
    task = process_webhook_delivery.using(**options)

    mine = ours.enqueue(task, [41, 2], {})
    theirs = upstream.enqueue(task, [41, 2], {})

    stored_mine = DBTaskResult.objects.get(id=mine.id)
    stored_theirs = DBTaskResult.objects.get(id=theirs.id)
    assert _columns(stored_mine) == _columns(stored_theirs)
    assert stored_mine.status == "READY" and stored_mine.args_kwargs == {"args": [41, 2], "kwargs": {}}
    assert abs((stored_mine.enqueued_at - stored_theirs.enqueued_at).total_seconds()) < 5
    # The returned result says what django-tasks-db's says, and what reading the row back says.
    for result in (mine, ours.get_result(mine.id)):
        assert (result.status, result.args, result.kwargs, result.backend) == (
            TaskResultStatus.READY,
            [41, 2],
            {},
            "default",
        )
        assert result.task.func is process_webhook_delivery.func
        assert (result.task.priority, result.task.run_after) == (theirs.task.priority, theirs.task.run_after)
    assert mine.enqueued_at == stored_mine.enqueued_at


def test_the_real_worker_runs_it(run_tasks):
    result = process_webhook_delivery.enqueue(987654, 0)  # no such delivery: the task says so
    assert run_tasks() == 1  # left: the watchdog its claim armed, due minutes later
    stored = task_backends["default"].get_result(result.id)
    assert stored.status == TaskResultStatus.SUCCESSFUL
    assert stored.return_value == "skipped"


def test_it_is_written_in_the_callers_transaction():
    with pytest.raises(RuntimeError), transaction.atomic():
        process_webhook_delivery.enqueue(1, 0)
        assert DBTaskResult.objects.count() == 1
        raise RuntimeError("rolled back")
    assert DBTaskResult.objects.count() == 0


def test_arguments_that_are_not_json_write_nothing():
    with pytest.raises(TypeError):
        process_webhook_delivery.enqueue(object(), 0)
    assert DBTaskResult.objects.count() == 0


def test_it_sends_task_enqueued_with_the_result():
    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append((sender, task_result.id))

    task_enqueued.connect(receiver)
    try:
        result = process_webhook_delivery.enqueue(5, 0)
    finally:
        task_enqueued.disconnect(receiver)
    assert seen == [(DatabaseBackend, result.id)]


class _ReadsElsewhere:
    """A router that sends reads to a replica this test has no connection for."""

    def db_for_read(self, model, **hints):
        return "replica"

    def db_for_write(self, model, **hints):
        return "default"


def test_the_row_goes_where_the_router_sends_writes(settings):
    settings.DATABASE_ROUTERS = [f"{__name__}._ReadsElsewhere"]
    result = process_webhook_delivery.enqueue(3, 0)  # before: DBTaskResult.objects.db, the replica
    settings.DATABASE_ROUTERS = []
    assert DBTaskResult.objects.filter(id=result.id).exists()
