from django.apps import AppConfig


class LifecycleConfig(AppConfig):
    name = "lifecycle"
    verbose_name = "Atlassian Connect lifecycle"

    def ready(self) -> None:
        from lifecycle import (
            checks,  # noqa: F401  (registers the system checks)
            conf,
        )

        conf.load()  # validated once at start-up, not on the first request
