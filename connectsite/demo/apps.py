"""`make demo`'s webhook receivers: two events whose receiver fails on purpose.

``demo:fails-once`` raises on its first attempt and succeeds on the next (a retry, then done);
``demo:always-fails`` always raises (parked as failed after ``TENANT_WEBHOOK_MAX_ATTEMPTS``, then
"retry now" in admin). Every other event is left alone. Installed by ``connectsite.demo_settings``
only.
"""

from typing import Any

from django.apps import AppConfig


class DemoReceiverFailed(Exception):
    """Raised on purpose by the demo's receiver."""


def fail_on_purpose(sender: Any, event: str, delivery: Any, **kwargs: Any) -> None:
    if event == "demo:always-fails" or (event == "demo:fails-once" and delivery.attempts == 1):
        raise DemoReceiverFailed()


class DemoConfig(AppConfig):
    name = "connectsite.demo"
    label = "connect_demo"
    verbose_name = "Demo receivers"

    def ready(self) -> None:
        from tenants.models import WebhookDelivery
        from tenants.signals import webhook_received

        webhook_received.connect(fail_on_purpose, sender=WebhookDelivery, dispatch_uid="connect-demo")
