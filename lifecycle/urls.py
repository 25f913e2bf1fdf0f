from django.urls import path

from lifecycle import pages, views

app_name = "lifecycle"

urlpatterns = [
    path("atlassian-connect.json", views.descriptor_view, name="descriptor"),
    path("healthz", views.healthz, name="healthz"),
    path("lifecycle/installed", views.installed, name="installed"),
    path("lifecycle/uninstalled", views.uninstalled, name="uninstalled"),
    path("lifecycle/enabled", views.enabled, name="enabled"),
    path("lifecycle/disabled", views.disabled, name="disabled"),
    path("webhooks/<str:event>", views.webhook_receiver, name="webhook"),
    # Forge remote (Connect on Forge): events, lifecycle events, scheduled triggers; 404
    # forge_not_configured until FORGE_APP_ID is set.
    path("forge/events", views.forge_events, name="forge-events"),
    path("forge/hello", pages.forge_hello, name="forge-hello"),
    # The shipped iframe module (atlassian-connect.json generalPages "hello") and its endpoint.
    path("pages/hello", pages.hello, name="hello-page"),
    path("api/hello/me", pages.hello_me, name="hello-me"),
]
