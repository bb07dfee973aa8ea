"""The developer portal in a real browser: Debian's headless Chromium, driven by Selenium through Debian's
chromedriver, against the whole platform.

Swagger UI renders every tag of the OpenAPI document, Authorize gets a token by client credentials typed
into its dialog, "Try it out" on `GET /v1/plans` answers 200; the AsyncAPI page lists every channel; the
guides and the capacity chart page load. Every request the browser makes is recorded (Chrome's performance
log: the DevTools Network events) and none may leave 127.0.0.1; the host resolver resolves nothing but
127.0.0.1 as well, so a page that tried would fail, but the assertion is what proves it. A screenshot of
Swagger UI is kept in `test-artifacts/`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import DEV_SECRETS, RunningPlatform

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CLIENT = "deu-planner"
#: Swagger UI renders ~110 operations from a 1 MB document; a loaded CI machine may take a while.
WAIT = 60
#: Schemes that never reach a network: the browser's own pages and inline or in-memory resources.
LOCAL_SCHEMES = frozenset({"data", "blob", "about", "chrome", "chrome-untrusted", "devtools"})


@dataclass
class Browser:
    driver: webdriver.Chrome
    base: str
    #: Every request the browser sent (method, URL), and the answers' statuses by URL, since the last drain.
    requests: list[tuple[str, str]] = field(default_factory=list)
    statuses: dict[str, list[int]] = field(default_factory=dict)

    def open(self, path: str) -> None:
        self.driver.get(f"{self.base}{path}")

    def wait(self, condition: Any, what: str, timeout: float = WAIT) -> Any:
        return WebDriverWait(self.driver, timeout).until(condition, f"timed out waiting for {what}")

    def element(self, css: str, within: WebElement | None = None) -> WebElement:
        root: Any = within or self.driver
        found: WebElement = self.wait(lambda _: (root.find_elements(By.CSS_SELECTOR, css) or [None])[0], css)
        return found

    def collect(self) -> None:
        """Move the performance log's network events into `requests` and `statuses`."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            params = message.get("params", {})
            if message["method"] == "Network.requestWillBeSent":
                self.requests.append((params["request"]["method"], params["request"]["url"]))
            elif message["method"] == "Network.webSocketCreated":
                self.requests.append(("WEBSOCKET", params["url"]))
            elif message["method"] == "Network.responseReceived":
                response = params["response"]
                self.statuses.setdefault(response["url"], []).append(int(response["status"]))

    def console_errors(self) -> list[str]:
        return [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]

    def assert_stayed_local(self) -> None:
        """Every request since the last call went to 127.0.0.1 (or never left the browser); then forget
        them. Asked of each test: a test that made no request to the gateway proves nothing."""
        self.collect()
        assert any(url.startswith(self.base) for _, url in self.requests), self.requests
        escaped = []
        for method, url in self.requests:
            parts = urlsplit(url)
            if parts.scheme in LOCAL_SCHEMES:
                continue
            if parts.scheme not in ("http", "https", "ws", "wss") or parts.hostname != "127.0.0.1":
                escaped.append(f"{method} {url}")
        assert not escaped, f"requests left 127.0.0.1: {escaped}"
        self.requests.clear()
        self.statuses.clear()


def _options(profile: str) -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
        # Names resolve to nothing but 127.0.0.1: a request to any other host would fail.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return options


@pytest.fixture(scope="module")
def browser(platform: RunningPlatform) -> Iterator[Browser]:
    """One Chromium for the module, with a fresh profile; chromedriver and Chromium stop however it ends."""
    # Debian's chromedriver, named explicitly: Selenium Manager (which would download one) stays offline.
    os.environ["SE_OFFLINE"] = "true"
    profile = tempfile.mkdtemp(prefix="icep-chromium-")
    service = Service(executable_path=CHROMEDRIVER)
    driver: webdriver.Chrome | None = None
    try:
        driver = webdriver.Chrome(service=service, options=_options(profile))
        yield Browser(driver, platform.gateway)
    finally:
        if driver is not None:
            driver.quit()  # ends Chromium and stops the chromedriver service
        else:
            service.stop()
        shutil.rmtree(profile, ignore_errors=True)


def _openapi() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DOCS / "api" / "openapi.json").read_text(encoding="utf-8"))
    return document


def _authorize(browser: Browser, client_id: str, secret: str) -> None:
    browser.element("button.authorize").click()
    browser.element(".modal-ux")
    # The dialog has a form per security scheme (HTTP Basic for the token endpoint comes first): the one of
    # OAuth2's client credentials flow.
    dialog = browser.wait(
        lambda d: next(
            (
                c
                for c in d.find_elements(By.CSS_SELECTOR, ".modal-ux .auth-container")
                if "clientCredentials" in c.text
            ),
            None,
        ),
        "the OAuth2 client credentials form",
    )
    for name, text in (("clientId", client_id), ("clientSecret", secret)):
        field = browser.element(f"input[data-name='{name}']", dialog)
        field.send_keys(text)
        # On a loaded machine React may still be settling the dialog: the click waits for what was typed.
        browser.wait(lambda _, f=field, t=text: f.get_attribute("value") == t, f"the {name} typed")
    button = browser.element(".auth-btn-wrapper button.authorize", dialog)
    browser.wait(EC.element_to_be_clickable(button), "the form's Authorize button").click()

    def token_or_error(driver: Any) -> Any:
        errors = driver.find_elements(By.CSS_SELECTOR, ".modal-ux .errors")
        if errors:
            return f"error: {errors[0].text}"
        stored = driver.execute_script("return window.localStorage.getItem('authorized')")
        token = (json.loads(stored or "{}").get("OAuth2") or {}).get("token") or {}
        return token.get("access_token")

    token = browser.wait(token_or_error, "Authorize to get a token", timeout=2 * WAIT)
    assert not str(token).startswith("error:"), token
    assert str(token).count(".") == 2, token  # a JWT, kept by persistAuthorization
    browser.element(".modal-ux button.close-modal").click()


def test_swagger_ui_renders_every_tag_authorizes_and_lists_plans(
    browser: Browser, capsys: pytest.CaptureFixture[str]
) -> None:
    openapi = _openapi()
    browser.open("/docs")
    browser.element(".opblock-tag-section")

    rendered = {
        e.get_attribute("data-tag") for e in browser.driver.find_elements(By.CSS_SELECTOR, "h3.opblock-tag")
    }
    assert rendered == {tag["name"] for tag in openapi["tags"]}

    _authorize(browser, CLIENT, DEV_SECRETS[CLIENT])
    browser.collect()
    assert browser.statuses.get(f"{browser.base}/oauth/token") == [200], browser.statuses

    operation = openapi["paths"]["/v1/plans"]["get"]
    tag = operation["tags"][0].replace(" ", "_")
    block = browser.element(f"#operations-{tag}-{operation['operationId']}")
    browser.element(".opblock-summary-control", block).click()
    browser.element(".try-out__btn", block).click()
    browser.element("button.execute", block).click()
    status = browser.element(".live-responses-table tbody .response-col_status", block)
    browser.wait(lambda _: status.text.strip(), "the response status")
    assert status.text.strip().startswith("200"), status.text
    body = browser.element(".live-responses-table tbody .response-col_description pre", block).text
    assert '"items"' in body, body

    browser.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", status)
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "portal-swagger-ui.png"
    assert browser.driver.save_screenshot(str(screenshot)), screenshot
    with capsys.disabled():
        print(f"\nSwagger UI screenshot: {screenshot}")

    assert not [e for e in browser.console_errors() if "Content Security Policy" in e]
    browser.assert_stayed_local()


def test_the_asyncapi_page_lists_every_channel_and_event_type(browser: Browser) -> None:
    asyncapi = json.loads((DOCS / "api" / "asyncapi.json").read_text(encoding="utf-8"))
    messages = asyncapi["components"]["messages"]
    browser.open("/docs/asyncapi")
    sections = browser.driver.find_elements(By.CSS_SELECTOR, "section.channel")

    listed = {s.find_element(By.CSS_SELECTOR, ".channel-address").text: s for s in sections}
    assert set(listed) == {channel["address"] for channel in asyncapi["channels"].values()}
    for channel in asyncapi["channels"].values():
        names = {e.text for e in listed[channel["address"]].find_elements(By.CSS_SELECTOR, ".message-name")}
        expected = {messages[ref["$ref"].rsplit("/", 1)[1]]["name"] for ref in channel["messages"].values()}
        assert names == expected, channel["address"]
    # Readable without a script: the page has none.
    assert not browser.driver.find_elements(By.TAG_NAME, "script")
    browser.assert_stayed_local()


def test_the_portal_links_the_guides_and_renders_them(browser: Browser) -> None:
    browser.open("/docs/portal")
    links = {e.get_attribute("pathname") for e in browser.driver.find_elements(By.CSS_SELECTOR, "a")}
    assert {"/docs", "/docs/asyncapi", "/docs/guides", "/docs/capacity"} <= links

    browser.open("/docs/guides")
    guides = {
        e.get_attribute("pathname") for e in browser.driver.find_elements(By.CSS_SELECTOR, "ul.guides a")
    }
    on_disk = {f"/docs/guides/{p.relative_to(DOCS).as_posix()}" for p in DOCS.glob("*.md")} | {
        f"/docs/guides/{p.relative_to(DOCS).as_posix()}" for p in DOCS.glob("operations/*.md")
    }
    assert guides == on_disk

    browser.open("/docs/guides/architecture.md")
    first_heading = next(
        line[2:].strip()
        for line in (DOCS / "architecture.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("# ")
    )
    assert browser.element("main h1").text == first_heading
    assert browser.driver.find_elements(By.CSS_SELECTOR, "main table")  # the module map's tables render
    browser.assert_stayed_local()


def test_the_capacity_page_gets_a_token_and_asks_for_the_chart(browser: Browser) -> None:
    browser.open("/docs/capacity")
    form = browser.element("form#capacity-form")
    for name in ("client_id", "client_secret", "product", "capability_area", "nation", "from", "to"):
        assert form.find_elements(By.NAME, name), name
    browser.element("#client-id").send_keys(CLIENT)
    browser.element("#client-secret").send_keys(DEV_SECRETS[CLIENT])
    browser.element("#nation").send_keys("DEU")
    browser.element("#show-chart").click()

    def settled(driver: Any) -> bool:
        text = driver.find_element(By.ID, "capacity-status").text
        shown = driver.find_element(By.ID, "capacity-figure").is_displayed()
        return shown or bool(text and text != "Loading…")

    browser.wait(settled, "the chart or a reason")
    browser.collect()
    assert browser.statuses.get(f"{browser.base}/oauth/token") == [200], browser.statuses
    chart = f"{browser.base}/v1/capacity/timeline.svg?nation=DEU"
    assert chart in browser.statuses, browser.statuses
    if browser.statuses[chart] == [200]:
        image = browser.element("#capacity-chart")
        assert image.get_attribute("src").startswith("blob:")
        assert browser.driver.execute_script("return arguments[0].naturalWidth", image) > 0
    else:
        # The plans service answered otherwise: the page says so rather than showing a broken chart.
        assert str(browser.statuses[chart][0]) in browser.element("#capacity-status").text
    browser.assert_stayed_local()
