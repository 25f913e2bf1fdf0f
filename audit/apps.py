from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The audit history of Connect requests and operators' actions, its admin and dashboard."""

    name = "audit"
    verbose_name = "Audit history"
