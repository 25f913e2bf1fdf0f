"""Signals for app code. Each is sent after the transaction that caused it has committed.

Every signal is sent with ``sender=Installation`` and these keyword arguments:

``tenant_installed``
    ``installation``, ``created`` (first install of this clientKey), ``previous_base_url``
    (the old baseUrl when a site was renamed, else ``None``), ``secret_changed``.
``tenant_uninstalled``
    ``installation`` (its secret already erased).
``tenant_enabled`` / ``tenant_disabled``
    ``installation``.

``webhook_received`` (sender ``WebhookDelivery``) is described below.

Example::

    from django.dispatch import receiver
    from tenants.models import Installation
    from tenants.signals import tenant_installed

    @receiver(tenant_installed, sender=Installation)
    def welcome(sender, installation, created, **kwargs):
        if created:
            ...
"""

from django.dispatch import Signal

tenant_installed = Signal()
tenant_uninstalled = Signal()
tenant_enabled = Signal()
tenant_disabled = Signal()

#: Sent by the task worker (``tenants.deliveries.process_delivery``) once per successful
#: processing of a verified webhook delivery, with ``installation`` (the tenant), ``event`` (the
#: URL's event name, e.g. ``jira:issue_created``), ``body`` (the parsed JSON object) and
#: ``delivery`` (the ``WebhookDelivery`` row; ``delivery.attempts`` counts this attempt). Sent with
#: ``send_robust``: a receiver that raises makes the attempt fail, and the delivery is retried
#: with backoff (every receiver runs again), then parked as failed. At least once: a crash between
#: a receiver and the *done* mark runs it again, so receivers must be idempotent.
webhook_received = Signal()

#: Sent by the task worker once per successful processing of a verified Forge event
#: (``POST /forge/events``: product events, lifecycle events, scheduled triggers), with
#: ``forge_installation`` (the ``ForgeInstallation``), ``installation`` (its Connect tenant, or
#: ``None`` for a Forge-only installation), ``event`` (the event's ``eventType``, e.g.
#: ``avi:jira:created:issue``, or ``forge:<module key>`` for a body without one), ``body`` (the
#: parsed JSON object, ``retryContext`` included when Forge retried) and ``delivery`` (the
#: ``WebhookDelivery`` row). Same rules as ``webhook_received``: retried with backoff when a
#: receiver raises, at least once, so receivers must be idempotent.
forge_event_received = Signal()
