"""Views Atlassian calls (descriptor, lifecycle callbacks, webhooks, Forge events) and the health probe."""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_safe

from audit.records import RECORDED, Outcome, respond
from lifecycle import descriptor, policy
from lifecycle.conf import connect_settings
from lifecycle.decorators import verified
from lifecycle.errors import StaleLifecycleToken, TaskQueueUnavailable, WebhookTokenReused
from lifecycle.verification import ConnectRequest, header_number
from tenants import deliveries, services
from tenants import forge as forge_services

logger = logging.getLogger(__name__)


@require_GET
def descriptor_view(request: HttpRequest) -> JsonResponse:
    """``GET /atlassian-connect.json``: the descriptor with this deployment's baseUrl and key."""
    response = JsonResponse(descriptor.render(), json_dumps_params={"indent": 2})
    response["Cache-Control"] = "no-cache"
    return response


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """GET or HEAD: 200 when the database answers a query, 503 (with Retry-After) when it does not."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except (DatabaseError, OSError) as exc:
        # The exception text may carry connection details; its type is enough here.
        logger.warning("healthz: database unreachable (%s)", type(exc).__name__)
        response = JsonResponse({"status": "unavailable", "database": "unreachable"}, status=503)
        response["Retry-After"] = "10"
        return response
    return JsonResponse({"status": "ok", "database": "ok"})


def _stale(exc: services.StaleLifecycleEvent, event: str) -> StaleLifecycleToken:
    return StaleLifecycleToken(
        f"This {event} token was issued at {exc.token_iat} (iat), before the newest accepted "
        f"installed/uninstalled of this tenant ({exc.newest_iat}); applying it would undo a later "
        f"event. {StaleLifecycleToken.fix}"
    )


@verified(policy.INSTALLED)
def installed(request: ConnectRequest) -> HttpResponse:
    """Upsert the tenant of a verified signed install; the new secret replaces the old. 204."""
    try:
        result = services.install(request.connect.body, token_iat=_iat(request))
    except services.StaleLifecycleEvent as exc:
        raise _stale(exc, "installed") from exc
    return respond(Outcome(detail=services.install_detail(result)))


@verified(policy.UNINSTALLED)
def uninstalled(request: ConnectRequest) -> HttpResponse:
    """Mark the tenant uninstalled and erase its secret; unknown tenant: a recorded no-op. 204."""
    try:
        installation = services.uninstall(request.connect.client_key, token_iat=_iat(request))
    except services.StaleLifecycleEvent as exc:
        raise _stale(exc, "uninstalled") from exc
    if installation is None:
        return respond(Outcome("ignored", detail="No such tenant: nothing to uninstall."))
    return respond(Outcome(detail="Uninstalled; shared secret erased."))


def _iat(request: ConnectRequest) -> int:
    return int(request.connect.claims["iat"])  # required and checked by the verifier (SPEC 3.5)


def _set_enabled(request: ConnectRequest, enabled: bool) -> HttpResponse:
    """Apply enabled/disabled; a tenant that uninstalled meanwhile makes it a recorded no-op. 204."""
    try:
        (services.enable if enabled else services.disable)(request.connect.client_key)
    except services.TenantNotInstalled:
        return respond(
            Outcome("ignored", detail=f"{request.connect.event} for an uninstalled tenant: nothing to do.")
        )
    return respond()


@verified(policy.ENABLED)
def enabled(request: ConnectRequest) -> HttpResponse:
    """Mark the (installed) tenant enabled. 204."""
    return _set_enabled(request, True)


@verified(policy.DISABLED)
def disabled(request: ConnectRequest) -> HttpResponse:
    """Mark the (installed) tenant disabled. 204."""
    return _set_enabled(request, False)


@verified(policy.WEBHOOK)
def webhook_receiver(request: ConnectRequest, event: str) -> HttpResponse:
    """A verified Jira webhook: stored once per X-Atlassian-Webhook-Identifier with its
    processing task, then answered 204 without waiting for app code (``tenants.deliveries``).

    The delivery row is the call's record (no audit row). A duplicate identifier (Jira's retry) is
    answered 204 and not processed again; a failure to store it or to queue its task is a 503
    (``database_unavailable``, ``task_queue_unavailable``), so that Jira retries.
    """
    call = request.connect
    identifier = request.headers.get("X-Atlassian-Webhook-Identifier", "").strip()
    try:
        result = deliveries.record_webhook(
            call.tenant,
            event=event,
            identifier=identifier,
            retry_count=min(header_number(request.headers.get("X-Atlassian-Webhook-Retry")) or 0, 2**31 - 1),
            raw_body=request.body.decode("utf-8"),  # verified: UTF-8 JSON
            token_digest=call.token_digest,
            body_digest=hashlib.sha256(request.body).hexdigest(),
        )
    except deliveries.EnqueueFailed as exc:
        raise TaskQueueUnavailable(
            f"The delivery's task could not be queued ({exc}); nothing was acknowledged."
        ) from exc
    except deliveries.WebhookTokenReused as exc:
        raise WebhookTokenReused(
            f"This token was first used for delivery {exc.delivery.pk} (identifier "
            f"{exc.delivery.identifier[:80]!r}) with other content; it cannot carry this one. "
            f"{WebhookTokenReused.fix}"
        ) from exc
    stored = result.delivery
    if not result.created and stored.event != event:
        # Deduplicated all the same (Jira's identifier names one delivery), but never silently.
        logger.warning(
            "webhook %r duplicate of delivery %s recorded for %r: event mismatch client_key=%r",
            event[:64],
            stored.pk,
            stored.event,
            call.client_key,
        )
        return respond(
            Outcome(
                "ignored",
                reason="webhook_event_mismatch",
                detail=(
                    f"Identifier {identifier[:80]!r} was first recorded for {stored.event!r} (delivery "
                    f"{stored.pk}); this delivery to the {event[:64]!r} URL was answered 204 and not "
                    "processed again. Check that the descriptor declares one URL per webhook event."
                ),
            )
        )
    logger.info(
        "webhook %s %s client_key=%r delivery=%s",
        event,
        "accepted" if result.created else "duplicate",
        call.client_key,
        stored.pk,
    )
    return respond(RECORDED)


_EVENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._-]{0,63}")


def forge_event_name(body: dict[str, Any], module_key: str) -> str:
    """A Forge event's name: its ``eventType`` (``avi:jira:created:issue``), else
    ``forge:<module key>`` (scheduled triggers send none), else ``forge:event``."""
    event_type = forge_services.event_payload(body).get("eventType", body.get("eventType"))
    if isinstance(event_type, str) and _EVENT_NAME.fullmatch(event_type):
        return event_type
    candidate = f"forge:{module_key}"
    return candidate if module_key and _EVENT_NAME.fullmatch(candidate) else "forge:event"


@verified(policy.FORGE_EVENTS)
def forge_events(request: ConnectRequest) -> HttpResponse:
    """``POST /forge/events``: Forge product events, lifecycle events and scheduled triggers.

    Verified (a FIT), stored once with its processing task (``tenants.forge.record_event``:
    a retry of an event already stored is answered and not processed again), then answered 204
    within Forge's 5 s; ``tenants.signals.forge_event_received`` runs in the task worker.
    Lifecycle events (``avi:forge:installed:app``, ``avi:forge:upgraded:app``) also update the
    Forge installation, in order of their FITs' ``iat``.
    """
    call = request.connect
    forge = call.forge
    assert forge is not None  # noqa: S101 - the FORGE_EVENTS policy verified a FIT
    event = forge_event_name(call.body, forge.module_key)
    notes: list[str] = []  # what knowing the installation changed is added by the middleware
    if event in forge_services.LIFECYCLE_EVENTS and forge.observed.superseded:
        notes.append(
            f"{event} of {forge.installation_id}, an installation id since replaced by "
            f"{forge.installation.installation_id}: recorded, not applied."
        )
    elif event in forge_services.LIFECYCLE_EVENTS:  # a retry applies it again: the same state
        applied = forge_services.apply_lifecycle(forge.installation, event, int(call.claims["iat"]))
        notes.append(applied.detail)
    try:
        result = forge_services.record_event(
            forge.installation,
            event=event,
            body=call.body,
            raw_body=request.body.decode("utf-8"),  # verified: UTF-8 JSON
            window=connect_settings.FORGE_EVENT_DEDUPE_WINDOW,
            token_digest=call.token_digest,
        )
    except deliveries.EnqueueFailed as exc:
        raise TaskQueueUnavailable(
            f"The event's task could not be queued ({exc}); nothing was acknowledged."
        ) from exc
    logger.info(
        "forge event %s %s installation=%s delivery=%s",
        event,
        "accepted" if result.created else "duplicate",
        forge.installation_id,
        result.delivery.pk,
    )
    if not result.created:
        notes.append(f"A retry of delivery {result.delivery.pk}: answered 204, not processed again.")
        return respond(
            Outcome("ignored", reason="forge_event_duplicate", detail=" ".join(filter(None, notes)))
        )
    if event in forge_services.LIFECYCLE_EVENTS:
        return respond(Outcome(detail=f"{' '.join(notes)} Stored as delivery {result.delivery.pk}."))
    return respond(RECORDED)  # the delivery row is its record
