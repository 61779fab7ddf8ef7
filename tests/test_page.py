"""The page in a real browser (Debian's Chromium through Playwright) against the app served
over HTTP, with Azurite and the simulator behind it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import expect

from exporter.runs import progress as progress_module
from tests.app_harness import config
from tests.browser import Site, screenshot
from tests.conftest import LIST_ID
from tests.manage_harness import ADMIN, ADMIN_ID, CONTRIBUTOR, NEW_KEY, connection_body, export_body, send

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
MEMBERS = b"email,first_name\n" + b"".join(b"member%d@example.com,M%d\n" % (n, n) for n in range(20))


async def finished(site: Site, name: str, run_id: str) -> dict[str, Any]:
    """The run's state once it has its report (the local host's queue pump carries it)."""
    for _ in range(600):
        answer = await send("manage_run_status", "GET", ADMIN, name=name, run_id=run_id)
        if answer.body.get("report"):
            return answer.body
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish")


async def test_the_overview_lists_the_exports_with_a_strict_policy_and_nothing_from_elsewhere(site: Site) -> None:
    page = await site.page_as(ADMIN)
    response = await page.goto(site.url())
    assert response is not None and response.status == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "unsafe-inline" not in policy
    rows = page.locator("[data-testid=exports] tbody tr")
    await rows.first.wait_for()
    assert await page.locator("[data-testid=exports] tbody th").all_inner_texts() == ["vip", "lapsed", "paused"]
    await screenshot(page, "overview")
    assert site.foreign_requests == [] and site.console_errors == []


async def mirror_vip(site: Site) -> None:
    """'vip' mirrors its list and has been run once with 20 members; its segment then changes:
    2 changed, 3 new, 5 gone."""
    document = config()
    document["exports"][0].update(mode="mirror", mapping={"email": "email", "first_name": "first_name"})
    await site.app.set_config(document)
    await site.app.put(site.app.segments, "vip/members.csv", MEMBERS)
    first = await send("manage_runs", "POST", ADMIN, name="vip")
    assert (await finished(site, "vip", first.body["run_id"]))["report"]["status"] == "succeeded"
    rows = [f"member{n}@example.com,M{n}" for n in range(15)]
    rows[0], rows[1] = "member0@example.com,Changed", "member1@example.com,Changed"
    rows += [f"newcomer{n}@example.com,N{n}" for n in range(3)]
    await site.app.put(site.app.segments, "vip/members.csv", ("email,first_name\n" + "\n".join(rows) + "\n").encode())


async def test_a_mirror_exports_preview_shows_the_api_dry_runs_counts_and_asks_before_removing(site: Site) -> None:
    await mirror_vip(site)
    api_run = await send("manage_runs", "POST", ADMIN, {"dryRun": True}, name="vip")
    expected = (await finished(site, "vip", api_run.body["run_id"]))["report"]["sync"]
    page = await site.page_as(ADMIN)
    await page.goto(site.url("#/exports/vip"))
    assert await page.locator("text=Run now").count() == 0  # a mirror export runs from its preview
    await page.get_by_role("button", name="Preview").click()
    counts = page.locator("[data-testid=preview-counts]")
    await counts.wait_for()
    shown = {key: int((await counts.locator(f"[data-preview={key}]").inner_text()).replace(",", ""))
             for key in ("new", "changed", "unchanged", "to-remove")}
    assert shown == {"new": expected["new"], "changed": expected["changed"], "unchanged": expected["unchanged"],
                     "to-remove": expected["would_remove"]} == {"new": 3, "changed": 2, "unchanged": 13, "to-remove": 5}
    sample = await page.locator("section[aria-labelledby=preview-title] tbody tr").all_inner_texts()
    assert any("newcomer0@example.com" in row for row in sample) and sum("remove" in row for row in sample) == 5
    await screenshot(page, "preview")
    run_now = page.get_by_role("button", name="Run now")
    assert await run_now.is_disabled()
    await page.get_by_label("I have looked at this preview: remove 5 people from list Lst001").check()
    assert await run_now.is_enabled()
    preview_url = page.url
    await run_now.click()
    await page.wait_for_url(lambda url: url != preview_url)
    run_id = page.url.rsplit("/", 1)[1]
    await expect(page.locator("h1")).to_have_text(f"Run {run_id}")
    await expect(page.locator("[data-testid=run] .badge").first).to_have_text("succeeded", timeout=60_000)
    assert await page.locator("[data-testid=preview-counts]").count() == 0
    await page.goto(site.url("#/exports/vip"))
    await page.locator(".history table tbody tr").nth(2).wait_for()
    assert await page.locator(".chart rect").count() == 2 * 4  # two runs (not the preview): 3 series + duration
    await screenshot(page, "export-history", full_page=True)
    assert sorted(site.app.sim.simulator.account.member_emails(LIST_ID)) == sorted(
        [f"member{n}@example.com" for n in range(15)] + [f"newcomer{n}@example.com" for n in range(3)])


async def test_a_started_runs_progress_bar_moves_and_ends_at_the_reports_numbers(site: Site, monkeypatch) -> None:
    monkeypatch.setattr(progress_module, "HEARTBEAT_SECONDS", 0.1)  # the run reports progress often
    many = b"email,first_name,tier\n" + b"".join(b"person%d@example.com,P%d,gold\n" % (n, n) for n in range(25_000))
    await site.app.put(site.app.segments, "vip/people.csv", many)
    site.app.sim.simulator.account.hold_jobs()  # Klaviyo takes the jobs, and finishes none until released
    page = await site.page_as(ADMIN)
    await page.goto(site.url("#/exports/vip"))
    await page.get_by_role("button", name="Run now").click()
    await expect(page.locator("#bar-read")).to_have_attribute("value", "25000", timeout=60_000)
    imported = page.locator("#bar-imported")
    await expect(imported).to_have_attribute("max", "25000", timeout=60_000)  # every job accepted...
    assert await imported.get_attribute("value") == "0"  # ...and none imported while Klaviyo holds them
    await screenshot(page, "run-progress")
    site.app.sim.simulator.account.release_jobs()
    await page.locator("[data-testid=conservation]").wait_for()
    run_id = (await page.locator("h1").inner_text()).removeprefix("Run ")
    report = (await send("manage_run_status", "GET", ADMIN, name="vip", run_id=run_id)).body["report"]
    shown = {label: int((await page.locator(f"[data-count={label}]").inner_text()).replace(",", ""))
             for label in ("sent", "rejected", "duplicates", "unchanged")}
    assert shown == {label: report["counts"][label] for label in shown} and shown["sent"] == 25_000
    assert "25,000 rows read = " in await page.locator("[data-testid=conservation]").inner_text()
    await screenshot(page, "run-report")


async def test_markup_in_a_file_name_or_a_column_name_is_shown_as_text(site: Site) -> None:
    hostile = "<img src=x onerror=alert(1)>@x.com"
    document = config()
    document["connections"][0]["display_name"] = "<script>alert(2)</script>"
    document["exports"][0]["mapping"] = {"email": "email"}
    document["exports"][1]["mapping"] = {"email": "email", "properties.tier": "<b onmouseover=alert(3)>tier</b>"}
    await site.app.set_config(document)
    await site.app.put(site.app.segments, f"vip/{hostile}.csv", MEMBERS)  # a file name the dropper chose
    await site.app.put(site.app.segments, "lapsed/customers.csv", b"email\na@example.com\n")
    dropped = await send("manage_runs", "POST", ADMIN, name="vip")
    failing = await send("manage_runs", "POST", ADMIN, name="lapsed")
    assert hostile in (await finished(site, "vip", dropped.body["run_id"]))["report"]["source"]
    assert "<b onmouseover" in (await finished(site, "lapsed", failing.body["run_id"]))["report"]["error"]
    page = await site.page_as(ADMIN)
    await page.goto(site.url(f"#/exports/vip/runs/{dropped.body['run_id']}"))
    source = page.locator("[data-testid=source]")
    await source.wait_for()
    assert hostile in await source.inner_text()
    await page.goto(site.url(f"#/exports/lapsed/runs/{failing.body['run_id']}"))
    error = page.locator("[data-testid=run] .error")
    await error.wait_for()
    assert "<b onmouseover=alert(3)>tier</b>" in await error.inner_text()
    await page.goto(site.url("#/"))
    await page.locator("[data-testid=exports] tbody tr").first.wait_for()
    assert "<script>alert(2)</script>" in await page.locator("[data-testid=exports]").inner_text()
    await page.goto(site.url("#/exports/lapsed/edit"))
    await page.locator(".mapping-row .column").first.wait_for()
    assert await page.locator(".mapping-row .column").first.input_value() == "<b onmouseover=alert(3)>tier</b>"
    assert await page.locator("main img, main script, main b").count() == 0
    assert site.dialogs == []


async def test_a_form_error_appears_beside_its_field(site: Site) -> None:
    page = await site.page_as(ADMIN)
    await page.goto(site.url("#/new-export"))
    await page.get_by_label("Name", exact=True).fill("eu-news")
    await page.get_by_label("Klaviyo list id").fill("NoSuch")
    await page.get_by_label("Source in the segments container").fill("news/")
    await page.get_by_label("Email column").fill("email")
    await page.get_by_role("button", name="Save export").click()
    message = page.locator("#error-list_id")
    await message.wait_for()
    assert "no list 'NoSuch'" in await message.inner_text()
    assert await page.get_by_label("Klaviyo list id").get_attribute("aria-invalid") == "true"
    assert await page.evaluate("document.activeElement.id") == "field-list_id"
    await screenshot(page, "export-form", full_page=True)
    assert (await send("manage_export", "GET", ADMIN, name="eu-news")).status == 404


async def test_an_admin_sets_up_a_connection_in_the_products_order(site: Site) -> None:
    page = await site.page_as(ADMIN)
    await page.goto(site.url("#/connections/new"))
    await page.get_by_label("Name (letters, digits and '-')").fill("eu")
    await page.get_by_label("1. Display name").fill("Klaviyo EU")
    await page.get_by_label("3. Klaviyo private API key").fill(NEW_KEY)
    await page.get_by_role("button", name="Save connection").click()
    refusal = page.locator("#error-privacy_acknowledged")
    await refusal.wait_for()
    assert "compliance boundary" in await refusal.inner_text()
    await screenshot(page, "connection-form", full_page=True)
    await page.get_by_label("4. I agree").check()
    await page.get_by_role("button", name="Save connection").click()
    await page.locator("h1", has_text="Connections").wait_for()
    await page.locator("tbody th", has_text="eu").wait_for()
    assert NEW_KEY not in await page.content()
    await page.get_by_role("link", name="eu", exact=True).click()  # a change keeps the key and the agreement given
    await page.get_by_label("1. Display name").fill("Klaviyo Europe")
    assert await page.get_by_label("3. Klaviyo private API key").input_value() == ""
    await page.get_by_role("button", name="Save connection").click()
    await page.locator("tbody td", has_text="Klaviyo Europe").wait_for()
    stored = await send("manage_connection", "GET", ADMIN, name="eu")
    assert stored.body["key"] == "stored" and stored.body["privacy"]["acknowledged_by"] == ADMIN_ID


async def test_a_contributor_sees_no_connection_forms_and_no_override_controls(site: Site) -> None:
    await send("manage_connection", "PUT", ADMIN, connection_body(), name="eu")
    site.app.sim.simulator.account.add_list("EuList", "EU")
    assert (await send("manage_export", "PUT", ADMIN, export_body("EuList"), name="eu-vip")).status == 201
    page = await site.page_as(CONTRIBUTOR)
    await page.goto(site.url("#/exports/eu-vip"))
    await page.get_by_role("button", name="Preview").wait_for()
    assert await page.locator("#nav-connections").is_hidden()
    assert await page.locator("#allow-mass-removal").count() == 0
    assert await page.locator("[data-testid=exports]").count() == 0
    await page.goto(site.url("#/connections"))
    await page.locator("h1", has_text="Something went wrong").wait_for()
    assert "needs the Exporter.Admin role" in await page.locator("main").inner_text()
    admin = await site.page_as(ADMIN)
    await admin.goto(site.url("#/exports/eu-vip"))
    await admin.locator("#allow-mass-removal").wait_for()  # the same page shows it to an administrator


async def test_every_control_has_a_label_and_the_page_works_from_the_keyboard(site: Site) -> None:
    page = await site.page_as(ADMIN)
    await page.goto(site.url("#/new-export"))
    await page.get_by_label("Klaviyo list id").wait_for()
    unlabeled = await page.evaluate("""[...document.querySelectorAll('input, select, textarea, button')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
        .map(e => e.outerHTML)""")
    assert unlabeled == []
    page = await site.page_as(ADMIN)  # a fresh load, not a move within the page
    await page.goto(site.url("#/"))
    await page.locator("[data-testid=exports] tbody tr").first.wait_for()
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    link = page.get_by_role("link", name="vip", exact=True)
    await link.focus()
    await page.keyboard.press("Enter")
    await page.locator("h1", has_text="Export vip").wait_for()
    assert await page.evaluate("document.activeElement.tagName") == "H1"


async def test_a_preview_says_when_the_guard_would_stop_the_removals_and_why(site: Site) -> None:
    await mirror_vip(site)
    await site.app.put(site.app.segments, "vip/members.csv", b"email,first_name\nmember0@example.com,M0\n")
    page = await site.page_as(ADMIN)
    await page.goto(site.url("#/exports/vip"))
    await page.get_by_role("button", name="Preview").click()
    guard = page.locator("[data-testid=guard]")
    await guard.wait_for()
    assert "The guard would stop removals" in await guard.inner_text() and "19" in await guard.inner_text()
    assert await page.locator("#confirm-removal").count() == 0  # nothing would be removed: nothing to confirm
    assert await page.locator("[data-preview=to-remove]").inner_text() == "0"
