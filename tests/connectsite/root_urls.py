"""The URLconf of a deployment whose CONNECT_BASE_URL has no path prefix."""

from connectsite.urls import build

urlpatterns = build("")
