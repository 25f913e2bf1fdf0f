"""The audit history: one row per Connect request that was verified, refused or ignored, and
per operator action, written only through ``LifecycleEvent.objects``; the tallies the admin
dashboard sums; the failed-verifications view of it for admin.

The tables keep the names they had under ``tenants`` (``tenants_lifecycleevent`` ...): moving
the models here (migration ``audit.0001``) changed no table.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
from collections.abc import Mapping
from typing import Any

from django.core.cache import cache
from django.db import connections, models
from django.db.models import Q
from django.utils import timezone

from tenants.conf import tenant_settings
from tenants.models import BODY_FIELDS, SECRET_FIELDS
from tenants.rows import insert_row


def safe_text(value: str) -> str:
    """Text any database stores: NULs and unpaired surrogates escaped, nothing else changed."""
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


EXCERPT_FIELD_CHARS = 100


def body_excerpt(body: Any) -> Any:
    """A bounded excerpt of an unverified request's body: the known lifecycle fields, shortened.

    Work and storage do not grow with the body (a hostile body can be 64 KB of anything), and the
    shared secret is never kept. None for no body.
    """
    if body is None:
        return None
    if not isinstance(body, Mapping):
        return {"_excerpt": True, "_type": type(body).__name__}
    excerpt: dict[str, Any] = {"_excerpt": True}
    for name in BODY_FIELDS:
        value = body.get(name)
        if value is not None and name not in SECRET_FIELDS:
            excerpt[name] = safe_text(str(value))[:EXCERPT_FIELD_CHARS]
    return excerpt


def cleanse_body(body: Any, max_bytes: int | None = None) -> Any:
    """A copy of a request body fit for the audit trail: secrets masked, size capped."""
    limit = tenant_settings.AUDIT_BODY_MAX_BYTES if max_bytes is None else max_bytes

    def mask(value: Any, depth: int = 0) -> Any:
        if depth > 32:
            return "[nested too deep]"
        if isinstance(value, Mapping):
            return {
                safe_text(str(k)): ("********" if str(k) in SECRET_FIELDS else mask(v, depth + 1))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [mask(v, depth + 1) for v in value]
        if isinstance(value, str):
            return safe_text(value)
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)  # NaN/Infinity: not JSON, refused by databases
        return value

    cleansed = mask(body)
    encoded = json.dumps(cleansed, ensure_ascii=False, default=str)
    if len(encoded.encode("utf-8")) <= limit:
        return cleansed
    # Too large: keep the known lifecycle fields, each shortened, and say so.
    summary: dict[str, Any] = {"_truncated": True, "_original_bytes": len(encoded.encode("utf-8"))}
    if isinstance(cleansed, Mapping):
        for name in BODY_FIELDS:
            if name in cleansed:
                summary[name] = str(cleansed[name])[:200]
    return summary


class LifecycleEventManager(models.Manager["LifecycleEvent"]):
    """The one way audit rows are written."""

    def record(
        self,
        *,
        event_type: str,
        outcome: str,
        client_key: str = "",
        reason: str = "",
        detail: str = "",
        key_id: str = "",
        token_fingerprint: str = "",
        remote_addr: str | None = None,
        path: str = "",
        actor: str = "",
        body: Any = None,
        verified: bool = False,
    ) -> LifecycleEvent:
        """Write one audit row, cleansed and capped (secrets masked, texts cut to their columns).

        Inside a transaction the row joins it: it commits with the change it records, or not at
        all. A refused request's row survives its transaction's rollback because the verification
        middleware writes it after that transaction has ended (``audit.records``).

        ``verified``: the row's ``client_key`` was proven (a verified token for that tenant, or an
        operator's action). Otherwise it is only what an unauthenticated request claimed: such a
        row never counts as the tenant's history.
        """
        event = self.model(
            client_key=safe_text(client_key)[:255],
            event_type=safe_text(event_type)[:32],
            outcome=outcome,
            reason=safe_text(reason)[:64],
            detail=safe_text(detail)[:1000],
            key_id=safe_text(key_id)[:256],
            token_fingerprint=token_fingerprint[:16],
            remote_addr=remote_addr or None,
            path=safe_text(path)[:512],
            actor=safe_text(actor)[:150],
            body=None if body is None else cleanse_body(body),
            verified=verified,
        )
        connection = connections[self.db]
        event.pk = insert_row(
            connection, event, _RECORD_FIELDS
        )  # the ORM's save() compiled its SQL each time
        event._state.adding, event._state.db = False, self.db
        return event

    def fold_or_record(self, **fields: Any) -> LifecycleEvent | None:
        """Record an unverified rejection, folded into the same kind's row of the last minutes.

        Requests that carry no verified identity cost nothing to send, so each (event, outcome,
        reason, source address; an IPv6 /64 is one source) gets one row per
        ``AUDIT_FOLD_SECONDS``: later ones add to its ``count`` and ``last_seen_at`` instead of
        adding rows, and their body is kept only as a
        short excerpt of the known lifecycle fields. Returns the new row, or None when folded.
        """
        fields["body"] = body_excerpt(fields.get("body"))
        source = str(fields.get("remote_addr") or "")
        if ":" in source:  # an IPv6 host owns a /64: one source
            source = str(ipaddress.ip_network(f"{source}/64", strict=False))
        # The event names the route (a webhook's path holds an event name the sender chooses).
        parts = [str(fields.get(name) or "") for name in ("event_type", "outcome", "reason")] + [source]
        key = "connect:fold:" + hashlib.sha256("\x00".join(parts).encode("utf-8", "replace")).hexdigest()[:40]
        try:
            known = cache.get(key)
        except Exception:  # no shared cache: record the row unfolded
            known = None
        if known is not None:
            updated = self.filter(pk=known).update(count=models.F("count") + 1, last_seen_at=timezone.now())
            if updated:
                return None
        event = self.record(**fields)
        try:
            cache.set(key, event.pk, tenant_settings.AUDIT_FOLD_SECONDS)
        except Exception:  # noqa: S110 - the row is written; folding is an optimisation
            pass
        return event


class LifecycleEvent(models.Model):
    """One lifecycle request, rejected Connect request, or operator action. Append-only."""

    class Outcome(models.TextChoices):
        ACCEPTED = "accepted", "accepted"
        REJECTED = "rejected", "rejected"
        IGNORED = "ignored", "ignored"

    # A plain string, not a foreign key: the history outlives the tenant's row.
    client_key = models.CharField(max_length=255, blank=True, db_index=True)
    event_type = models.CharField(max_length=32)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    reason = models.CharField(max_length=64, blank=True, db_index=True)
    detail = models.TextField(blank=True)
    key_id = models.CharField(max_length=256, blank=True, db_index=True)
    token_fingerprint = models.CharField(max_length=16, blank=True, db_index=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    path = models.CharField(max_length=512, blank=True)
    actor = models.CharField(max_length=150, blank=True)
    body = models.JSONField(null=True, blank=True)
    # True when client_key was proven (a verified token, or an operator); else only claimed.
    verified = models.BooleanField(default=False)
    # Unverified rejections of one kind are folded: how many, and when the last one came.
    count = models.PositiveIntegerField(default=1)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)

    objects = LifecycleEventManager()

    class Meta:
        db_table = "tenants_lifecycleevent"  # created by tenants' migrations; moved here in 0001
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["outcome", "created_at"], name="event_outcome_time_idx"),
            # A tenant's verified history, newest first (its admin page, its "last event").
            models.Index(fields=["client_key", "verified", "-created_at"], name="event_tenant_history_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.outcome} {self.client_key or '-'}"

    def __repr__(self) -> str:
        return f"<LifecycleEvent {self.event_type} {self.outcome} {self.reason or '-'} {self.client_key!r}>"


class AuditTally(models.Model):
    """How many requests the audit rows of one quarter hour stand for, by kind, outcome and reason.

    What the admin dashboard sums instead of scanning 30 days of ``LifecycleEvent`` rows. A
    quarter hour is tallied once it is closed: past ``AUDIT_FOLD_SECONDS`` (no folded row of it
    can still grow) and a minute's margin. ``kind`` is ``lifecycle`` (installed, uninstalled,
    enabled, disabled), ``webhook``, ``not_connect`` (``lifecycle.models.NOT_A_CONNECT_CALL``) or
    ``other`` (operators' actions). Written by ``audit.dashboard.tally`` only; rows pruned
    from the history later stay counted here.
    """

    bucket = models.DateTimeField()  # the quarter hour's start, UTC
    kind = models.CharField(max_length=16)
    outcome = models.CharField(max_length=16)
    reason = models.CharField(max_length=64, blank=True)
    requests = models.BigIntegerField()

    class Meta:
        db_table = "tenants_audittally"
        constraints = [
            models.UniqueConstraint(
                fields=["bucket", "kind", "outcome", "reason"], name="audit_tally_unique"
            ),
        ]

    def __str__(self) -> str:
        reason = self.reason or "-"
        return f"{self.bucket:%Y-%m-%d %H:%M} {self.kind} {self.outcome} {reason}: {self.requests}"


class AuditTallyMark(models.Model):
    """One row: every quarter hour before ``tallied_until`` is in :class:`AuditTally`."""

    tallied_until = models.DateTimeField()

    class Meta:
        db_table = "tenants_audittallymark"

    def __str__(self) -> str:
        return f"tallied until {self.tallied_until:%Y-%m-%d %H:%M}"


# Rejected requests that were never Connect calls (bots, browsers, scanners): a wrong method on any
# route, or no token at all on a webhook route. Recorded like any rejection, counted apart from
# verification failures.
NOT_A_CONNECT_CALL = Q(reason="method_not_allowed") | Q(reason="missing_token", event_type="webhook")


class FailedVerification(LifecycleEvent):
    """The rejected requests of the audit history: a separate entry in admin for operators."""

    class Meta:
        proxy = True
        verbose_name = "failed verification"
        ordering = ["-created_at", "-id"]


# Every column of an audit row but its id (the database makes it).
_RECORD_FIELDS: tuple[str, ...] = tuple(
    f.name for f in LifecycleEvent._meta.concrete_fields if not f.primary_key
)
