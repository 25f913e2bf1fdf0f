from django.urls import path

from lifecycle import views

app_name = "lifecycle"

urlpatterns = [
    path("atlassian-connect.json", views.descriptor_view, name="descriptor"),
    path("healthz", views.healthz, name="healthz"),
    path("lifecycle/installed", views.installed, name="installed"),
    path("lifecycle/uninstalled", views.uninstalled, name="uninstalled"),
    path("lifecycle/enabled", views.enabled, name="enabled"),
    path("lifecycle/disabled", views.disabled, name="disabled"),
    path("webhooks/<str:event>", views.webhook_receiver, name="webhook"),
]
