"""The admin page in a real browser: Debian's Chromium driven by Playwright.

The application runs on uvicorn (as `herald serve` runs it) over the test's real
PostgreSQL and RabbitMQ. Each page is screenshotted into the test's temporary folder
(desktop and 375 px wide); the overview also to docs/images/admin-overview.png when
HERALD_UPDATE_DOCS_IMAGES is set.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from herald.web.app import create_app
from tests.api_fixtures import OPERATOR_TOKEN, VIEWER_TOKEN, Api, api, seeded  # noqa: F401
from tests.services import free_port, require_service, wait_until

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DOCS_IMAGE = Path(__file__).resolve().parents[1] / "docs" / "images" / "admin-overview.png"
PHONE = {"width": 375, "height": 800}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_service("Playwright", "pip install playwright")
    if not Path(CHROMIUM).exists():
        require_service("Chromium", "apt-get install chromium")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def server(api: Api) -> Iterator[str]:
    """The application on uvicorn on a loopback port; its base URL."""
    port = free_port()
    config = uvicorn.Config(create_app(api.app), host="127.0.0.1", port=port,
                            log_level="warning", access_log=False)  # fmt: skip
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    assert wait_until(lambda: running.started, timeout=10), "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def shots(tmp_path: Path):
    folder = tmp_path / "screenshots"
    folder.mkdir()

    def shoot(page, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    shoot.folder = folder  # type: ignore[attr-defined]
    return shoot


def sign_in(browser, base: str, token: str, *, viewport=DESKTOP, timezone="Europe/Berlin"):
    context = browser.new_context(viewport=viewport, timezone_id=timezone)
    page = context.new_page()
    page.goto(base + "/")
    assert "/signin" in page.url
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    return page


def test_sign_in_then_the_overview(browser, server, seeded, shots) -> None:
    page = sign_in(browser, server, OPERATOR_TOKEN)
    assert page.inner_text("h1").startswith("Overview")
    tiles = {t.inner_text().split("\n")[-1]: t for t in page.query_selector_all(".tile")}
    assert set(tiles) == {"pending", "running", "complete", "failed", "canceled", "superseded"}
    assert page.inner_text(".tile-failed .tile-n") == "1"
    assert page.is_visible("#sync-now")
    assert OPERATOR_TOKEN not in page.content()
    cookie = next(c for c in page.context.cookies() if c["name"] == "herald_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert OPERATOR_TOKEN not in cookie["value"]
    overview = shots(page, "overview")
    if os.environ.get("HERALD_UPDATE_DOCS_IMAGES"):  # the picture in docs/operations.md
        shutil.copyfile(overview, DOCS_IMAGE)
    page.click("#sync-now")
    page.wait_for_selector(".flash")
    assert "Sync requested" in page.inner_text(".flash")


def test_a_wrong_token_is_refused_politely(browser, server) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(server + "/signin")
    page.fill("#token", "not-a-token-at-all-xyz")
    page.click("button[type=submit]")
    assert "not one of Herald's" in page.inner_text(".error")
    assert "/signin" in page.url


def test_filter_the_jobs_and_retry_a_failed_one(browser, server, api: Api, seeded, shots) -> None:
    page = sign_in(browser, server, OPERATOR_TOKEN)
    page.goto(server + "/jobs")
    shots(page, "jobs")
    page.click("details.filters summary")
    page.select_option("select[name=status]", "failed")
    page.click("#filter-form button[type=submit]")
    page.wait_for_url("**/jobs?*status=failed*")
    rows = page.query_selector_all("tr[data-status]")
    assert [r.get_attribute("data-status") for r in rows] == ["failed"]
    shots(page, "jobs-failed")
    failed = seeded["failed"][0]
    page.click(f"#job-{failed} .btn-retry")
    page.wait_for_selector(".flash")
    assert f"Job {failed} is pending again" in page.inner_text(".flash")
    assert "status=failed" in page.url  # back on the filtered list
    assert api.job(failed)["status"] == "pending"
    page.goto(server + "/jobs?status=pending&actor=send_email")
    assert page.get_attribute(f"#job-{failed}", "data-status") == "pending"


def test_cancel_a_pending_job(browser, server, api: Api, seeded) -> None:
    page = sign_in(browser, server, OPERATOR_TOKEN)
    pending = seeded["pending"][0]
    page.goto(server + "/jobs?status=pending")
    page.click(f"#job-{pending} .btn-cancel")
    page.wait_for_selector(".flash")
    assert f"Job {pending} is canceled" in page.inner_text(".flash")
    assert api.job(pending)["status"] == "canceled"


def test_retry_all_failed_asks_first(browser, server, api: Api, seeded, shots) -> None:
    api.sql("UPDATE herald.jobs SET status = 'failed' WHERE id = ANY(%s)", (seeded["enrich"],))
    page = sign_in(browser, server, OPERATOR_TOKEN)
    page.goto(server + "/jobs?actor=enrich")
    page.click("#retry-all")
    assert "Retry 2 failed jobs?" in page.inner_text("h1")
    shots(page, "retry-all-confirm")
    page.click("#confirm-retry")
    page.wait_for_selector(".flash")
    assert "Retried 2 failed job(s)" in page.inner_text(".flash")
    assert {api.job(i)["status"] for i in seeded["enrich"]} == {"pending"}
    assert api.job(seeded["failed"][0])["status"] == "failed"  # not an enrich job


def test_follow_a_job_to_its_change_trace(browser, server, seeded, shots) -> None:
    page = sign_in(browser, server, OPERATOR_TOKEN)
    failed = seeded["failed"][0]
    page.goto(server + f"/jobs/{failed}")
    assert page.inner_text("h1").startswith(f"Job #{failed}")
    assert "550 mailbox unavailable" in page.inner_text("pre.error-text")
    shots(page, "job")
    page.click("text=(trace)")
    page.wait_for_url("**/changes/*")
    assert page.inner_text("h1").startswith("Change #")
    cards = page.query_selector_all(".trace > li")
    assert len(cards) == 2  # the change, then its notification with jobs and deliveries
    assert "route classes" in cards[1].inner_text()
    assert page.is_visible(f"#job-{failed}")
    shots(page, "change-trace")


def test_a_viewer_sees_no_buttons(browser, server, seeded, shots) -> None:
    page = sign_in(browser, server, VIEWER_TOKEN)
    assert page.inner_text(".role") == "viewer"
    assert not page.query_selector("#sync-now")
    for path in ("/jobs", f"/jobs/{seeded['failed'][0]}", f"/jobs/{seeded['pending'][0]}"):
        page.goto(server + path)
        assert page.query_selector_all("button.btn-retry, button.btn-cancel, #retry-all") == []
    shots(page, "jobs-viewer")
    # And the server refuses a viewer's write even with a valid form.
    csrf = page.get_attribute("form[action='/signout'] input[name=csrf]", "value")
    response = page.request.post(server + f"/jobs/{seeded['failed'][0]}/retry",
                                 form={"csrf": csrf}, max_redirects=0)  # fmt: skip
    assert response.status == 403


def test_a_form_without_its_csrf_token_is_refused(browser, server, api: Api, seeded) -> None:
    page = sign_in(browser, server, OPERATOR_TOKEN)
    failed = seeded["failed"][0]
    for form in ({}, {"csrf": "forged"}):
        response = page.request.post(server + f"/jobs/{failed}/retry", form=form, max_redirects=0)
        assert response.status == 403
        assert "CSRF" in response.text()
    assert api.job(failed)["status"] == "failed"
    # A sign-in form posted from elsewhere (no matching cookie) is refused too.
    other = browser.new_context().request
    response = other.post(server + "/signin", form={"token": OPERATOR_TOKEN, "csrf": "x"},
                          max_redirects=0)  # fmt: skip
    assert response.status == 403


def test_times_are_local_with_utc_on_hover(browser, server, seeded) -> None:
    page = sign_in(browser, server, OPERATOR_TOKEN, timezone="Asia/Tokyo")
    page.goto(server + "/jobs")
    first = page.query_selector("td[data-label=Created] time")
    assert first.get_attribute("title").endswith(" UTC")
    shown, utc = first.inner_text(), first.get_attribute("title")
    assert shown != utc.removesuffix(" UTC")  # Tokyo is 9 hours ahead of UTC
    assert "UTC" not in shown


def test_the_page_refreshes_itself_and_keeps_the_filter(browser, server, api: Api, seeded) -> None:
    page = sign_in(browser, server, OPERATOR_TOKEN)
    page.goto(server + "/jobs?actor=send_email")
    running = seeded["running"][0]
    assert page.get_attribute(f"#job-{running}", "data-status") == "running"
    api.sql("UPDATE herald.jobs SET status = 'complete', finished_at = now() WHERE id = %s",
            (running,))  # fmt: skip
    page.wait_for_selector(f"#job-{running}[data-status=complete]", timeout=15_000)
    assert page.url.endswith("/jobs?actor=send_email")
    assert page.query_selector_all("tr[data-status]")  # still the filtered list
    assert {r.inner_text() for r in page.query_selector_all("td[data-label=Actor]")} == {
        "send_email"}  # fmt: skip


def test_usable_at_375_pixels_wide(browser, server, seeded, shots) -> None:
    page = sign_in(browser, server, OPERATOR_TOKEN, viewport=PHONE)
    for name, path in (("overview", "/"), ("jobs", "/jobs"),
                       ("job", f"/jobs/{seeded['failed'][0]}")):  # fmt: skip
        page.goto(server + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{path} is {width} px wide"
        shots(page, f"{name}-375")
    page.goto(server + "/jobs?status=failed")
    page.click(f"#job-{seeded['failed'][0]} .btn-retry")  # the buttons are reachable
    page.wait_for_selector(".flash")


def test_no_script_or_style_from_anywhere_else(browser, server, seeded) -> None:
    page = sign_in(browser, server, OPERATOR_TOKEN)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(server + "/jobs")
    page.wait_for_load_state("networkidle")
    assert requested and all(url.startswith(server) for url in requested), requested
    assert "default-src 'self'" in page.request.get(server + "/jobs").headers[
        "content-security-policy"]  # fmt: skip
    time.sleep(0)  # keep the import used where the suite runs without refresh waits


def test_without_a_script_the_empty_filter_fields_are_dropped(api: Api, seeded) -> None:
    client = api.client
    client.get("/signin")
    response = client.post("/signin", data={"token": VIEWER_TOKEN,
                                            "csrf": client.cookies["herald_signin"]},
                           follow_redirects=False)  # fmt: skip
    assert response.status_code == 303
    response = client.get("/jobs?status=failed&actor=&change_id=&created_after=",
                          follow_redirects=False)  # fmt: skip
    assert response.status_code == 303 and response.headers["location"] == "/jobs?status=failed"
    assert client.get(response.headers["location"]).status_code == 200
