"""Refusals on the dashboard, in Chromium at 1366×768 and on a 390×844 phone: a request no
key could take shows in the live log and in the "Refused (last hour)" tile, which counts the
same requests as the session summary and ``quotaflow report``."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import pytest

from tests.e2e.procs import fake_provider
from tests.web.dashboard import test_browser as dashboard
from tests.web.dashboard.test_browser import Gateway, Watched

pytestmark = pytest.mark.browser
browser = dashboard.browser  # the same headless Chromium fixture

from playwright.sync_api import Browser, expect  # noqa: E402

VIEWPORTS = {"desktop": (1366, 768), "phone": (390, 844)}
ANSWERED, REFUSED = 2, 3


def refusals_yaml(fake_url: str) -> str:
    return f"""
server: {{dashboard_read_only_on_loopback: true}}
settings: {{max_wait_s: 0}}
providers:
  - name: openai
    base_url: {fake_url}/v1
    models: [gpt-4o-mini]
    keys:
      - {{id: team-a, secret: sk-refusals-0001,
          limits: [{{metric: requests, window: minute, amount: {ANSWERED}}}]}}
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with fake_provider("openai") as fake:
        gw = Gateway(fake.url, tmp_path_factory.mktemp("refusals") / "home")
        gw.cfg.write_text(refusals_yaml(fake.url))
        gw.start()
        try:
            for _ in range(ANSWERED):
                gw.chat(model="gpt-4o-mini")
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
            for _ in range(REFUSED):
                status, answer, _ = gw.call("POST", "/v1/chat/completions", body)
                assert status == 429, answer
            yield gw
        finally:
            gw.stop()


@contextlib.contextmanager
def opened(browser: Browser, gateway: Gateway, width: int, height: int) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        w = Watched(context.new_page())
        w.page.set_default_timeout(10_000)
        w.page.goto(gateway.url + "/")
        w.page.wait_for_selector("#conn[data-state=live]")
        yield w
    finally:
        context.close()


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_refusals_show_in_the_tile_and_the_live_log(
    browser: Browser, gateway: Gateway, viewport: str
) -> None:
    _, summary, _ = gateway.call("GET", "/api/session-summary")
    assert (summary["requests"], summary["failures"]) == (ANSWERED + REFUSED, REFUSED)
    with opened(browser, gateway, *VIEWPORTS[viewport]) as w:
        page = w.page
        # locators and retrying expectations, never element handles or scrolling: the tiles
        # and the live log re-render as events arrive, which detaches what was found before
        tile = page.locator('[data-tile="Refused (last hour)"]')
        expect(tile).to_be_visible()
        expect(tile.locator(".tile-value")).to_have_text(str(summary["failures"]))
        expect(tile).to_have_class(re.compile(r"\btone-warning\b"))
        detail = f"of {ANSWERED + REFUSED} requests, {ANSWERED} answered"
        expect(tile.locator(".tile-detail")).to_contain_text(detail)
        result = page.locator(".result", has_text="refused")
        refused = page.locator("#log tbody tr").filter(has=result)
        expect(refused).to_have_count(REFUSED)
        expect(refused.first).to_be_visible()
        expect(refused.first).to_contain_text("gpt-4o-mini")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px"
        assert w.errors == [] and w.dialogs == []
