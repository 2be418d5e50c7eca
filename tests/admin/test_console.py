"""The web console end to end, in headless Chromium driven by Playwright.

Nothing is faked between the browser and the data: mail events go to the session's Kafka broker, a
real ``smtp-discovery worker`` process discovers the addresses (event-time clock, memory store),
a real Sink writes its state to chDB, and the admin API serves the console under uvicorn on a
loopback port. The browser then turns two discovered addresses into users, marks the third
invalid and removes it from that list, saves a setting, previews a report, and shows that tenant
A's token gets nothing of tenant B's (while B's own token does).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from smtp_discovery.admin.api import create_app
from smtp_discovery.admin.context import AdminContext
from smtp_discovery.admin.tokens import new_token
from smtp_discovery.jobs.render import Presentation
from smtp_discovery.schemas.mail import CalloutVerified, RecipientDelivered
from smtp_discovery.schemas.state import AddressRecord, AddressStateSnapshot, AddressStatus
from smtp_discovery.schemas.topics import ADDRESS_STATE, ADMIN_TOKENS
from smtp_discovery.sinks.migrate import migrate
from smtp_discovery.sinks.schema import Layout
from smtp_discovery.sinks.sink import Sink, SinkSettings
from tests.jobs.history import History
from tests.streams.worker_harness import WorkerRun
from tests.token_key import KEY

pytestmark = pytest.mark.kafka

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
XSS = '"<img src=x onerror=alert(1)>"@acme.example'
"""A valid quoted local part that is also markup: the console must show it as text."""


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"{what}: not reached within {timeout:.0f}s"
        await asyncio.sleep(0.2)


def mail(tenant_id: str, address: str, start: datetime) -> list[Any]:
    """A verified callout and three clean deliveries: the default detection threshold."""
    base = {"tenant_id": tenant_id, "address": address}
    clean = {"verdict": "clean", "client_ip": "192.0.2.1"}
    return [
        CalloutVerified(**base, event_time=start, destination="mx.example:25", reply_code=250),
        *(
            RecipientDelivered(
                **base, **clean, event_time=start + timedelta(minutes=i), message_id=f"m{i}"
            )
            for i in (1, 2, 3)
        ),
    ]


@dataclass
class Console:
    url: str
    api: httpx.AsyncClient
    tokens: dict[str, str]
    run: WorkerRun
    ctx: AdminContext

    def headers(self, tenant_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[tenant_id]}"}

    async def discovered(self, tenant_id: str) -> list[str]:
        response = await self.api.get(
            f"/v1/tenants/{tenant_id}/discovered", headers=self.headers(tenant_id)
        )
        return [item["address"] for item in response.json()["items"]]


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """uvicorn on a free loopback port, in this event loop (the API's Kafka clients live here)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           lifespan="off"))  # fmt: skip
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), "uvicorn stopped before it started"
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def console(
    kafka_bootstrap: str, clickhouse: Any, unique: str, tmp_path: Path
) -> AsyncIterator[Console]:
    run = WorkerRun(kafka_bootstrap, f"c{unique}", tmp_path)
    await run.setup([])
    layout = Layout(f"console_{unique}")
    migrate(clickhouse, layout)
    shared = clickhouse
    ctx = AdminContext(
        {"bootstrap_servers": kafka_bootstrap}, run.names, shared, layout, token_key=KEY
    )
    await ctx.start()
    sink = Sink({"bootstrap_servers": kafka_bootstrap}, shared, layout, run.names,
                SinkSettings(group=f"console-{unique}", batch_seconds=0.1))  # fmt: skip
    stop = asyncio.Event()
    sink_task = asyncio.create_task(sink.run(stop))
    try:
        async with serving(create_app(ctx)) as url, httpx.AsyncClient(base_url=url) as api:
            bearer, record = new_token(None, "operator", key=KEY)
            await ctx.publish(ADMIN_TOKENS, [record])
            tokens = {}
            for tenant_id in ("acme", "beta"):
                created = await api.post(
                    "/v1/tenants",
                    headers={"Authorization": f"Bearer {bearer}"},
                    json={"tenant_id": tenant_id, "name": tenant_id.title(),
                          "domains": [f"{tenant_id}.example"],
                          "settings": {"discovery_enabled": True}},
                )  # fmt: skip
                assert created.status_code == 201, created.text
                tokens[tenant_id], record = new_token(tenant_id, "console test", key=KEY)
                await ctx.publish(ADMIN_TOKENS, [record])
            tokens["operator"] = bearer
            run.start("worker")
            try:
                yield Console(url, api, tokens, run, ctx)
            finally:
                run.stop_all()
    finally:
        stop.set()
        await asyncio.wait_for(sink_task, 30)
        await ctx.stop()


async def sign_in(browser: Any, console: Console, tenant_id: str, seen: list[str]) -> Any:
    """A fresh tab (its own sessionStorage) signed in with the tenant's token, watched: every
    console line, request URL, script error and dialog goes to ``seen``."""
    page = await browser.new_page()

    async def on_dialog(dialog: Any) -> None:
        seen.append(f"dialog: {dialog.message}")
        await dialog.dismiss()

    page.on("console", lambda message: seen.append(f"console: {message.text}"))
    page.on("request", lambda request: seen.append(f"request: {request.url}"))
    page.on("pageerror", lambda error: seen.append(f"error: {error}"))
    page.on("dialog", on_dialog)
    await page.goto(f"{console.url}/console/")
    await page.fill("#token", console.tokens[tenant_id])
    await page.click("button[type=submit]")
    await page.wait_for_url("**/console/discovered")
    return page


async def mark_invalid_and_remove(page: Any, expect: Any) -> None:
    """Mark as Invalid Account, then Remove from Invalid List: the address goes and comes back
    forgotten (a removed invalid address is verified afresh by the next mail)."""
    rows = page.locator("#list tbody tr[data-address]")
    await rows.first.locator("input[type=checkbox]").check()
    await page.select_option("#action", "mark_invalid")
    await page.click("#apply-button")
    await expect(rows).to_have_count(0, timeout=30_000)
    await page.click("a[data-nav=invalid]")
    await expect(rows.locator("td.address")).to_have_text([XSS])
    await rows.first.locator("input[type=checkbox]").check()
    await page.click("#apply-button")
    await expect(page.locator("#commands li[data-status=applied]")).to_have_count(1)
    await expect(rows).to_have_count(0, timeout=30_000)


async def settings_and_reports(page: Any, expect: Any, console: Console) -> None:
    """The settings form shows values and recommendations, and never saves over a version it
    did not show; this week's New users report (a preview of GET /reports/new-users) lists the
    two users just created."""
    await page.click("a[data-nav=settings]")
    threshold = page.locator('#settings tr[data-row="inbound_detection_threshold"]')
    await expect(threshold.locator("input[type=number]")).to_have_value("3")
    await expect(threshold.locator("td").nth(2)).to_have_text("3")
    await page.fill('[data-setting="notices_before_expiry"]', "4")
    await page.click("#settings button[type=submit]")
    await expect(page.locator("#notice")).to_have_text("Saved: Notices before expiry.")
    # Another admin saves while this form is open; this admin's save then writes nothing.
    acme = {"Authorization": f"Bearer {console.tokens['acme']}"}
    other = await console.api.patch(
        "/v1/tenants/acme/settings", json={"notices_before_expiry": 2}, headers=acme
    )
    assert other.status_code == 200, other.text
    await page.fill('[data-setting="notices_before_expiry"]', "5")
    await page.click("#settings button[type=submit]")
    await expect(page.locator("#notice")).to_contain_text("Someone saved these settings")
    await expect(page.locator('[data-setting="notices_before_expiry"]')).to_have_value("2")
    kept = await console.api.get("/v1/tenants/acme/settings", headers=acme)
    assert kept.json()["notices_before_expiry"]["value"] == 2
    await page.click("a[data-nav=reports]")
    year, week, _ = datetime.now(UTC).isocalendar()

    async def both_in_clickhouse() -> bool:
        # The report reads the state changes the sink stores, a moment after the worker made
        # them; the preview is asked for once, so only once they are there.
        text = await console.api.get(
            "/v1/tenants/acme/reports/new-users",
            params={"week": f"{year}-W{week:02d}", "format": "text"},
            headers=acme,
        )
        return all(user in text.text for user in ("ann@acme.example", "bob@acme.example"))

    await until(both_in_clickhouse, "the sink stores the new users' state changes")
    await page.fill("#week", f"{year}-W{week:02d}")
    await page.click("#report button[type=submit]")
    preview = page.frame_locator("#preview-frame")
    await expect(preview.locator("[data-rows] tbody td:first-child")).to_have_text(
        ["ann@acme.example", "bob@acme.example"]
    )


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH: `scripts/install --dev` installs Debian's chromium "
    "(Playwright cannot download its own browser here)",
)
async def test_an_admin_turns_discovered_addresses_into_users(console: Console) -> None:
    from playwright.async_api import async_playwright, expect

    start = datetime.now(UTC) - timedelta(hours=1)
    mine = ["ann@acme.example", "bob@acme.example", XSS]
    events = [m for address in mine for m in mail("acme", address, start)]
    await console.run.publish([*events, *mail("beta", "carol@beta.example", start)])

    async def all_discovered() -> bool:
        acme, beta = await console.discovered("acme"), await console.discovered("beta")
        return sorted(acme) == sorted(mine) and beta == ["carol@beta.example"]

    await until(all_discovered, "the worker and the sink discover every address")

    seen: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            page = await sign_in(browser, console, "acme", seen)
            rows = page.locator("#list tbody tr[data-address]")
            await expect(rows).to_have_count(3)
            xss = rows.filter(has_text="onerror")
            await expect(xss.locator("td.address")).to_have_text(XSS)
            assert await page.locator("#list img").count() == 0

            # As in the vendor's console: check the rows, Select > Create User Account, names.
            await page.select_option("#action", "create_user")
            for address, first, surname in [("ann@", "Ann", "Lee"), ("bob@", "Bob", "Ray")]:
                row = page.locator(f'#list tbody tr[data-address^="{address}"]')
                await row.locator("input[type=checkbox]").check()
                await row.locator("input[data-field=first_name]").fill(first)
                await row.locator("input[data-field=surname]").fill(surname)
            await page.click("#apply-button")

            done = page.locator("#commands li[data-status=applied]")
            await expect(done).to_have_count(2, timeout=30_000)
            await expect(rows).to_have_count(1, timeout=30_000)
            await expect(rows.locator("td.address")).to_have_text(XSS)

            await mark_invalid_and_remove(page, expect)
            await settings_and_reports(page, expect, console)

            # Tenant A's token, tenant B asked for: the API refuses and nothing of B shows...
            await page.goto(f"{console.url}/console/discovered?tenant=beta")
            await expect(page.locator("#notice")).to_contain_text("belongs to another tenant")
            await expect(rows).to_have_count(0)
            assert "carol" not in await page.content()
            options = await page.locator("#tenant option").all_inner_texts()
            assert options == ["Acme (acme)", "beta"]
            # ...while B's own token shows B's address (so the refusal above is not just empty).
            other = await sign_in(browser, console, "beta", seen)
            await expect(other.locator("#list tbody tr[data-address]")).to_have_text(
                [re.compile("carol@beta.example")]
            )
            await expect(other.locator("#tenant option")).to_have_text(["Beta (beta)"])
            # An operator finds a tenant by searching (the picker never lists every tenant).
            operator = await sign_in(browser, console, "operator", seen)
            await expect(operator.locator("#tenant option")).to_have_text(
                ["Acme (acme)", "Beta (beta)"]
            )
            await operator.fill("#tenant-search", "BET")
            await expect(operator.locator("#tenant option")).to_have_text(
                ["Beta (beta)", "Acme (acme)"]  # the matches, and the tenant shown now
            )
            await operator.select_option("#tenant", "beta")
            await expect(operator.locator("#list tbody tr[data-address]")).to_have_text(
                [re.compile("carol@beta.example")]
            )
        finally:
            await browser.close()

    users = await console.api.get("/v1/tenants/acme/users", headers=console.headers("acme"))
    assert {(u["address"], u["first_name"], u["surname"]) for u in users.json()} == {
        ("ann@acme.example", "Ann", "Lee"),
        ("bob@acme.example", "Bob", "Ray"),
    }
    assert not [line for line in seen if line.startswith(("dialog", "error"))], seen
    tokens = list(console.tokens.values())
    assert not [line for line in seen if any(t in line for t in tokens)], "a token leaked"


async def act(console: Console, tenant_id: str, body: dict[str, Any]) -> None:
    response = await console.api.post(
        f"/v1/tenants/{tenant_id}/actions", json=body, headers=console.headers(tenant_id)
    )
    assert response.status_code == 202, response.text


async def accounts(console: Console, tenant_id: str, **params: Any) -> dict[str, Any]:
    response = await console.api.get(
        f"/v1/tenants/{tenant_id}/accounts", params=params, headers=console.headers(tenant_id)
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


DASH = "\N{EN DASH}"
"""The paging footer puts it between the first and the last row shown."""
SERIES = ("new_pending", "new_discovered", "new_users", "new_aliases", "new_invalid")
"""The overview's discovery chart; its messages chart draws ``messages``."""


async def users_page(page: Any, expect: Any, console: Console) -> None:
    """The Users page lists users, functional accounts and aliases (with their user) a page at a
    time, searches and filters them, and deletes one only after the admin confirmed it."""
    await page.click("a[data-nav=users]")
    rows = page.locator("#list tbody tr[data-address]")
    await expect(rows).to_have_count(50)
    await expect(page.locator("#count")).to_have_text(f"1{DASH}50 of 55")
    ann = page.locator('#list tbody tr[data-address="ann@acme.example"]')
    await expect(ann.locator("td")).to_have_text(
        [
            "",
            "ann@acme.example",
            "User",
            "Ann Lee",
            "End user",
            "1 alias: al@acme.example",
            re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d$"),
        ]
    )
    alias = page.locator('#list tbody tr[data-address="al@acme.example"]')
    await expect(alias.locator("td[data-status]")).to_have_text("Alias")
    await expect(alias.locator("td.linked")).to_have_text("alias of ann@acme.example")
    info = page.locator('#list tbody tr[data-address="info@acme.example"]')
    await expect(info.locator("td[data-status]")).to_have_text("Functional")
    await page.click("#next")
    await expect(rows).to_have_count(5)
    await expect(page.locator("#count")).to_have_text(f"51{DASH}55 of 55")
    await expect(page.locator("#next")).to_be_disabled()
    await page.click("#prev")
    await expect(rows).to_have_count(50)
    # Search: an address or a name; an alias is found by its user's address too.
    await page.fill("#q", "ANN@")
    await page.press("#q", "Enter")
    await expect(rows.locator("td.address")).to_have_text(["al@acme.example", "ann@acme.example"])
    await page.fill("#q", "lee")
    await page.press("#q", "Enter")
    await expect(rows.locator("td.address")).to_have_text(["ann@acme.example"])
    await page.fill("#q", "")
    await page.select_option("#status", "functional")
    await expect(rows.locator("td.address")).to_have_text(["info@acme.example"])
    await page.select_option("#status", "")

    # Delete: nothing is sent until the admin confirms in the dialog.
    deletes: list[str] = []
    page.on("request", lambda r: deletes.append(r.url) if r.method == "DELETE" else None)
    await page.fill("#q", "u00@")
    await page.press("#q", "Enter")
    await expect(rows.locator("td.address")).to_have_text(["u00@acme.example"])
    await rows.first.locator("input[type=checkbox]").check()
    dialog = page.locator("dialog#confirm")
    await page.click("#apply-button")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("h2")).to_have_text("Delete u00@acme.example?")
    await page.click("#confirm-cancel")
    await expect(dialog).to_be_hidden()
    await expect(rows).to_have_count(1)
    assert deletes == []
    await page.click("#apply-button")
    await page.click("#confirm-delete")
    await expect(page.locator("#commands li[data-status=applied]")).to_have_count(1)
    await expect(rows).to_have_count(0, timeout=30_000)
    assert [url.rsplit("/", 1)[1] for url in deletes] == ["u00%40acme.example"]
    # A user with an alias: the dialog warns, the worker refuses, the user stays.
    await page.fill("#q", "ann@acme")
    await page.press("#q", "Enter")
    await page.locator('#list tbody tr[data-address="ann@acme.example"] input').check()
    await page.click("#apply-button")
    await expect(page.locator("#confirm-text")).to_contain_text("still has aliases")
    await page.click("#confirm-delete")
    await expect(page.locator("#commands li[data-status=rejected]")).to_contain_text("alias")
    await expect(rows).to_have_count(2)
    after = await accounts(console, "acme")
    assert after["total"] == 54 and "u00@acme.example" not in str(after)


async def overview_page(page: Any, expect: Any) -> None:
    """The overview draws the history: a point per day of the range for every series (30 days,
    then 90), today's counts where they belong, and the lists' totals."""
    await page.click("a[data-nav=overview]")
    assert await page.locator("header nav a").first.get_attribute("data-nav") == "overview"
    today = datetime.now(UTC).date()
    for days in (30, 90):
        if days == 90:
            await page.check("input[name=days][value='90']")
        chart = page.locator("#discovery svg.chart")
        await expect(chart).to_have_attribute("data-days", str(days))
        await expect(chart).to_have_attribute("role", "img")
        await expect(chart).to_have_attribute("aria-label", re.compile(rf"last {days} days"))
        assert await chart.locator("title").first.text_content() == (
            f"Addresses per day, the last {days} days"
        )
        box = await chart.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100, box
        expected = [(today - timedelta(days=days - 1 - i)).isoformat() for i in range(days)]
        for key in SERIES:
            points = chart.locator(f'circle[data-series="{key}"]')
            assert await points.evaluate_all("ps => ps.map(p => p.dataset.day)") == expected, key
        bars = page.locator('#messages svg.chart rect[data-series="messages"]')
        assert await bars.evaluate_all("bs => bs.map(b => b.dataset.day)") == expected
        assert await chart.locator("[data-legend]").count() == len(SERIES)
        # Today's counts: the mail and the actions of this test, each in its own series.
        values = {
            key: await page.locator(f'[data-series="{key}"][data-day="{today}"]').get_attribute(
                "data-value"
            )
            for key in (*SERIES, "messages")
        }
        assert values == {"new_pending": "1", "new_discovered": "1", "new_users": "53",
                          "new_aliases": "1", "new_invalid": "1", "messages": "3"}  # fmt: skip
        await expect(page.locator("#numbers tbody tr")).to_have_count(days)
    await expect(page.locator("#headline dd")).to_have_text(["1", "52", "1", "1", "1"])


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: see the test above")
async def test_the_users_page_and_the_overview(console: Console) -> None:
    from playwright.async_api import async_playwright, expect

    users = [f"u{i:02}@acme.example" for i in range(52)]
    await act(console, "acme", {"action": "create_user", "addresses": ["ann@acme.example", *users],
              "users": [{"address": "ann@acme.example", "first_name": "Ann", "surname": "Lee"}],
              "role": "end_user"})  # fmt: skip
    await act(console, "acme", {"action": "create_functional", "addresses": ["info@acme.example"]})
    await act(console, "acme", {"action": "mark_invalid", "addresses": ["gone@acme.example"]})
    await act(console, "beta", {"action": "create_user", "addresses": ["ann@beta.example"]})
    await console.run.publish(
        mail("acme", "pat@acme.example", datetime.now(UTC) - timedelta(minutes=9))
    )

    async def users_made() -> bool:
        return (await accounts(console, "acme", q="ann@"))["total"] == 1

    await until(users_made, "the worker makes ann a user")
    await act(console, "acme", {"action": "add_alias", "addresses": ["al@acme.example"],
                                "primary": "ann@acme.example"})  # fmt: skip

    async def everything() -> bool:
        listed = await accounts(console, "acme", q="ann@")
        return (
            (await accounts(console, "acme"))["total"] == 55
            and [i["aliases"] for i in listed["items"]] == [[], ["al@acme.example"]]
            and await console.discovered("acme") == ["pat@acme.example"]
        )

    await until(everything, "the worker and the sink make every account and discover pat")

    seen: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            page = await sign_in(browser, console, "acme", seen)
            await users_page(page, expect, console)
            await overview_page(page, expect)
            # Tenant A's token, tenant B asked for: refused, and nothing of B shows.
            for name in ("users", "overview"):
                await page.goto(f"{console.url}/console/{name}?tenant=beta")
                await expect(page.locator("#notice")).to_contain_text("belongs to another tenant")
                assert "ann@beta" not in await page.content()
            await expect(page.locator("#discovery svg")).to_have_count(0)
        finally:
            await browser.close()
    assert not [line for line in seen if line.startswith(("dialog", "error"))], seen


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: see the first test above")
async def test_the_reports_page_shows_the_mail_as_it_is_sent(
    console: Console, clickhouse: Any, unique: str
) -> None:
    """The Reports page shows the API's format=html (the mail's HTML part) in a sandboxed frame
    that runs nothing: it looks as the mail does (same size, same styles) under the console's
    Content-Security-Policy, an address that is markup shows as text, and the link to the
    console opens the tenant's Discovered list outside the frame."""
    from playwright.async_api import async_playwright, expect

    console.ctx.presentation = Presentation("Example Mail Protect", f"{console.url}/console")
    # Two discovered addresses, written where the sink writes them.
    found = datetime.now(UTC) - timedelta(days=1)
    snapshots = [
        AddressStateSnapshot(tenant_id="acme", address=address, event_time=found,
                             record=AddressRecord(tenant_id="acme", address=address,
                                                  status=AddressStatus.DISCOVERED,
                                                  status_since=found, status_reason="threshold",
                                                  discovered_at=found))
        for address in ("ann@acme.example", XSS)
    ]  # fmt: skip
    History(clickhouse, Layout(f"console_{unique}")).add(ADDRESS_STATE, *snapshots)
    acme = console.headers("acme")
    mail = await console.api.get("/v1/tenants/acme/reports/warning?format=html", headers=acme)
    assert mail.status_code == 200, mail.text
    # Every waiting address: discovered within the tenant's 3 notices, and the day after.
    link = f"{console.url}/console/discovered?tenant=acme&weeks=4"

    seen: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            page = await sign_in(browser, console, "acme", seen)
            requests: list[str] = []
            page.context.on("request", lambda request: requests.append(request.url))
            await page.click("a[data-nav=reports]")
            await page.select_option("#kind", "warning")
            await page.click("#report button[type=submit]")
            frame = page.locator("#preview-frame")
            sandbox = await frame.get_attribute("sandbox")
            assert sandbox is not None and "allow-scripts" not in sandbox
            preview = page.frame_locator("#preview-frame")
            summary = preview.locator("[data-summary]")
            await expect(summary).to_be_visible()
            await expect(summary).to_contain_text("addresses wait for an administrator")
            await expect(summary.locator("td").first).to_contain_text("2")
            cells = preview.locator("[data-rows] tbody td:first-child")
            await expect(cells).to_have_text(sorted(["ann@acme.example", XSS]))
            assert await preview.locator("img, script").count() == 0
            button = preview.locator("a[data-console]")
            await expect(button).to_have_attribute("href", link)
            await expect(button).to_have_css("color", "rgb(255, 255, 255)")  # inline styles hold
            await expect(preview.locator("body")).to_contain_text("Example Mail Protect")

            # The same HTML opened as a page of its own: the preview is the same size.
            width = (await frame.bounding_box() or {}).get("width")
            assert width is not None
            alone = await browser.new_page(viewport={"width": round(width), "height": 900})
            await alone.set_content(mail.text)
            mailed = await alone.locator("[data-report]").bounding_box()
            shown = await preview.locator("[data-report]").bounding_box()
            assert mailed is not None and shown is not None
            assert (round(shown["width"]), round(shown["height"])) == (
                round(mailed["width"]),
                round(mailed["height"]),
            )
            text = await preview.locator("body").inner_text()
            assert text == await alone.locator("body").inner_text()
            await alone.close()

            async with page.expect_popup() as opened:
                await button.click()
            await (await opened.value).close()
            assert link in requests, requests
            # The Discovered list takes the span a link asks for, offered if it is not a choice.
            await page.goto(f"{console.url}/console/discovered?tenant=acme&weeks=5")
            await expect(page.locator("#weeks")).to_have_value("5")
            await expect(page.locator("#list tbody tr")).to_have_count(2)
        finally:
            await browser.close()
    assert not [line for line in seen if line.startswith(("dialog", "error"))], seen
    assert not [line for line in seen if "Content Security Policy" in line], seen
    assert not [line for line in seen if console.tokens["acme"] in line], "a token leaked"
