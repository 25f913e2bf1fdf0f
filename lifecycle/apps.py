from django.apps import AppConfig


class LifecycleConfig(AppConfig):
    name = "lifecycle"
    verbose_name = "Atlassian Connect lifecycle"

    def ready(self) -> None:
        from lifecycle import checks  # noqa: F401  (registers the system checks)
        from lifecycle.conf import connect_settings

        connect_settings.load()  # validated once at start-up, not on the first request
