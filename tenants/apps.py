from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenants"

    def ready(self) -> None:
        from tenants import checks  # noqa: F401  (registers the system checks)
        from tenants.conf import tenant_settings

        tenant_settings.load()  # validated once at start-up, not on the first request
