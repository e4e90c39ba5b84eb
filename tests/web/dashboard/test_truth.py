"""What a newcomer sees on the dashboard, in Chromium at 1366×768 and on a 390×844 phone: a
key the provider refused (401) wears a red badge, the Health tile, the Recommendation, the
alert banner and the Emergency tile tell one story, text is readable and nothing scrolls
sideways; signed out, the page says once how to sign in; a key can be added without a quota.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tests.e2e.procs import fake_provider
from tests.web.dashboard import test_browser as dashboard
from tests.web.dashboard.test_browser import Gateway, Watched, card, sign_in

pytestmark = pytest.mark.browser
browser = dashboard.browser  # the same headless Chromium fixture

from playwright.sync_api import Browser, Page  # noqa: E402

GOOD = "sk-truth-good-0001"
DEAD = "sk-truth-dead-0000"
VIEWPORTS = {"desktop": (1366, 768), "phone": (390, 844)}


def truth_yaml(fake_url: str) -> str:
    # The refused key goes first, so the first request meets the 401 and falls back.
    return f"""
server: {{dashboard_read_only_on_loopback: true}}
settings: {{max_wait_s: 0, strategy: priority}}
providers:
  - name: openai
    base_url: {fake_url}/v1
    models: [gpt-4o-mini]
    keys:
      - {{id: team-dead, secret: {DEAD}, priority: 0,
          limits: [{{metric: requests, window: minute, amount: 20}}]}}
      - {{id: team-good, secret: {GOOD}, priority: 1,
          limits: [{{metric: tokens, window: day, amount: 50000}}]}}
    limits: [{{metric: tokens, window: once, amount: 900000}}]
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with fake_provider("openai", "--key", GOOD, "--invalid-key", DEAD) as fake:
        gw = Gateway(fake.url, tmp_path_factory.mktemp("truth") / "home")
        gw.cfg.write_text(truth_yaml(fake.url))
        gw.start()
        try:
            assert gw.chat() == "team-good"  # team-dead answered 401 and was disabled
            yield gw
        finally:
            gw.stop()


@contextlib.contextmanager
def opened(browser: Browser, gateway: Gateway, width: int, height: int) -> Iterator[Watched]:
    """The dashboard in a fresh browser context of this size, once its keys are shown."""
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        w = Watched(context.new_page())
        w.page.set_default_timeout(10_000)
        w.page.goto(gateway.url + "/")
        w.page.wait_for_selector("[data-key-id]")
        yield w
    finally:
        context.close()


@pytest.fixture(params=list(VIEWPORTS))
def watched(
    request: pytest.FixtureRequest, browser: Browser, gateway: Gateway
) -> Iterator[Watched]:
    with opened(browser, gateway, *VIEWPORTS[request.param]) as w:
        w.page.wait_for_selector("#conn[data-state=live]")
        yield w


def tile(page: Page, name: str) -> tuple[str, str]:
    t = page.locator(f'[data-tile="{name}"]')
    return t.locator(".tile-value").inner_text(), t.get_attribute("class") or ""


def test_a_key_refused_with_401_wears_a_red_badge(watched: Watched) -> None:
    page = watched.page
    dead = card(page, "team-dead")
    badge = dead.locator(".badge").first
    assert badge.inner_text() in ("DISABLED", "INVALID")
    red = page.evaluate(
        "getComputedStyle(document.documentElement).getPropertyValue('--critical-text')"
    )
    assert _rgb(badge.evaluate("el => getComputedStyle(el).color")) == _rgb_hex(red.strip())
    assert "OK" not in dead.locator(".card-head").inner_text()
    assert card(page, "team-good").locator(".badge").first.inner_text() == "OK"
    assert watched.errors == []


def test_one_status_everywhere_while_degraded(watched: Watched) -> None:
    page = watched.page
    health, health_class = tile(page, "Health")
    assert health == "degraded" and "tone-warning" in health_class
    assert tile(page, "Keys available")[0] == "1 / 2"
    assert page.locator("#rec-chosen").get_attribute("data-key-id") == "team-good"
    assert (
        page.is_visible("#banner") and page.get_attribute("#banner", "data-severity") == "warning"
    )
    assert "1 of 2 keys can serve" in page.inner_text("#banner")
    emergency, emergency_class = tile(page, "Emergency level")
    assert emergency != "normal" and "tone-ok" not in emergency_class


def test_one_status_everywhere_when_no_key_can_serve(browser: Browser, gateway: Gateway) -> None:
    status, body, _ = gateway.call("POST", "/api/keys/team-good/disable", {}, admin=True)
    assert status == 200, body
    try:
        for width, height in VIEWPORTS.values():
            with opened(browser, gateway, width, height) as w:
                page = w.page
                page.wait_for_selector("#rec-none")
                health, health_class = tile(page, "Health")
                assert health == "no key can serve" and "tone-critical" in health_class
                detail = page.inner_text('[data-tile="Health"] .tile-detail')
                assert page.inner_text("#rec-none") == detail  # the same sentence
                assert page.get_attribute("#banner", "data-severity") == "critical"
                assert detail in page.inner_text("#banner")
                emergency, emergency_class = tile(page, "Emergency level")
                assert emergency in ("critical", "emergency") and "tone-critical" in emergency_class
                assert tile(page, "Keys available")[0] == "0 / 2"
    finally:
        gateway.call("POST", "/api/keys/team-good/enable", {}, admin=True)


def test_the_provider_header_shows_each_window_separately(watched: Watched) -> None:
    head = watched.page.locator('section[data-provider="openai"] .windows li')
    names = [li.get_attribute("data-window") for li in head.all()]
    assert sorted(names) == ["requests per minute", "tokens one-time", "tokens per day"]
    assert "of 20" in head.first.inner_text()  # a per-minute limit is not summed with the rest


def test_text_is_readable_and_nothing_scrolls_sideways(watched: Watched) -> None:
    page = watched.page
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px"
    # The smallest text outside the charts (their SVG is drawn by charts.js).
    smallest = page.evaluate(
        """() => {
            let min = Infinity;
            const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
            while (walk.nextNode()) {
                const el = walk.currentNode.parentElement;
                if (!walk.currentNode.textContent.trim() || el.closest('svg, .sr-only')) continue;
                const box = el.getBoundingClientRect();
                if (!box.width || getComputedStyle(el).visibility === 'hidden') continue;
                min = Math.min(min, parseFloat(getComputedStyle(el).fontSize));
            }
            return min;
        }"""
    )
    assert smallest >= 11, smallest


def test_first_screen_at_1366_shows_the_keys(browser: Browser, gateway: Gateway) -> None:
    with opened(browser, gateway, 1366, 768) as w:
        w.page.locator("article[data-key-id]").first.wait_for()
        # Every card's top read in one layout: read one by one, a line that appears above
        # them between two reads (the page still filling in) would move only the later ones.
        tops = w.page.evaluate(
            "[...document.querySelectorAll('article[data-key-id]')]"
            ".map(c => c.getBoundingClientRect().top + window.scrollY)"
        )
        assert len(tops) >= 2
        assert max(tops) < 768  # every key card starts on the first screen
        assert len(set(tops)) == 1  # in one row: the grid fills the row


def test_signed_out_the_page_says_once_how_to_sign_in(watched: Watched, gateway: Gateway) -> None:
    page = watched.page
    note = page.locator("#read-only-note")
    assert note.is_visible()
    assert "sign in" in note.inner_text().lower() and "admin token" in note.inner_text()
    assert page.is_disabled("#add-key-open")
    assert page.locator(".provider-head button").first.is_disabled()
    assert page.locator("text=Read-only").count() == 1
    sign_in(page, gateway.token)
    assert note.is_hidden()


def test_add_key_without_a_quota(watched: Watched, gateway: Gateway) -> None:
    page = watched.page
    sign_in(page, gateway.token)
    page.click("#add-key-open")
    page.fill("#ak-provider", "openai")
    page.fill("#ak-secret", f"sk-truth-added-{page.viewport_size['width']}")  # type: ignore[index]
    page.click("#add-key button[type=submit]")
    page.wait_for_selector("#add-key[hidden]", state="attached")
    _, status, _ = gateway.call("GET", "/api/status")
    added = [k for p in status["providers"] for k in p["keys"] if k["key_id"].startswith("openai-")]
    assert added, status
    new = card(page, added[-1]["key_id"])
    new.wait_for()
    assert new.locator(".no-quota").inner_text() == "No quota of its own."
    assert page.inner_text("#add-key-error") == ""


def _rgb(css: str) -> tuple[int, ...]:
    inner = css[css.index("(") + 1 : css.index(")")]
    return tuple(int(float(x)) for x in inner.split(",")[:3])


def _rgb_hex(hex_color: str) -> tuple[int, ...]:
    h = hex_color.lstrip("#")
    return tuple(int(h[i : i + 2], 16) for i in (0, 2, 4))


def test_chart_axes_are_distinct_unclipped_and_readable(watched: Watched, gateway: Gateway) -> None:
    page = watched.page
    page.wait_for_function("document.querySelectorAll('.plot').length === 3")
    axes = page.evaluate(
        """() => {
            const ctx = document.createElement('canvas').getContext('2d');
            return [...document.querySelectorAll('.plot')].flatMap((box) => box.uplot.axes.map((a) => {
                ctx.font = a.font[0];
                const widest = Math.max(0, ...(a._values || []).map((v) => ctx.measureText(v).width));
                return {
                    chart: box.getAttribute('aria-label'), side: a.side, values: a._values || [],
                    px: parseFloat(a.font[0]) / uPlot.pxRatio, widest: widest / uPlot.pxRatio,
                    size: a._size,
                };
            }));
        }"""
    )
    assert len(axes) == 6  # tokens, cost and latency: an x and a y axis each
    for axis in axes:
        assert axis["values"], axis
        assert len(set(axis["values"])) == len(axis["values"]), axis  # no "$0.01, $0.01"
        assert axis["px"] >= 11, axis
        if axis["side"] == 3:  # the y axis on the left: its labels fit its width
            assert axis["widest"] <= axis["size"], axis
    empties = page.locator(".chart-empty").all_inner_texts()
    assert all(t.startswith(("No ", "No key")) for t in empties)
