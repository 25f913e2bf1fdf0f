"""The database task backend of django-tasks-db, with an enqueue that costs a webhook less.

``settings.TASKS`` names :class:`DatabaseBackend` by default. It is django-tasks-db's
``DatabaseBackend`` in every way (the same table, rows, ``manage.py db_worker``, admin and
``TaskResult``), except how :meth:`DatabaseBackend.enqueue` writes the row. django-tasks-db 0.13
saves it through the ORM (a model ``save()`` with its signals, then an SQL compilation), and builds
the returned result twice, importing the task again by its path each time. Every verified webhook
queues one task, so that cost was a fifth of a webhook's CPU on PostgreSQL
(``bench/webhook_ab.py``). Here the row is one ``INSERT`` (its SQL text built once, by
``tenants.rows.insert_row``) with the values the ORM would have written, on the database the
router names for writing the task model, and the result is built once from the task in hand.
``aenqueue`` is django-tasks-db's own (the ORM path): nothing here enqueues asynchronously.

``tests/tenants/test_task_backend.py`` compares the row with django-tasks-db's own, column by
column, and runs it with the real ``db_worker``. A django-tasks-db upgrade that changes its table
fails that test, not silently.
"""

from __future__ import annotations

from typing import TypeVar

from django.db import connections, router
from django_tasks_db import backend as db_backend
from django_tasks_db.compat import Task, TaskResultStatus, normalize_json, task_enqueued
from django_tasks_db.utils import normalize_uuid
from typing_extensions import ParamSpec

from tenants.rows import insert_row

T = TypeVar("T")
P = ParamSpec("P")


class DatabaseBackend(db_backend.DatabaseBackend):
    """django-tasks-db's ``DatabaseBackend``; :meth:`enqueue` writes its row with one ``INSERT``."""

    def enqueue(
        self,
        task: Task[P, T],
        args: P.args,  # type: ignore[valid-type]
        kwargs: P.kwargs,  # type: ignore[valid-type]
    ) -> db_backend.TaskResult[P, T]:
        """Queue ``task(*args, **kwargs)``: one row in ``DBTaskResult``'s table, in the caller's
        transaction (if any) on the database the router names for writing the task model.
        Returns its ``TaskResult`` (status ``READY``) and sends ``task_enqueued``, as
        django-tasks-db does. Database errors propagate; arguments that are not JSON raise
        ``TypeError`` before anything is written."""
        # Imported here, as django-tasks-db does: a backend may be made before the app registry.
        from django_tasks_db.models import DBTaskResult, get_date_max

        self.validate_task(task)
        row: DBTaskResult[P, T] = DBTaskResult(
            id=self._get_id(),
            args_kwargs=normalize_json({"args": args, "kwargs": kwargs}),
            priority=task.priority,
            task_path=task.module_path,
            queue_name=task.queue_name,
            run_after=task.run_after or get_date_max(),  # what django-tasks-db's pre_save sets
            backend_name=self.alias,
        )
        using = router.db_for_write(DBTaskResult)  # where objects.create() would write it
        columns = tuple(f.name for f in DBTaskResult._meta.concrete_fields)  # the ORM writes them all
        insert_row(connections[using], row, columns)
        row._state.adding = False
        row._state.db = using
        result: db_backend.TaskResult[P, T] = db_backend.TaskResult(
            db_result=row,
            task=task,
            id=normalize_uuid(row.id),
            status=TaskResultStatus.READY,
            enqueued_at=row.enqueued_at,
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=row.args_kwargs["args"],
            kwargs=row.args_kwargs["kwargs"],
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result
