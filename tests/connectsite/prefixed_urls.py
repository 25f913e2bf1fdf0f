"""The URLconf a deployment with CONNECT_BASE_URL=https://connect-app.example.test/jira-app gets."""

from connectsite.urls import build

urlpatterns = build("/jira-app")
