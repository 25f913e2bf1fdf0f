"""Webhook receivers for tests that run a real task worker in another process
(``tests.worker_settings``): each call is appended to the file named by ``RECEIVER_LOG``, as
``<identifier> <attempt> <phase>``; the event ``test:hang`` hangs on its first attempt (the
test kills that worker)."""

import os
import time
from typing import Any

from django.apps import AppConfig


def log_and_maybe_hang(sender: Any, event: str, delivery: Any, **kwargs: Any) -> None:
    with open(os.environ["RECEIVER_LOG"], "a", encoding="utf-8") as log:
        log.write(f"{delivery.identifier} {delivery.attempts} start\n")
    if event == "test:hang" and delivery.attempts == 1:
        time.sleep(600)  # until the test kills this worker
    with open(os.environ["RECEIVER_LOG"], "a", encoding="utf-8") as log:
        log.write(f"{delivery.identifier} {delivery.attempts} end\n")


class ReceiversConfig(AppConfig):
    name = "tests.receivers"
    label = "test_receivers"

    def ready(self) -> None:
        from tenants.models import WebhookDelivery
        from tenants.signals import webhook_received

        webhook_received.connect(log_and_maybe_hang, sender=WebhookDelivery, dispatch_uid="test-receivers")
