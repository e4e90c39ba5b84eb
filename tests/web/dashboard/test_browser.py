"""The dashboard in real headless Chromium (Debian's ``chromium``, driven by Playwright)
against a real ``quotaflow serve`` and a fake provider.

Needs ``apt-get install -y chromium`` and ``pip install playwright`` (never
``playwright install``: no browser is downloaded). Without them the tests skip, except
under ``CI=true``, where they fail. Screenshots go to ``test-artifacts/dashboard/``; the
pictures in ``docs/`` are made by ``scripts/screenshots.py`` alone.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.procs import Proc, fake_provider, start

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-background-networking", "--disable-gpu",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
XSS = "<img src=x onerror=alert(1)>"
SECRETS = ("sk-browser-openai-0001", "sk-browser-openai-0002", "gsk-browser-groq-0003")
NEW_SECRET = "sk-browser-added-9999"
LIVE_MS = 2000  # the promise: changes show within 2 s, without reload


def missing_browser() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install playwright)"
    return None


_why = missing_browser()
if _why is not None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run under CI: {_why}", pytrace=False)
    pytest.skip(_why, allow_module_level=True)

from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_yaml(fake_url: str) -> str:
    return f"""
server: {{dashboard_read_only_on_loopback: true}}
settings: {{max_wait_s: 0}}
providers:
  - name: openai
    base_url: {fake_url}/v1
    models: [gpt-4o-mini]
    keys:
      - {{id: openai-1, secret: {SECRETS[0]}, label: "{XSS}",
          limits: [{{metric: tokens, window: day, amount: 3000}}]}}
      - {{id: openai-2, secret: {SECRETS[1]},
          limits: [{{metric: tokens, window: minute, amount: 6000}}, {{metric: requests, window: day, amount: 400}}]}}
  - name: groq
    base_url: {fake_url}/v1
    models: [llama-3.1-8b-instant]
    keys:
      - {{id: groq-1, secret: {SECRETS[2]}, limits: [{{metric: tokens, window: once, amount: 40000}}]}}
agents:
  - name: support-bot
    providers: [groq, openai]
    budgets: [{{metric: tokens, window: month, amount: 2500}}]
  - name: research
    budgets: [{{metric: tokens, window: day, amount: 20000, provider: groq}}]
"""


class Gateway:
    """A ``quotaflow serve`` on a fixed port, restartable on the same home and port."""

    def __init__(self, fake_url: str, home: Path) -> None:
        self.home = home
        self.port = free_port()
        home.mkdir(parents=True, exist_ok=True)
        self.cfg = home / "quotaflow.yaml"
        self.cfg.write_text(config_yaml(fake_url))
        self.proc: Proc | None = None
        self.token = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = ["serve", "--config", str(self.cfg), "--port", str(self.port), "--home", str(self.home)]  # fmt: skip
        self.proc = start(args, ready="serving on")
        left = self.home / "admin_token"  # the first start leaves it there
        if left.exists():
            self.token = left.read_text().strip()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def call(
        self, method: str, path: str, body: Any = None, *, admin: bool = False,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:  # fmt: skip
        hdrs = {"content-type": "application/json", **(headers or {})}
        if admin:
            hdrs["authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read()), dict(r.headers)
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null"), dict(err.headers)

    def chat(self, agent: str | None = None, model: str = "auto") -> str:
        """One request through /v1; returns the key that answered."""
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
        headers = {"x-quotaflow-agent": agent} if agent else {}
        status, answer, hdrs = self.call("POST", "/v1/chat/completions", body, headers=headers)
        assert status == 200, answer
        return hdrs["x-quotaflow-key"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with fake_provider("openai") as fake:
        gw = Gateway(fake.url, tmp_path_factory.mktemp("dash") / "home")
        gw.start()
        assert gw.token.startswith("qfadm-")
        try:
            yield gw
        finally:
            gw.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


class Watched:
    """A page and every console error, page error and dialog it produced."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("dialog", self._dialog)

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.errors.append(msg.text)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.accept()


@pytest.fixture
def watched(browser: Browser, gateway: Gateway) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    w = Watched(page)
    page.goto(gateway.url + "/")
    page.wait_for_selector("#conn[data-state=live]")
    page.wait_for_selector("[data-key-id]")
    try:
        yield w
    finally:
        context.close()


def sign_in(page: Page, token: str) -> None:
    page.fill("#token", token)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#session:not([hidden])")
    assert page.is_enabled("#add-key-open")


def card(page: Page, key_id: str) -> Any:
    return page.locator(f'article[data-key-id="{key_id}"]')


# -- tests, in the order a person would use the page -----------------------------------------
def test_page_loads_without_errors_and_cards_match_status(
    watched: Watched, gateway: Gateway
) -> None:
    page = watched.page
    _, status, _ = gateway.call("GET", "/api/status")
    keys = [(p["provider"], k) for p in status["providers"] for k in p["keys"]]
    assert page.locator("article[data-key-id]").count() == len(keys) == 3
    for provider, k in keys:
        c = page.locator(
            f'section[data-provider="{provider}"] article[data-key-id="{k["key_id"]}"]'
        )
        assert c.get_attribute("data-state") == k["state"]
        assert c.locator(".badge").first.inner_text() == k["state"].upper()
        primary = next(lim for lim in k["limits"] if lim["used"] == k["quota_used"] and lim["amount"] == k["quota_total"])  # fmt: skip
        row = c.locator(f'[data-limit-id="{primary["id"]}"]')
        assert row.locator(".used").inner_text() == f"{k['quota_used']:,.0f}"
        assert row.locator(".total").inner_text() == f"{k['quota_total']:,.0f}"
        assert row.locator(".remaining").inner_text() == f"{k['remaining']:,.0f}"
    tiles = page.locator("#status")
    assert tiles.locator('[data-tile="Providers"] .tile-value').inner_text() == "2 / 2"
    assert tiles.locator('[data-tile="Keys available"] .tile-value').inner_text() == "3 / 3"
    # read-only on loopback (config): visible, but no action without the token
    assert page.is_disabled("#add-key-open")
    assert page.locator(".provider-head button").first.is_disabled()
    assert page.locator("#rec-chosen").is_visible()
    assert watched.errors == []


def test_names_are_shown_as_text_never_as_html(watched: Watched, gateway: Gateway) -> None:
    page = watched.page
    status, body, _ = gateway.call(
        "POST", "/api/use",
        {"key_id": "groq-1", "tokens_used": 5, "success": False, "reason": XSS}, admin=True,
    )  # fmt: skip
    assert status == 200, body
    label = card(page, "openai-1").locator(".key-label")
    assert label.inner_text() == XSS
    page.wait_for_selector(f'#log tr.fail:has-text("{XSS}")', timeout=LIVE_MS + 1000)
    assert page.locator("img").count() == 0
    assert watched.dialogs == []
    assert page.evaluate("document.body.innerHTML.includes('<img')") is False


def test_wrong_token_is_refused_with_a_clear_message(watched: Watched) -> None:
    page = watched.page
    page.fill("#token", "qfadm-not-the-right-one")
    page.click("#login button[type=submit]")
    page.wait_for_selector("#toast.show")
    assert "Wrong admin token" in page.inner_text("#toast")
    assert page.is_visible("#login") and page.is_disabled("#add-key-open")


def test_add_key_form_makes_a_new_card(watched: Watched, gateway: Gateway) -> None:
    page = watched.page
    sign_in(page, gateway.token)
    page.focus("#add-key-open")
    page.keyboard.press("Enter")  # keyboard: opens the form and focuses its first field
    assert page.evaluate("document.activeElement.id") == "ak-provider"
    page.keyboard.type("openai")  # served by the fake provider: no request leaves the machine
    page.keyboard.press("Tab")
    page.keyboard.type(NEW_SECRET)
    page.keyboard.press("Tab")
    page.keyboard.type("100000")
    page.keyboard.press("Enter")
    new = page.locator('section[data-provider="openai"] article[data-key-id="openai-3"]')
    new.wait_for()
    assert new.get_attribute("data-state") == "ok"
    assert new.locator(".total").inner_text() == "100,000"
    assert page.is_hidden("#add-key")
    assert page.input_value("#ak-secret") == ""
    assert NEW_SECRET not in page.content()
    _, status, _ = gateway.call("GET", "/api/status")
    added = [k for p in status["providers"] for k in p["keys"] if k["key_id"] == "openai-3"]
    assert added and added[0]["quota_total"] == 100_000
    # a bad quota gets the server's message in the form
    page.click("#add-key-open")
    page.fill("#ak-provider", "no-such-provider")
    page.fill("#ak-secret", "sk-x-1234567")
    page.fill("#ak-quota", "5")
    page.click("#add-key button[type=submit]")
    page.wait_for_selector("#add-key-error:has-text('unknown provider')")
    assert watched.errors == [] or all("400" in e for e in watched.errors)


def test_forcing_a_provider_changes_the_recommendation(watched: Watched, gateway: Gateway) -> None:
    page = watched.page
    sign_in(page, gateway.token)
    before = page.get_attribute("#rec-chosen", "data-provider")
    other = "groq" if before != "groq" else "openai"
    page.locator(
        f'section[data-provider="{other}"] .provider-head button:has-text("Force")'
    ).click()
    page.wait_for_selector(f'#rec-chosen[data-provider="{other}"]')
    assert page.locator(f'section[data-provider="{other}"] .forced-tag').is_visible()
    assert page.inner_text('[data-tile="Forced provider"] .tile-value') == other
    page.locator(f'section[data-provider="{other}"] .provider-head button:has-text("Clear forced")').click()  # fmt: skip
    page.wait_for_selector('[data-tile="Forced provider"] .tile-value:text-is("none")')
    # disabling the recommended key moves the recommendation elsewhere; enabling brings it back
    key_id = page.get_attribute("#rec-chosen", "data-key-id")
    card(page, key_id).locator('button:has-text("Disable")').click()
    page.wait_for_function(
        "(k) => document.querySelector('#rec-chosen').dataset.keyId !== k", arg=key_id
    )
    assert "Disabled" in card(page, key_id).inner_text()
    card(page, key_id).locator('button:has-text("Enable")').click()
    card(page, key_id).locator('button:has-text("Disable")').wait_for()


def test_traffic_moves_the_bars_and_the_log_within_two_seconds(
    watched: Watched, gateway: Gateway
) -> None:
    page = watched.page
    page.wait_for_timeout(1200)  # let the stream settle after the page's first snapshot
    newest = page.evaluate("Number(document.querySelector('#log tbody tr')?.dataset.rowId || 0)")
    used_before = {
        k: card(page, k).locator(".used").first.inner_text()
        for k in ("openai-1", "openai-2", "groq-1")
    }
    key = gateway.chat(agent="support-bot")
    t0 = time.monotonic()
    page.wait_for_function(
        """([key, before, newest]) => {
            const row = document.querySelector('#log tbody tr');
            const used = document.querySelector(`article[data-key-id="${key}"] .used`);
            return row && Number(row.dataset.rowId) > newest && used && used.textContent !== before;
        }""",
        arg=[key, used_before[key], newest],
        timeout=LIVE_MS,
    )
    assert time.monotonic() - t0 < LIVE_MS / 1000
    first = page.locator("#log tbody tr").first
    assert "support-bot" in first.inner_text() and "ok" in first.inner_text()
    assert page.locator('#agents-table tr[data-agent="support-bot"]').is_visible()


def test_page_recovers_after_a_server_restart(watched: Watched, gateway: Gateway) -> None:
    page = watched.page
    instance = page.get_attribute("body", "data-instance")
    gateway.stop()
    page.wait_for_selector("#conn[data-state=reconnecting]")
    gateway.start()
    page.wait_for_function(
        "(old) => document.body.dataset.instance !== old", arg=instance, timeout=15_000
    )
    page.wait_for_selector("#conn[data-state=live]")
    newest = page.evaluate("Number(document.querySelector('#log tbody tr')?.dataset.rowId || 0)")
    gateway.chat()
    page.wait_for_function(
        "(n) => Number(document.querySelector('#log tbody tr')?.dataset.rowId || 0) > n",
        arg=newest,
        timeout=LIVE_MS + 1000,
    )


def fill_for_screenshot(gateway: Gateway) -> None:
    """Usage worth looking at: traffic on every key, one key in WARNING, alerts."""
    for i in range(12):
        gateway.chat(agent=("support-bot", "research", None)[i % 3])
    gateway.call("POST", "/api/use", {"key_id": "openai-1", "tokens_used": 2300}, admin=True)
    gateway.call("POST", "/api/use", {"key_id": "groq-1", "tokens_used": 1200, "success": False, "reason": "upstream timeout"}, admin=True)  # fmt: skip


@pytest.mark.parametrize(("name", "width", "height"), [("desktop", 1366, 900), ("phone", 390, 844)])
def test_screenshots(
    browser: Browser, gateway: Gateway, name: str, width: int, height: int
) -> None:
    if name == "desktop":
        fill_for_screenshot(gateway)
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    w = Watched(page)
    try:
        page.goto(gateway.url + "/")
        page.wait_for_selector("#conn[data-state=live]")
        sign_in(page, gateway.token)
        page.wait_for_selector("#banner:not([hidden])")
        page.wait_for_timeout(1500)
        page.evaluate("document.getElementById('toast').classList.remove('show')")
        page.wait_for_timeout(300)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px at {width}px"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / f"dashboard-{name}.png"
        page.screenshot(path=str(shot), full_page=True)
        page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}-viewport.png"))
        assert shot.stat().st_size > 10_000
        assert w.errors == [] and w.dialogs == []
    finally:
        context.close()
