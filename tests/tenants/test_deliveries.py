"""tenants/deliveries.py and tenants/tasks.py: webhook deliveries, at least once, through the
real task worker (``manage.py db_worker --batch``, the ``run_tasks`` fixture)."""

import pytest
from django.db import connection
from django_tasks_db.models import DBTaskResult

from audit.models import LifecycleEvent
from tenants import deliveries, services, signals
from tenants.crypto import SecretDecryptionError
from tenants.models import WebhookDelivery

pytestmark = pytest.mark.django_db
PRIVATE = "private data of a Jira user"


class ReceiverBroke(RuntimeError):
    pass


@pytest.fixture
def installation(make_body):
    return services.install(make_body(clientKey="client-a")).installation


@pytest.fixture
def fast_retries(settings):
    settings.TENANTS = {**settings.TENANTS, "WEBHOOK_RETRY_DELAY": 0, "WEBHOOK_MAX_ATTEMPTS": 3}


@pytest.fixture
def receiver():
    """Connects a receiver for the test's duration: ``receiver(fn)``; records every call."""
    connected = []

    def connect(fn):
        signals.webhook_received.connect(fn, sender=WebhookDelivery, weak=False)
        connected.append(fn)
        return fn

    yield connect
    for fn in connected:
        signals.webhook_received.disconnect(fn, sender=WebhookDelivery)


def record(installation, identifier="id-1", body='{"issue": {"key": "ABC-1"}}', **kwargs):
    return deliveries.record_webhook(
        installation,
        event="jira:issue_created",
        identifier=identifier,
        retry_count=0,
        raw_body=body,
        **kwargs,
    )


def test_a_delivery_is_stored_with_its_task_and_processed_once(installation, receiver, run_tasks):
    calls = []
    receiver(lambda sender, delivery, body, event, installation, **kw: calls.append((delivery.pk, body)))
    first = record(installation)
    again = record(installation)  # Jira's retry of the identifier
    assert first.created and not again.created and again.delivery.pk == first.delivery.pk
    assert DBTaskResult.objects.filter(task_path="tenants.tasks.process_webhook_delivery").count() == 1
    assert calls == []  # nothing ran in the request
    assert run_tasks() == 1  # the watchdog of the attempt's window waits for its time
    assert calls == [(first.delivery.pk, {"issue": {"key": "ABC-1"}})]
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.error_type, delivery.body_sealed) == (
        "done",
        1,
        "",
        "",
    )
    assert delivery.started_at and delivery.finished_at
    record(installation)  # a retry after processing: still once
    run_tasks()
    assert len(calls) == 1


def test_the_body_is_encrypted_and_bound_to_its_tenant(installation, make_body):
    delivery = record(installation).delivery
    assert "ABC-1" not in delivery.body_sealed
    other = services.install(make_body(clientKey="client-b")).installation
    moved = record(other, body="{}").delivery
    moved.body_sealed = delivery.body_sealed  # a ciphertext copied to another tenant's row
    with pytest.raises(SecretDecryptionError):
        deliveries.open_body(moved)


def test_a_receiver_that_raises_once_then_succeeds_is_done(
    installation, receiver, run_tasks, fast_retries, caplog
):
    calls = []

    @receiver
    def flaky(sender, delivery, **kwargs):
        calls.append(delivery.attempts)
        if len(calls) == 1:
            raise ReceiverBroke(PRIVATE)

    record(installation)
    run_tasks()
    delivery = WebhookDelivery.objects.get()
    assert calls == [1, 2]
    assert (delivery.state, delivery.attempts, delivery.error_type) == ("done", 2, "")
    assert "ReceiverBroke" in caplog.text and PRIVATE not in caplog.text


def test_a_receiver_that_always_raises_is_parked_failed_then_done_after_retry_now(
    installation, receiver, run_tasks, fast_retries, caplog
):
    broken = receiver(lambda sender, **kwargs: (_ for _ in ()).throw(ReceiverBroke(PRIVATE)))
    record(installation)
    run_tasks()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts) == ("failed", 3)
    assert delivery.error_type == f"{__name__}.ReceiverBroke"
    assert delivery.body_sealed  # kept: the delivery has not been processed
    # The exception's text is nowhere: not on the row, not in the task rows, not in the logs.
    with connection.cursor() as cursor:
        for table in (
            WebhookDelivery._meta.db_table,
            DBTaskResult._meta.db_table,
            LifecycleEvent._meta.db_table,
        ):
            cursor.execute(f"SELECT * FROM {table}")
            assert PRIVATE not in repr(cursor.fetchall())
    assert PRIVATE not in caplog.text
    assert "parked as failed after 3 attempts" in caplog.text
    signals.webhook_received.disconnect(broken, sender=WebhookDelivery)  # the app's fix
    calls = []
    receiver(lambda sender, delivery, **kwargs: calls.append(delivery.pk))
    assert deliveries.retry_now(delivery, actor="operator-1")
    run_tasks()
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, calls) == ("done", 3, [delivery.pk])  # one more attempt
    assert not deliveries.retry_now(delivery, actor="operator-1")  # done: nothing to retry
    [row] = LifecycleEvent.objects.filter(event_type="admin_retry_delivery")
    assert row.actor == "operator-1" and "after 3 failed attempt(s)" in row.detail


def test_retries_back_off_exponentially_with_jitter(settings):
    settings.TENANTS = {**settings.TENANTS, "WEBHOOK_RETRY_DELAY": 10, "WEBHOOK_RETRY_MAX_DELAY": 3600}
    for attempt, ceiling in [(1, 10), (2, 20), (3, 40), (9, 2560), (10, 3600), (30, 3600)]:
        delays = {deliveries.retry_delay(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(delays) > 1  # jittered


def test_a_failed_attempt_is_retried_at_its_time(installation, receiver, run_tasks, settings):
    settings.TENANTS = {**settings.TENANTS, "WEBHOOK_RETRY_DELAY": 600}
    receiver(lambda sender, **kwargs: (_ for _ in ()).throw(ReceiverBroke()))
    record(installation)
    run_tasks()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts) == ("pending", 1)
    assert 299 <= (delivery.next_attempt_at - delivery.started_at).total_seconds() <= 601
    retry = DBTaskResult.objects.filter(
        task_path="tenants.tasks.process_webhook_delivery", status="READY"
    ).get()
    assert retry.run_after == delivery.next_attempt_at


def test_an_attempt_whose_worker_died_is_given_back_and_processed(
    installation, receiver, run_tasks, fast_retries
):
    from django.utils import timezone

    from tenants.tasks import check_webhook_delivery

    calls = []
    receiver(lambda sender, delivery, **kwargs: calls.append(delivery.attempts))
    delivery = record(installation).delivery
    # A worker claimed the delivery, then died: the row says processing, nothing will finish it.
    started = timezone.now()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(state="processing", attempts=1, started_at=started)
    DBTaskResult.objects.all().delete()
    check_webhook_delivery.enqueue(delivery.pk, started.isoformat())  # the claim's watchdog, now due
    run_tasks()
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, calls) == ("done", 2, [2])
    # A watchdog of an attempt that ended changes nothing.
    check_webhook_delivery.enqueue(delivery.pk, delivery.started_at.isoformat())
    run_tasks()
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, calls) == ("done", 2, [2])


def test_a_stale_watchdog_never_touches_a_later_attempt(installation, receiver, run_tasks, settings):
    # The reviewer's race: attempt 1 is parked, "retry now" starts a new attempt 1, and attempt
    # 1's old watchdog must not park the new one (watchdogs are keyed by the claim's start).
    settings.TENANTS = {**settings.TENANTS, "WEBHOOK_MAX_ATTEMPTS": 1, "WEBHOOK_RETRY_DELAY": 0}
    broken = receiver(lambda sender, **kwargs: (_ for _ in ()).throw(ReceiverBroke()))
    record(installation)
    run_tasks()
    delivery = WebhookDelivery.objects.get()
    old_start = delivery.started_at
    assert delivery.state == "failed"
    signals.webhook_received.disconnect(broken, sender=WebhookDelivery)
    assert deliveries.retry_now(delivery, actor="op")
    from django.utils import timezone

    # The new attempt 1 is claimed (a new start) and runs.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        state="processing", attempts=1, started_at=timezone.now()
    )
    assert deliveries.check_delivery(delivery.pk, old_start.isoformat()) == "ok"
    assert WebhookDelivery.objects.get(pk=delivery.pk).state == "processing"


def test_a_slow_attempt_overtaken_by_its_watchdog_still_ends_done(installation, receiver, fast_retries):
    # The reviewer's race: the watchdog fires while the attempt still runs (it looked dead) and
    # gives the delivery back; the attempt then succeeds. Before, its success was thrown away.
    def slow(sender, delivery, **kwargs):
        assert deliveries.check_delivery(delivery.pk, delivery.started_at.isoformat()) == "retry"

    receiver(slow)
    delivery = record(installation).delivery
    assert deliveries.process_delivery(delivery.pk) == "done"
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("done", 1)


def test_a_hung_receiver_is_cut_off_at_the_deadline_and_frees_its_worker(installation, receiver, settings):
    import time

    settings.TENANTS = {**settings.TENANTS, "WEBHOOK_PROCESSING_TIMEOUT": 1, "WEBHOOK_RETRY_DELAY": 0}
    receiver(lambda sender, **kwargs: time.sleep(30))
    delivery = record(installation).delivery
    assert deliveries.process_delivery(delivery.pk) == "retry"  # cut off after 1 s, not 30
    delivery.refresh_from_db()
    assert (delivery.state, delivery.error_type) == ("pending", "tenants.deliveries.AttemptTimedOut")


@pytest.mark.parametrize("raised", [SystemExit, KeyboardInterrupt])
def test_a_receiver_raising_systemexit_leaks_no_text_and_is_retried(installation, receiver, raised, caplog):
    receiver(lambda sender, **kwargs: (_ for _ in ()).throw(raised(PRIVATE)))
    delivery = record(installation).delivery
    with pytest.raises(deliveries.AttemptInterrupted) as info:
        deliveries.process_delivery(delivery.pk)
    assert PRIVATE not in str(info.value) and info.value.__cause__ is None and info.value.__suppress_context__
    delivery.refresh_from_db()
    assert delivery.state == "pending" and delivery.error_type.endswith(raised.__name__)
    assert PRIVATE not in caplog.text


def test_sweep_queues_a_pending_delivery_whose_task_was_lost(installation, receiver, run_tasks, settings):
    from datetime import timedelta

    from django.utils import timezone

    calls = []
    receiver(lambda sender, delivery, **kwargs: calls.append(delivery.pk))
    delivery = record(installation).delivery
    DBTaskResult.objects.all().delete()  # the task was lost (a worker died before claiming it)
    assert deliveries.sweep() == 0  # not overdue yet
    later = timezone.now() + timedelta(seconds=deliveries.watchdog_delay() + 1)
    assert deliveries.sweep(now=later) == 1
    assert deliveries.sweep(now=later) == 0  # marked: not queued twice in one period
    run_tasks()
    assert calls == [delivery.pk]


def test_claims_arm_one_watchdog_per_minute_covering_their_attempts(installation, run_tasks, settings):
    settings.TENANTS = {**settings.TENANTS, "WEBHOOK_PROCESSING_TIMEOUT": 900}
    record(installation, identifier="one")
    record(installation, identifier="two")
    run_tasks()
    started = list(WebhookDelivery.objects.values_list("started_at", flat=True))
    watchdogs = list(DBTaskResult.objects.filter(task_path="tenants.tasks.check_webhook_deliveries"))
    assert DBTaskResult.objects.filter(task_path="tenants.tasks.check_webhook_delivery").count() == 0
    # One per window of claims (the claims of one test fall in one or two windows), not one each...
    assert 1 <= len(watchdogs) <= 2 and watchdogs[0].args_kwargs == {"args": [], "kwargs": {}}
    # ...each due after the deadline and grace (900 + 60 s) of every attempt it covers, within
    # a window (60 s) of it.
    latest = max(started)
    due = max(w.run_after for w in watchdogs)
    assert 960 <= (due - latest).total_seconds() <= 1020


def test_a_watchdog_gives_back_an_attempt_whose_worker_died(installation, receiver, run_tasks, fast_retries):
    from datetime import timedelta

    from django.utils import timezone

    calls = []
    receiver(lambda sender, delivery, **kwargs: calls.append(delivery.attempts))
    delivery = record(installation).delivery
    # A worker claimed the delivery, then died: the row says processing, nothing will finish it.
    started = timezone.now()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(state="processing", attempts=1, started_at=started)
    DBTaskResult.objects.all().delete()
    assert deliveries.sweep() == 0  # not overdue yet: a live worker may still end it
    later = started + timedelta(seconds=deliveries.watchdog_delay() + 1)
    assert deliveries.sweep(now=later) == 1  # what the watchdog task runs, once due
    assert DBTaskResult.objects.count() == 1  # one retry queued for it, not a second by the pending scan
    run_tasks()
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, calls) == ("done", 2, [2])


def test_a_task_never_carries_the_body(installation):
    record(installation, body=f'{{"summary": "{PRIVATE}"}}')
    assert PRIVATE not in repr(list(DBTaskResult.objects.values_list("args_kwargs", flat=True)))


def test_summary_counts_what_is_not_done(installation, receiver, run_tasks, fast_retries):
    record(installation, "ok")
    run_tasks()
    receiver(lambda sender, **kwargs: (_ for _ in ()).throw(ReceiverBroke()))
    record(installation, "broken")
    run_tasks()
    record(installation, "new")
    assert deliveries.summary() == {"pending": 1, "processing": 0, "failed": 1}


def test_a_task_backend_that_refuses_fails_the_request_and_keeps_nothing(installation, monkeypatch):
    from tenants import tasks

    def refuse(*args, **kwargs):
        raise ConnectionError("redis down")

    monkeypatch.setattr(type(tasks.process_webhook_delivery), "enqueue", refuse)
    with pytest.raises(deliveries.EnqueueFailed):
        record(installation)
    assert not WebhookDelivery.objects.exists()


# --- The RQ backend (TASKS_RQ_URL): a real Redis on 127.0.0.1:6379, database 15 ------------------


def rq_backend(settings, url):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]}}
    settings.RQ_QUEUES = {"default": {"URL": f"{url}?socket_connect_timeout=2"}}


@pytest.fixture
def redis_queue(settings):
    import django_rq
    import redis

    url = "redis://127.0.0.1:6379/15"
    try:
        redis.Redis.from_url(url).ping()
    except redis.RedisError:
        pytest.skip("needs Redis on 127.0.0.1:6379 (make test has it)")
    rq_backend(settings, url)
    queue = django_rq.get_queue("default")
    _drop_rq_keys(queue.connection)
    yield queue
    _drop_rq_keys(queue.connection)


def _drop_rq_keys(connection):
    """RQ's own keys only (its queues, jobs and registries), never the rest of the database."""
    keys = list(connection.scan_iter(match="rq:*"))
    if keys:
        connection.delete(*keys)


def test_with_the_rq_backend_a_delivery_is_queued_in_redis_and_processed_by_its_worker(
    installation, receiver, redis_queue
):
    from django_tasks_rq.backend import Job
    from rq import SimpleWorker

    calls = []
    receiver(lambda sender, delivery, body, **kwargs: calls.append(body))
    record(installation)
    assert redis_queue.count == 1 and calls == []
    SimpleWorker([redis_queue], connection=redis_queue.connection, job_class=Job).work(burst=True)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, calls) == ("done", [{"issue": {"key": "ABC-1"}}])


def test_with_the_rq_backend_a_task_ahead_of_its_row_looks_again(installation, redis_queue):
    # A task that runs before the delivery's row committed (RQ is outside the transaction).
    assert deliveries.process_delivery(987654) == "waiting"
    assert deliveries.process_delivery(987654, deliveries.MISSING_ROW_LOOKS) == "skipped"


def test_with_redis_down_a_webhook_is_a_503_and_nothing_is_stored(tenant, tenant_call, settings):
    rq_backend(settings, "redis://127.0.0.1:1/0")  # nothing listens on port 1
    response = tenant_call(
        "/webhooks/jira:issue_created",
        {"webhookEvent": "jira:issue_created"},
        headers={"X-Atlassian-Webhook-Identifier": "r-1"},
    )
    assert (response.status_code, response.json()["error"]) == (503, "task_queue_unavailable")
    assert response["Retry-After"]
    assert not WebhookDelivery.objects.exists()  # nothing acknowledged, nothing half-stored


def test_the_requeue_command_runs_the_sweep(installation):
    from io import StringIO

    from django.core.management import call_command

    record(installation)
    out = StringIO()
    call_command("requeue_webhook_deliveries", stdout=out)
    assert out.getvalue() == "deliveries given back or queued again: 0\n"


def test_retry_now_is_one_attempt_so_a_still_broken_receiver_is_failed_again_at_once(
    installation, receiver, run_tasks, fast_retries
):
    receiver(lambda sender, **kwargs: (_ for _ in ()).throw(ReceiverBroke()))
    record(installation)
    run_tasks()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts) == ("failed", 3)
    assert deliveries.retry_now(delivery, actor="op")
    run_tasks()
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("failed", 3)  # not pending through a new backoff
    assert deliveries.discard(delivery, actor="op")  # and so an operator can discard it now


def test_a_claim_that_could_not_commit_its_watchdog_leaves_it_to_the_next(installation, monkeypatch):
    # The reviewer's case: the window's first claim rolled back after marking the window armed.
    from django.db import DatabaseError

    first, second = (
        record(installation, identifier="a").delivery,
        record(installation, identifier="b").delivery,
    )
    DBTaskResult.objects.all().delete()
    real = deliveries._arm_watchdog

    def broken(watchdog):
        monkeypatch.setattr(deliveries, "_arm_watchdog", real)
        raise DatabaseError("connection lost")

    monkeypatch.setattr(deliveries, "_arm_watchdog", broken)
    with pytest.raises(DatabaseError):
        deliveries.process_delivery(first.pk)
    assert WebhookDelivery.objects.get(pk=first.pk).state == "pending"  # the claim rolled back too
    deliveries.process_delivery(second.pk)
    assert DBTaskResult.objects.filter(task_path="tenants.tasks.check_webhook_deliveries").count() == 1
