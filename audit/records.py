"""From a Connect request to its audit row: what verification learns, what the view says it did,
and the one function that writes the row (called by the verification middleware only).

A view tells what happened by returning :func:`respond` with an :class:`Outcome`; a plain
response counts as accepted. Nothing is set on the request for the middleware to read back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError
from django.http import HttpResponse

from audit.models import LifecycleEvent

logger = logging.getLogger("lifecycle.requests")


@dataclass
class AuditContext:
    """What is known about a Connect request so far; filled by verification as it learns.

    ``verified``: ``client_key`` was proven by a verified token (else it is only claimed).
    """

    event: str
    path: str = ""
    remote_addr: str | None = None
    client_key: str = ""
    kid: str = ""
    token_fingerprint: str = ""
    body: dict[str, Any] | None = None
    verified: bool = False


@dataclass(frozen=True)
class Outcome:
    """What a verified call did, for its audit row.

    ``status``: ``accepted``; ``ignored`` (answered 2xx, nothing changed; ``reason`` says why
    when there is a reason code); or ``recorded`` (the call has a record of its own, such as a
    webhook delivery row: no audit row). ``detail``: one line for operators, no secrets.
    """

    status: str = LifecycleEvent.Outcome.ACCEPTED
    reason: str = ""
    detail: str = ""

    def __post_init__(self) -> None:
        if self.status not in ("accepted", "ignored", "recorded"):
            raise ValueError(f"an outcome is accepted, ignored or recorded, not {self.status!r}")


ACCEPTED = Outcome()
RECORDED = Outcome("recorded")


class VerifiedResponse(HttpResponse):
    """An empty response that carries the :class:`Outcome` of the call it answers."""

    def __init__(self, outcome: Outcome, status: int = 204) -> None:
        super().__init__(status=status)
        self.outcome = outcome


def respond(outcome: Outcome = ACCEPTED, status: int = 204) -> VerifiedResponse:
    """The answer of a verified view: ``status`` (204) with what the call did."""
    return VerifiedResponse(outcome, status)


def outcome_of(response: HttpResponse) -> Outcome:
    """The outcome a view returned; a plain response means the call was accepted."""
    return response.outcome if isinstance(response, VerifiedResponse) else ACCEPTED


def write(ctx: AuditContext, *, outcome: str, reason: str = "", detail: str = "") -> None:
    """Log the request's one line and write its audit row: folded when it is an unverified
    refusal (``LifecycleEvent.objects.fold_or_record``), else one row.

    Inside a transaction the row joins it (an accepted call's row commits with its change); a
    database error is raised to the caller there, and only logged outside one, where the
    request's answer is already decided.
    """
    log = logger.info if outcome != LifecycleEvent.Outcome.REJECTED else logger.warning
    log(
        "%s %s%s client_key=%r kid=%r token=%s",
        ctx.event,
        outcome,
        f" reason={reason}" if reason else "",
        ctx.client_key,
        ctx.kid,
        ctx.token_fingerprint or "-",
    )
    fields: dict[str, Any] = {
        "event_type": ctx.event,
        "outcome": outcome,
        "client_key": ctx.client_key,
        "reason": reason,
        "detail": detail,
        "key_id": ctx.kid,
        "token_fingerprint": ctx.token_fingerprint,
        "remote_addr": ctx.remote_addr,
        "path": ctx.path,
        "body": ctx.body,
        "verified": ctx.verified,
    }
    if outcome != LifecycleEvent.Outcome.ACCEPTED and not ctx.verified:
        LifecycleEvent.objects.fold_or_record(**fields)
    else:
        LifecycleEvent.objects.record(**fields)


def write_after(ctx: AuditContext, *, outcome: str, reason: str = "", detail: str = "") -> None:
    """:func:`write` once the request's transaction has ended: a database error is logged only."""
    try:
        write(ctx, outcome=outcome, reason=reason, detail=detail)
    except DatabaseError as exc:
        logger.error("audit row for %s not written: database error (%s)", ctx.event, type(exc).__name__)
