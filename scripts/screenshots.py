"""Regenerate the dashboard pictures in docs/ from a running demo:
``python scripts/screenshots.py``.

Starts ``quotaflow demo`` on a free port, lets its agents run for a while (keys fill up,
cool down and switch), then takes the dashboard in Debian's Chromium (Playwright, headless;
no browser is downloaded) at 1366×768 (``docs/dashboard.png``, the README's picture) and on a
390×844 phone (``docs/dashboard-phone.png``).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--no-first-run"]
SHOTS = {"dashboard.png": (1366, 768), "dashboard-phone.png": (390, 844)}
WARM_UP_S = 25  # traffic on every key, a cool-down or two, bars partly filled


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        demo = subprocess.Popen(
            [sys.executable, "-m", "quotaflow", "demo", "--port", "0", "--home", home],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert demo.stdout is not None
            url = None
            for line in demo.stdout:
                m = re.search(r"dashboard: (http://\S+)/", line)
                if m:
                    url = m.group(1)
                    break
            if url is None:
                sys.exit("the demo did not start")
            time.sleep(WARM_UP_S)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
                for name, (width, height) in SHOTS.items():
                    page = browser.new_page(viewport={"width": width, "height": height})
                    page.goto(url + "/")
                    page.wait_for_selector("#conn[data-state=live]")
                    page.wait_for_selector("[data-key-id]")
                    page.wait_for_timeout(1500)
                    page.screenshot(path=str(DOCS / name))
                    page.close()
                browser.close()
        finally:
            demo.terminate()
            demo.wait(20)
    for name in SHOTS:
        print(f"wrote docs/{name}")


if __name__ == "__main__":
    main()
