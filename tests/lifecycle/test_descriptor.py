"""lifecycle/descriptor.py and the descriptor route: rendering, and every declared URL is routed."""

import json
from pathlib import Path

import pytest
from django.test import override_settings
from django.urls import Resolver404, resolve

from lifecycle import descriptor

ROOT = Path(__file__).resolve().parents[2]


def test_template_is_valid_json_with_the_security_migrations():
    data = json.loads((ROOT / "atlassian-connect.json").read_text())
    assert data["authentication"] == {"type": "jwt"}
    assert data["apiMigrations"] == {"signed-install": True, "context-qsh": True}
    assert data["scopes"] == ["READ", "ACT_AS_USER"]  # READ for webhooks; ACT_AS_USER for the hello page
    assert set(data["lifecycle"]) == {"installed", "uninstalled", "enabled", "disabled"}
    assert any(hook["event"] == "jira:issue_created" for hook in data["modules"]["webhooks"])


def test_every_url_in_the_descriptor_resolves():
    urls = descriptor.declared_urls(descriptor.render())
    assert {"installed", "uninstalled", "enabled", "disabled", "webhook:jira:issue_created"} <= set(urls)
    for name, path in urls.items():
        try:
            resolve(path)
        except Resolver404:  # pragma: no cover - the assertion below reports it
            pytest.fail(f"{name} URL {path!r} is declared in the descriptor but not routed")


def test_unrouted_url_is_detected():
    with pytest.raises(Resolver404):
        resolve(descriptor.declared_urls({"lifecycle": {"installed": "/nowhere?x=1"}})["installed"])


def test_descriptor_route_renders_base_url_and_key_from_settings(client):
    with override_settings(
        CONNECT={"BASE_URL": "https://app.example.com/prefix", "APP_KEY": "com.example.mine"}
    ):
        response = client.get("/atlassian-connect.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    data = response.json()
    assert data["baseUrl"] == "https://app.example.com/prefix"
    assert data["key"] == "com.example.mine"
    assert data["apiMigrations"]["signed-install"] is True
    assert data["lifecycle"]["installed"] == "/lifecycle/installed"


def test_descriptor_route_is_get_only(client):
    assert client.post("/atlassian-connect.json").status_code == 405
