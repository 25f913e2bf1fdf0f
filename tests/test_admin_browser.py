"""The admin as an operator uses it: headless Chromium logs in and opens every page.

Screenshots land in test-output/screenshots/. Needs Debian's chromium and chromium-driver
(``make test`` installs them when it can); skipped with that message where they are missing.
"""

import re
import shutil
import tempfile
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from audit.models import LifecycleEvent
from tenants import services
from tenants.models import Installation, WebhookDelivery
from tests.conftest import KID

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SHOTS = Path(__file__).resolve().parents[1] / "test-output" / "screenshots"
SECRET = "browser-visible-secret-0123456789abcdef"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
        reason="Chromium not installed: apt-get install chromium chromium-driver "
        "(make test does this when it can)",
    ),
]


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def populated(make_body, key_server, settings):
    settings.SESSION_COOKIE_SECURE = False  # the live server speaks plain http
    settings.CSRF_COOKIE_SECURE = False
    User.objects.create_superuser("operator", "op@example.com", "correct horse battery")
    installation = services.install(make_body(clientKey="browser-tenant", sharedSecret=SECRET)).installation
    services.uninstall("browser-tenant")
    installation = services.install(make_body(clientKey="browser-tenant", sharedSecret=SECRET)).installation
    LifecycleEvent.objects.record(
        event_type="installed", outcome="accepted", client_key="browser-tenant", key_id=KID, verified=True
    )
    LifecycleEvent.objects.record(
        event_type="installed",
        outcome="rejected",
        client_key="forger-6f1c2e0a-9d3b-4c5e-8a7f-1b2c3d4e5f60",
        reason="signed_install_required",
        detail="no JWT",
        body={"clientKey": "forger", "sharedSecret": SECRET},
    )
    WebhookDelivery.objects.create(
        installation=installation, event="jira:issue_created", identifier="wh-browser"
    )
    # A stray request and a tenant that uninstalled, for the dashboard and the wording checks.
    LifecycleEvent.objects.record(
        event_type="installed", outcome="rejected", client_key="", reason="method_not_allowed"
    )
    services.install(make_body(clientKey="gone-tenant-5d2c9b1e-7a4f-4e3b-9c8d-0f1e2d3c4b5a"))
    services.uninstall("gone-tenant-5d2c9b1e-7a4f-4e3b-9c8d-0f1e2d3c4b5a")
    from lifecycle.keys import prefetch_keys

    prefetch_keys([KID])
    return installation


def _shoot(browser, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / f"{name}.png"))


def test_operator_walks_through_every_admin_page(browser, live_server, populated):
    from selenium.webdriver.common.by import By

    browser.get(f"{live_server.url}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys("operator")
    browser.find_element(By.NAME, "password").send_keys("correct horse battery")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

    pages = {
        "dashboard": ("/admin/", ["Lifecycle requests, last 30 days", "signed_install_required"]),
        "installations": ("/admin/tenants/installation/", ["browser-tenant", "example-site.atlassian.net"]),
        "installation": (
            f"/admin/tenants/installation/{populated.pk}/change/",
            ["set, encrypted, last rotated", "wh-browser", "Recent lifecycle events"],
        ),
        "lifecycle-events": ("/admin/audit/lifecycleevent/", ["browser-tenant", "forger"]),
        "failed-verifications": ("/admin/audit/failedverification/", ["forger", "signed-install"]),
        "key-cache": ("/admin/lifecycle/installkey/", [KID, "sha256:"]),
        "webhook-deliveries": ("/admin/tenants/webhookdelivery/", ["wh-browser"]),
    }
    gone = Installation.objects.get(client_key__startswith="gone-tenant")
    pages["uninstalled-installation"] = (
        f"/admin/tenants/installation/{gone.pk}/change/",
        ["not set (erased on uninstall)"],
    )
    for name, (path, expected) in pages.items():
        browser.get(live_server.url + path)
        text = browser.find_element(By.TAG_NAME, "body").text
        source = browser.page_source
        for phrase in expected:
            assert phrase.lower() in (text + source).lower(), f"{name}: {phrase!r} missing"
        assert SECRET not in source, f"{name} shows the shared secret"
        assert "BEGIN PUBLIC KEY" not in source
        _shoot(browser, name)  # before the checks: a failing page can be looked at
        if browser.find_elements(By.CSS_SELECTOR, "#changelist .results"):  # every list: no sideways scroll
            overflow = browser.execute_script(
                "const r = document.querySelector('#changelist .results');"
                "const page = document.documentElement.scrollWidth - innerWidth;"
                "return Math.max(r.scrollWidth - r.clientWidth, page);"
            )
            assert overflow <= 0, f"{name}: the list scrolls sideways by {overflow} px at 1400 px"
        if name in {"lifecycle-events", "webhook-deliveries", "installation"}:  # to the second, with zone
            assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text), f"{name}: no time to the second"
        if name == "dashboard":  # the chart's total and the reasons table agree; strays apart
            rejected = int(browser.find_element(By.ID, "rejected-total").text)
            cells = browser.find_elements(By.CSS_SELECTOR, "#rejections tbody tr td:nth-child(2)")
            assert rejected == sum(int(cell.text) for cell in cells) == 1
            assert browser.find_element(By.ID, "not-connect-calls").text == "1"
        if name == "dashboard":
            assert browser.find_element(By.ID, "lifecycle-chart").is_displayed()
    assert len(list(SHOTS.glob("*.png"))) >= len(pages)
