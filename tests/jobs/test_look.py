"""Each report's HTML as a mail client shows it: headless Chromium (Debian's, through Playwright,
launched as tests/admin/test_console.py does) at 600 px, the width the HTML is made for."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from smtp_discovery.jobs.render import Presentation, as_html
from tests.jobs import samples

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH = 600

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH: `scripts/install --dev` installs Debian's chromium "
    "(Playwright cannot download its own browser here)",
)


async def within_width(page: Any, selector: str) -> None:
    box = await page.locator(selector).first.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0, selector
    assert box["x"] >= 0 and box["x"] + box["width"] <= WIDTH, (selector, box)


@pytest.mark.parametrize("console_url", [samples.CONSOLE, None], ids=["console", "no-console"])
async def test_each_report_fits_600_px_with_its_summary_table_and_link(
    console_url: str | None,
) -> None:
    from playwright.async_api import async_playwright, expect

    shown = Presentation("Example Mail Protect", console_url)
    seen: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            for kind, make in samples.REPORTS.items():
                page = await browser.new_page(viewport={"width": WIDTH, "height": 900})
                page.on("dialog", lambda dialog: seen.append(f"dialog: {dialog.message}"))
                page.on("pageerror", lambda error: seen.append(f"error: {error}"))
                page.on("request", lambda request: seen.append(f"request: {request.url}"))
                report = make(samples.XSS_NAME)
                await page.set_content(as_html(report, shown))
                await expect(page.locator("[data-summary]")).to_be_visible()
                await expect(page.locator("[data-rows]")).to_be_visible()
                await expect(page.locator("h1")).to_have_text(report.title)  # the name as text
                assert samples.XSS_NAME in report.title
                for selector in ("[data-report]", "[data-summary]", "[data-rows]",
                                 "[data-rows] tbody tr:last-child"):  # fmt: skip
                    await within_width(page, selector)
                overflow = await page.evaluate(
                    "document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
                assert overflow == 0, f"{kind}: {overflow} px wider than the window"
                rows = page.locator("[data-rows] tbody tr")
                await expect(rows).to_have_count(len(report.rows))
                links = page.locator("a")
                if console_url:
                    await expect(links).to_have_count(1)
                    await expect(links).to_be_visible()
                    await within_width(page, "a[data-console]")
                    href = await links.get_attribute("href")
                    assert href is not None and href.startswith(f"{console_url}/")
                    assert "tenant=acme" in href
                else:
                    await expect(links).to_have_count(0)
                    await expect(page.locator("body")).to_contain_text("docs/admin-api.md")
                assert await page.locator("script, img, style, link").count() == 0
                await page.close()
            # The warning's odd addresses: the markup one as text, the long one wrapped.
            page = await browser.new_page(viewport={"width": WIDTH, "height": 900})
            await page.set_content(as_html(samples.warning(), shown))
            await expect(page.locator("[data-rows] td").first).to_have_text("old@acme.example")
            await expect(page.locator("[data-rows]")).to_contain_text(samples.XSS_ADDRESS)
            await within_width(page, f'[data-rows] td:text-is("{samples.LONG_ADDRESS}")')
        finally:
            await browser.close()
    assert seen == [], seen  # no script ran, nothing was loaded
