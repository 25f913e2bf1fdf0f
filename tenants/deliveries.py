"""Webhook deliveries, at least once: stored durably before Jira gets its 2xx, processed by a
background task off Jira's clock, retried with backoff, parked when they keep failing.

The life of a delivery (``WebhookDelivery.state``)::

    record_webhook (request)  ->  pending  --process_delivery (task)-->  processing  -->  done
                                     ^                                        |
                                     +---- a receiver raised: retry later ----+--> failed (last attempt)
                                     +---- the worker died: the window's watchdog (sweep) gives it back

- :func:`record_webhook` inserts the delivery (its body encrypted with ``TENANT_SECRET_KEYS``) and
  enqueues its task inside one database transaction: with the database task backend the two
  commit together; with the RQ backend a Redis error rolls the row back (Jira gets a 5xx and
  retries), and a task that runs before the row has committed looks again a little later.
- :func:`process_delivery` claims the row (``pending`` -> ``processing``, one conditional UPDATE, so
  two tasks never both run it), sends ``tenants.signals.webhook_received`` under a deadline of
  ``WEBHOOK_PROCESSING_TIMEOUT`` (SIGALRM in ``db_worker``: a hung receiver frees its worker), and
  marks it ``done``. The first claim of each minute also queues a watchdog task, committed with
  the claim, for a minute after that minute's deadlines: it runs :func:`sweep`, which gives back
  every attempt still ``processing`` then (its worker died) and queues again a pending delivery
  whose task was lost.
- Receivers run at least once per delivery: a crash between a receiver and the ``done`` mark runs
  them again, so they must be idempotent.

Tasks use Django's Tasks framework API (``django_tasks``, the backport of Django 6's
``django.tasks``); the task functions are in ``tenants.tasks``.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from django.core.cache import cache
from django.db import DatabaseError, models, transaction
from django.db.models import F
from django.utils import timezone

from tenants import signals
from tenants.conf import tenant_settings
from tenants.fields import get_secret_box
from tenants.models import DeliveryState, Installation, WebhookDelivery
from tenants.rows import insert_row

logger = logging.getLogger(__name__)

# With a task queue outside the database (RQ), a task may run before its delivery's row has
# committed: it looks again after MISSING_ROW_WAIT seconds, up to MISSING_ROW_LOOKS times.
MISSING_ROW_WAIT = 2.0
MISSING_ROW_LOOKS = 5


class EnqueueFailed(Exception):
    """The task backend refused the delivery's task (Redis down with the RQ backend): the row
    rolls back and the request fails, so that Jira retries; nothing was acknowledged."""


@dataclass(frozen=True)
class DeliveryResult:
    """``created``: a new delivery (queued for processing); otherwise ``delivery`` is the stored one."""

    delivery: WebhookDelivery
    created: bool


class TenantChanged(Exception):
    """The tenant's row changed (uninstalled, reinstalled with a new secret, suspended) after the
    delivery was verified against it, so nothing was stored: verify it again from the database.
    Carries the ``clientKey`` only."""


class WebhookTokenReused(Exception):
    """The delivery's token was already used for another delivery (another identifier or body)."""

    def __init__(self, delivery: WebhookDelivery) -> None:
        self.delivery = delivery
        super().__init__(delivery.pk)


def _binding(client_key: str) -> str:
    """What a sealed body is bound to: its tenant, and its purpose (never a secret's binding)."""
    return f"webhook-body\x00{client_key}"


def seal_body(client_key: str, raw_body: str) -> str:
    """The body encrypted under the first ``TENANT_SECRET_KEYS`` key, bound to its tenant."""
    return get_secret_box().encrypt(raw_body, _binding(client_key))


def _forge_binding(forge_installation_pk: int) -> str:
    """A Forge event's body is bound to its installation's row (its id survives a reinstall)."""
    return f"forge-event\x00{forge_installation_pk}"


def seal_forge_body(forge_installation_pk: int, raw_body: str) -> str:
    """A Forge event's body encrypted under the first ``TENANT_SECRET_KEYS`` key, bound to its
    ``ForgeInstallation`` row."""
    return get_secret_box().encrypt(raw_body, _forge_binding(forge_installation_pk))


def open_body(delivery: WebhookDelivery) -> dict[str, Any]:
    """The delivery's body, decrypted and parsed. ``SecretDecryptionError`` if it does not
    decrypt; ``ValueError`` if it has been dropped (processed, ``STORE_WEBHOOK_BODIES`` off)."""
    if not delivery.body_sealed:
        raise ValueError(f"delivery {delivery.pk} has no stored body")
    if delivery.installation is None:
        binding = _forge_binding(cast(int, delivery.forge_installation_id))
    else:
        binding = _binding(delivery.installation.client_key)
    text = get_secret_box().decrypt(delivery.body_sealed, binding)
    body = json.loads(text)
    if not isinstance(body, dict):  # pragma: no cover - verification accepted only an object
        raise ValueError(f"delivery {delivery.pk} body is not a JSON object")
    return body


def record_webhook(
    installation: Installation,
    *,
    event: str,
    identifier: str,
    retry_count: int,
    raw_body: str,
    token_digest: str = "",
    body_digest: str = "",
) -> DeliveryResult:
    """Store a verified delivery once, with its processing task; return before it is processed.

    Deliveries are deduplicated by ``identifier`` (Jira's ``X-Atlassian-Webhook-Identifier``,
    stable across retries); one without an identifier is bound to its token (``token_digest``,
    SHA-256 hex). One ``INSERT ... ON CONFLICT DO NOTHING`` checks both unique constraints. A
    retry (the same identifier; or, without one, the same token and body) returns the stored row
    with ``created=False`` and queues nothing (a lost task is queued again by :func:`sweep`).
    The same token and identifier with another body, or the same
    identifier-less token with another body, raises :class:`WebhookTokenReused`.

    ``raw_body`` is the request body (verified JSON), stored encrypted. The row and its task
    commit in one transaction (database backend); database errors and :class:`EnqueueFailed`
    propagate, so Jira gets a 5xx and retries.

    ``installation`` is the tenant as verification read it (perhaps from the worker's
    ``tenant_cache``): the ``INSERT`` stores the row only if the tenant's row still holds the same
    state, suspension and sealed secret, in the same statement, else raises
    :class:`TenantChanged` and stores nothing.
    """
    delivery = WebhookDelivery(
        installation=installation,
        event=event,
        identifier=identifier,
        retry_count=retry_count,
        body_size=len(raw_body.encode("utf-8")),
        body_sealed=seal_body(installation.client_key, raw_body),
        token_digest=token_digest,
        body_digest=body_digest,
    )
    with transaction.atomic():  # the row and its task, or neither
        if not identifier and token_digest:
            # Bound by its token: that token must not have carried an identified delivery either
            # (one more query, for deliveries without an identifier only; Jira's carry one).
            earlier = WebhookDelivery.objects.filter(installation=installation, token_digest=token_digest)
            used = earlier.exclude(identifier="").first()
            if used is not None:
                if _changed(installation):  # verified with a tenant that has changed: verify again
                    raise TenantChanged(installation.client_key)
                raise WebhookTokenReused(used)
        if not _insert_unless_duplicate(delivery):
            if _changed(installation):
                raise TenantChanged(installation.client_key)
            return DeliveryResult(_earlier_delivery(delivery), created=False)
        _enqueue(delivery.pk)
    return DeliveryResult(delivery, created=True)


# What a verification relied on: the delivery is stored only while the row still holds these.
_VERIFIED_FIELDS = ("state", "suspended", "shared_secret")


def _changed(installation: Installation) -> bool:
    """Whether the row of ``installation`` (as verified) changed, or is gone, since it was read."""
    now = Installation.objects.for_verification(installation.client_key)
    return now is None or any(
        getattr(now, name) != getattr(installation, name) for name in ("id", *_VERIFIED_FIELDS)
    )


def _enqueue(delivery_id: int, *, run_after: datetime | None = None, looks: int = 0) -> None:
    """Queue ``process_delivery`` for a delivery (at ``run_after``, else now). In the caller's
    transaction with the database backend; :class:`EnqueueFailed` when the backend refuses."""
    from tenants.tasks import process_webhook_delivery

    task = process_webhook_delivery
    if run_after is not None:
        task = task.using(run_after=run_after)
    try:
        task.enqueue(delivery_id, looks)
    except DatabaseError:
        raise  # the database backend: the request's own database error (503 database_unavailable)
    except Exception as exc:  # another backend's own errors (redis.ConnectionError...)
        logger.error("delivery %s: the task backend refused its task (%s)", delivery_id, type(exc).__name__)
        raise EnqueueFailed(type(exc).__name__) from exc


def enqueue_new_delivery(delivery_id: int) -> None:
    """Queue the processing task of a delivery just inserted, in the caller's transaction
    (``tenants.forge.record_event``); ``EnqueueFailed`` when the task backend refuses."""
    _enqueue(delivery_id)


def _earlier_delivery(delivery: WebhookDelivery) -> WebhookDelivery:
    """The stored delivery a conflicting one repeats; :class:`WebhookTokenReused` if it is another."""
    rows = WebhookDelivery.objects.filter(installation=delivery.installation)
    if delivery.identifier:
        same = rows.filter(identifier=delivery.identifier).first()
        if same is not None:
            if same.token_digest == delivery.token_digest and same.body_digest != delivery.body_digest:
                raise WebhookTokenReused(same)  # the same token and identifier with another body
            return same  # Jira's retry (the same or a fresh token)
    earlier = rows.filter(identifier="", token_digest=delivery.token_digest).first()
    if earlier is None:
        # Nothing conflicts: the guard refused the row, though the tenant reads the same now (it
        # changed and changed back, or the conflicting row was pruned meanwhile). Verify again.
        raise TenantChanged(delivery.sender)
    if not delivery.identifier and not earlier.identifier and earlier.body_digest == delivery.body_digest:
        return earlier  # a retry of a delivery without identifier: bound by its token
    raise WebhookTokenReused(earlier)


_DELIVERY_FIELDS = (
    "installation",
    "event",
    "identifier",
    "retry_count",
    "received_at",
    "body_size",
    "body_sealed",
    "token_digest",
    "body_digest",
    "state",
    "attempts",
    "error_type",
)


def _insert_unless_duplicate(delivery: WebhookDelivery) -> bool:
    """``INSERT ... ON CONFLICT DO NOTHING RETURNING id``: one round trip, no exception, no savepoint.

    Returns False when a unique constraint already holds the row, or when the delivery's
    installation no longer holds its verified state, suspension and secret.
    """
    connection = transaction.get_connection()
    pk = insert_row(
        connection,
        delivery,
        _DELIVERY_FIELDS,
        skip_conflicts=True,
        unless_changed=(cast(Installation, delivery.installation), _VERIFIED_FIELDS),
    )
    if pk is None:
        return False
    delivery.pk = pk
    delivery._state.adding = False
    delivery._state.db = connection.alias
    return True


# --- Processing (the task side) -----------------------------------------------------------------


def retry_delay(attempt: int) -> float:
    """Seconds before attempt ``attempt + 1``: ``WEBHOOK_RETRY_DELAY x 2^(attempt-1)``, capped at
    ``WEBHOOK_RETRY_MAX_DELAY``, with "equal jitter" (a uniform draw in its upper half)."""
    ceiling = min(
        tenant_settings.WEBHOOK_RETRY_MAX_DELAY,
        tenant_settings.WEBHOOK_RETRY_DELAY * 2 ** max(0, attempt - 1),
    )
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - spreads retries, not a secret


class AttemptTimedOut(BaseException):
    """Raised inside a receiver when its attempt has run ``WEBHOOK_PROCESSING_TIMEOUT`` seconds
    (a ``BaseException``, so that ``send_robust`` and a receiver's ``except Exception`` let it
    through): the worker is freed, and the delivery is retried."""


class WorkerLost(Exception):
    """An attempt was still ``processing`` well after ``WEBHOOK_PROCESSING_TIMEOUT``: its worker
    died (killed, out of memory, its machine lost); the delivery is given back for a retry."""


class AttemptInterrupted(Exception):
    """What a task re-raises, without text, when a receiver raised ``SystemExit`` or
    ``KeyboardInterrupt`` (the attempt is recorded as failed first)."""


# The watchdog looks this long (at most; the timeout itself when shorter) after an attempt's
# deadline: a live worker has ended the attempt by then (its alarm fired), so one still
# processing belongs to a worker that died.
WATCHDOG_GRACE = 60


def watchdog_delay() -> int:
    """Seconds from an attempt's start to its watchdog: the deadline plus the grace."""
    timeout = tenant_settings.WEBHOOK_PROCESSING_TIMEOUT
    return timeout + min(WATCHDOG_GRACE, timeout)


def _watchdog_window() -> int:
    """Seconds of claims one watchdog covers: the grace (at most a minute)."""
    return min(WATCHDOG_GRACE, tenant_settings.WEBHOOK_PROCESSING_TIMEOUT)


# The last window whose watchdog this process armed or found armed, by window length.
_armed: dict[int, int] = {}


@dataclass(frozen=True)
class _Watchdog:
    """The watchdog of one window of claims: when it runs, and the cache key that says it is armed."""

    when: datetime
    window: int
    bucket: int

    @property
    def key(self) -> str:
        return f"tenants:delivery-watchdog:{self.window}:{self.bucket}"


def _watchdog_to_arm(started: datetime) -> _Watchdog | None:
    """The watchdog covering an attempt that starts at ``started``, if this claim is the first of
    its window to ask (the Django cache says; shared by every worker with Redis), else None: one
    watchdog task per window of claims, not one per attempt. A cache that cannot answer arms one
    anyway (a spare watchdog costs one sweep). A claim that then fails to commit it must call
    :func:`_disarm`, so that a later claim of the window arms it."""
    window = _watchdog_window()
    due = int(started.timestamp()) + watchdog_delay()
    bucket = due // window
    if _armed.get(window) == bucket:
        return None  # this process armed (or saw armed) this window's watchdog: no cache call
    _armed[window] = bucket
    watchdog = _Watchdog(datetime.fromtimestamp((bucket + 1) * window, tz=UTC), window, bucket)
    try:
        first = cache.add(watchdog.key, 1, timeout=window * 3)
    except Exception as exc:  # the cache is an optimisation here, never a reason to fail
        logger.warning("delivery watchdog: the cache did not answer (%s); arming one", type(exc).__name__)
        first = True
    return watchdog if first else None


def _disarm(watchdog: _Watchdog) -> None:
    """The claim that was to commit ``watchdog`` rolled back: let the next claim arm it."""
    _armed.pop(watchdog.window, None)
    try:
        cache.delete(watchdog.key)
    except Exception as exc:  # a cache that cannot answer lets every claim arm one anyway
        logger.warning("delivery watchdog: the cache did not answer (%s)", type(exc).__name__)


def _arm_watchdog(watchdog: _Watchdog) -> None:
    """Queue the watchdog sweep at its time (in the caller's transaction, database backend)."""
    from tenants.tasks import check_webhook_deliveries

    check_webhook_deliveries.using(run_after=watchdog.when).enqueue()


@contextmanager
def attempt_deadline(seconds: int) -> Iterator[None]:
    """Raise :class:`AttemptTimedOut` in this thread after ``seconds`` (SIGALRM). Only on the main
    thread of a process whose SIGALRM is free (``manage.py db_worker``); elsewhere (RQ's job
    timeout, a test's thread) nothing is armed, and the watchdog remains the bound."""
    usable = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGALRM) in (
        signal.SIG_DFL,
        signal.SIG_IGN,
        None,
    )
    if not usable:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise AttemptTimedOut()

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)


def process_delivery(delivery_id: int, looks: int = 0) -> str:
    """Run ``webhook_received`` for one delivery, once it is claimed; returns what happened
    (``"done"``, ``"retry"``, ``"failed"``, ``"skipped"`` when it was not pending, ``"waiting"``
    when its row is not visible yet: see ``MISSING_ROW_WAIT``). No exception with text leaves
    it: a receiver's ``SystemExit``/``KeyboardInterrupt`` becomes :class:`AttemptInterrupted`."""
    from tenants.tasks import uses_database_backend

    now = timezone.now()
    watchdog = _watchdog_to_arm(now)
    try:
        with transaction.atomic() if watchdog else nullcontext():
            if watchdog:
                # First of its window: armed whatever this claim finds (the window counts on it),
                # and committed with the claim, so that a worker that dies now leaves a way back.
                _arm_watchdog(watchdog)
            claimed = WebhookDelivery.objects.filter(pk=delivery_id, state=DeliveryState.PENDING).update(
                state=DeliveryState.PROCESSING,
                attempts=F("attempts") + 1,
                started_at=now,
                next_attempt_at=None,
            )
            if not claimed:
                exists = WebhookDelivery.objects.filter(pk=delivery_id).exists()
                if not exists and not uses_database_backend() and looks < MISSING_ROW_LOOKS:
                    later = now + timedelta(seconds=MISSING_ROW_WAIT)
                    _enqueue(delivery_id, run_after=later, looks=looks + 1)
                    return "waiting"  # queued outside the database, before its row committed
                return "skipped"  # done, failed, taken by another task, or gone (rolled back, pruned)
    except BaseException:
        if watchdog:
            _disarm(watchdog)  # not committed: the window's next claim arms it
        raise
    delivery = WebhookDelivery.objects.for_processing(delivery_id)
    if delivery is None:  # pragma: no cover - claimed above; pruned meanwhile
        return "skipped"
    timeout = tenant_settings.WEBHOOK_PROCESSING_TIMEOUT
    try:
        with attempt_deadline(timeout):
            body = open_body(delivery)
            forge = delivery.forge_installation
            if forge is not None:  # a Forge event (tenants.forge)
                sent = signals.forge_event_received.send_robust(
                    sender=WebhookDelivery,
                    forge_installation=forge,
                    installation=forge.tenant,
                    event=delivery.event,
                    body=body,
                    delivery=delivery,
                )
            else:
                sent = signals.webhook_received.send_robust(
                    sender=WebhookDelivery,
                    installation=delivery.installation,
                    event=delivery.event,
                    body=body,
                    delivery=delivery,
                )
            for receiver, result in sent:
                if isinstance(result, Exception):
                    logger.error(
                        "webhook receiver %s failed for delivery %s (%s)",
                        getattr(receiver, "__qualname__", receiver),
                        delivery.pk,
                        type(result).__name__,
                    )
                    return _failed(delivery, result)
    except (SystemExit, KeyboardInterrupt) as exc:
        logger.error("delivery %s: a receiver raised %s", delivery.pk, type(exc).__name__)
        _failed(delivery, exc)
        raise AttemptInterrupted(type(exc).__name__) from None
    except BaseException as exc:  # AttemptTimedOut, a body that does not decrypt (a key removed)...
        logger.error("delivery %s could not be processed (%s)", delivery.pk, type(exc).__name__)
        return _failed(delivery, exc)
    # Done, whatever attempt is current: a slow attempt that a retry overtook still succeeded.
    WebhookDelivery.objects.filter(
        pk=delivery.pk, state__in=(DeliveryState.PROCESSING, DeliveryState.PENDING)
    ).update(
        state=DeliveryState.DONE,
        finished_at=timezone.now(),
        error_type="",
        next_attempt_at=None,
        **({} if tenant_settings.STORE_WEBHOOK_BODIES else {"body_sealed": ""}),
    )
    return "done"


def _error_type(exc: BaseException) -> str:
    kind = type(exc)
    return f"{kind.__module__}.{kind.__qualname__}"[:200]


def _failed(delivery: WebhookDelivery, exc: BaseException) -> str:
    """After a failed attempt: pending again with a retry task at its time, or parked as failed.
    Only while the attempt is still the current one (``started_at``); else nothing changes."""
    now = timezone.now()
    mine = WebhookDelivery.objects.filter(
        pk=delivery.pk, state=DeliveryState.PROCESSING, started_at=delivery.started_at
    )
    if delivery.attempts >= tenant_settings.WEBHOOK_MAX_ATTEMPTS:
        if mine.update(state=DeliveryState.FAILED, error_type=_error_type(exc), finished_at=now):
            logger.error(
                "delivery %s parked as failed after %s attempts (%s)",
                delivery.pk,
                delivery.attempts,
                _error_type(exc),
            )
        return "failed"
    when = now + timedelta(seconds=retry_delay(delivery.attempts))
    with transaction.atomic():
        if mine.update(state=DeliveryState.PENDING, error_type=_error_type(exc), next_attempt_at=when):
            _enqueue(delivery.pk, run_after=when)
    return "retry"


def check_delivery(delivery_id: int, started: str) -> str:
    """The watchdog of one attempt (the one that started at ``started``, ISO 8601): if it is still
    ``processing``, its worker died; count it as failed (:class:`WorkerLost`) and retry or park
    the delivery. Returns ``"ok"`` when the attempt had ended."""
    delivery = (
        WebhookDelivery.objects.select_related("installation")
        .filter(pk=delivery_id, state=DeliveryState.PROCESSING, started_at=datetime.fromisoformat(started))
        .first()
    )
    if delivery is None:
        return "ok"
    logger.error(
        "delivery %s: its attempt of %s never ended; its worker is presumed dead", delivery_id, started
    )
    return _failed(delivery, WorkerLost())


def sweep(*, now: datetime | None = None) -> int:
    """Give back what a dead worker or a lost task left behind; returns how many deliveries.

    An attempt still ``processing`` :func:`watchdog_delay` seconds after it started belongs to a
    worker that died (a live one ends it at its deadline): it counts as failed
    (:class:`WorkerLost`) and is retried, or parked once its attempts are spent. A ``pending``
    delivery overdue by as long lost its task (a worker died between taking the task and
    claiming the delivery, or RQ lost the job): it is queued again. Extra tasks are harmless:
    only one claims a delivery. The watchdog tasks that claims arm run it (one per minute of
    claims); ``manage.py requeue_webhook_deliveries`` runs it too, from cron every few minutes,
    for the quiet periods."""
    now = now or timezone.now()
    overdue = now - timedelta(seconds=watchdog_delay())
    given_back: set[int] = set()
    lost = WebhookDelivery.objects.filter(state=DeliveryState.PROCESSING, started_at__lt=overdue)
    for pk, started in lost.values_list("pk", "started_at").iterator():
        delivery = WebhookDelivery.objects.for_processing(pk)
        if delivery is None or delivery.state != DeliveryState.PROCESSING or delivery.started_at != started:
            continue  # ended meanwhile
        logger.error("delivery %s: its attempt of %s never ended; its worker is presumed dead", pk, started)
        _failed(delivery, WorkerLost())  # its retry is queued (or it is parked) here
        given_back.add(pk)
    stale = WebhookDelivery.objects.filter(state=DeliveryState.PENDING).filter(
        models.Q(next_attempt_at__lt=overdue)
        | models.Q(next_attempt_at__isnull=True, received_at__lt=overdue)
    )
    for pk in stale.values_list("pk", flat=True).iterator():
        if pk in given_back:
            continue
        with transaction.atomic():
            # Marked due now, so that the next sweep waits a full period before queueing it again.
            if WebhookDelivery.objects.filter(pk=pk, state=DeliveryState.PENDING).update(next_attempt_at=now):
                _enqueue(pk)
                given_back.add(pk)
    return len(given_back)


def retry_now(delivery: WebhookDelivery, *, actor: str) -> bool:
    """Admin's *retry now*: a failed delivery becomes pending for one more attempt, queued at
    once (done, or failed again right after it: an operator retries after a fix, and a receiver
    still broken must not keep it pending through a whole new backoff), and the tenant's history
    records ``actor`` (the operator). False when it was not failed (pending deliveries have a
    retry queued already) or its body is gone: nothing changes then."""
    changes = {
        "state": DeliveryState.PENDING,
        # The next attempt is the last of the budget, whatever the count so far.
        "attempts": max(0, tenant_settings.WEBHOOK_MAX_ATTEMPTS - 1),
        "next_attempt_at": None,
        "finished_at": None,
    }
    return _operator_action(delivery, actor, "retry_delivery", changes, "retried now (one more attempt)", "")


def discard(delivery: WebhookDelivery, *, actor: str) -> bool:
    """Admin's *discard*: a failed delivery an operator gives up on becomes ``discarded``, its
    body (users' data) dropped, recorded in the tenant's history with ``actor``. False when it
    was not failed: nothing changes then."""
    changes = {"state": DeliveryState.DISCARDED, "body_sealed": "", "finished_at": timezone.now()}
    return _operator_action(
        delivery, actor, "discard_delivery", changes, "discarded", "; its body was dropped"
    )


def _operator_action(
    delivery: WebhookDelivery, actor: str, action: str, changes: dict[str, Any], done: str, after: str
) -> bool:
    """Apply an operator's ``changes`` to a failed delivery (locked, so the history line tells
    the state it changed), queue it again when it goes back to pending, and record ``action``
    with ``actor`` in the tenant's history, in one transaction. False when it was not failed."""
    from tenants.services import record_admin_action

    with transaction.atomic():
        row = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("installation", "forge_installation")
            .filter(pk=delivery.pk, state=DeliveryState.FAILED)
            .exclude(body_sealed="")
            .first()
        )
        if row is None:
            return False
        WebhookDelivery.objects.filter(pk=row.pk).update(**changes)
        if changes["state"] == DeliveryState.PENDING:
            _enqueue(row.pk)
        record_admin_action(
            row.sender,
            action,
            actor,
            f"Webhook delivery {row.pk} ({row.event}, identifier {row.identifier[:80]!r}) {done} after "
            f"{row.attempts} failed attempt(s) (last error {row.error_type or 'none'}){after}.",
        )
    return True


def summary() -> Mapping[str, int]:
    """Counts of deliveries not done, by state: the admin dashboard's backlog and failures."""
    rows = (
        WebhookDelivery.objects.exclude(state__in=(DeliveryState.DONE, DeliveryState.DISCARDED))
        .values("state")
        .annotate(count=models.Count("pk"))
        .order_by()
    )
    counts: dict[str, int] = {
        str(state): 0 for state in (DeliveryState.PENDING, DeliveryState.PROCESSING, DeliveryState.FAILED)
    }
    counts.update({str(row["state"]): int(row["count"]) for row in rows})
    return counts
