"""The practice dashboard in headless Chromium, against the running bridge and real Synapse."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import aiohttp
import pytest

from bridge.app import App, default_features
from bridge.config import hash_token
from bridge.features.http import http_installer, install_http
from bridge.store import clocks, therapists
from bridge.web.auth import CSRF_COOKIE, SESSION_COOKIE
from bridge.web.server import HttpServer
from tests.features.test_pair_rooms import wait_until
from tests.support.bridge_app import bridge_config, notice_containing

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TOKEN = "dash-" + secrets.token_urlsafe(16)
THERAPIST_NAME = "Dr Ada Okafor"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)


def without_http() -> list:
    """The default features minus the configured HTTP server (tests bind a free port)."""
    return [f for f in default_features() if f is not install_http]


@pytest.fixture
async def dashboard(homeserver, make_user, make_nio_user, tmp_path: Path):
    bot = make_user("dashbot")
    cfg = bridge_config(
        homeserver,
        bot.user_id,
        bot.password,
        tmp_path / "data",
        http={"enabled": True, "admin_tokens": [hash_token(TOKEN)]},
        # Working time around the clock: the clock opens whenever the test runs.
        practice={"working_hours": {d: "00:00-24:00" for d in _DAYS}},
    )
    servers: list[HttpServer] = []
    app = App(
        cfg,
        features=[
            *(f for f in default_features() if f is not install_http),
            http_installer(port=0, on_ready=servers.append),
        ],
    )
    await app.start()
    try:
        patient = await make_nio_user("dashpatient")
        therapist = await make_nio_user("dashtherapist")
        # The dashboard shows therapists by display name, looked up once from the homeserver.
        await therapist.client.set_displayname(THERAPIST_NAME)
        record, _ = await app.parts.pairs.add_pair(
            patient.user_id, therapist.user_id, app.service.clock()
        )
        await patient.wait_for(record.room_id, notice_containing("Welcome"), timeout=30)
        await patient.send_text(record.room_id, "a message nobody should see on the dashboard")

        async def clock_open():
            return await clocks.get_open(app.parts.db, record.pair_id)

        await wait_until(clock_open, timeout=30, what="SLA clock opened by the patient")
        yield app, servers[0], record, therapist
    finally:
        await app.stop()


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _browse(base_url: str, shot: Path, profile: Path) -> dict[str, object]:
    """Log in with a real browser, read the open-clocks table and take a screenshot."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        wait = WebDriverWait(driver, 20)
        driver.get(f"{base_url}/dashboard")
        # Not logged in: the dashboard sends the browser to the login form.
        wait.until(ec.presence_of_element_located((By.ID, "login-form")))
        redirected_to = driver.current_url
        driver.find_element(By.ID, "token").send_keys("not-the-token")
        driver.find_element(By.ID, "login-button").click()
        error = wait.until(ec.presence_of_element_located((By.ID, "login-error"))).text
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.ID, "login-button").click()
        table = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#open-clocks table")))
        rows = [row.text for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
        page = driver.find_element(By.TAG_NAME, "body").text
        cookies = {c["name"]: c for c in driver.get_cookies()}
        driver.save_screenshot(str(shot))
        return {
            "redirected_to": redirected_to,
            "error": error,
            "rows": rows,
            "page": page,
            "cookies": cookies,
        }
    finally:
        driver.quit()


@pytest.mark.skipif(
    not CHROMIUM.exists() or not CHROMEDRIVER.exists(),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
async def test_dashboard_in_headless_chromium(dashboard, tmp_path: Path):
    pytest.importorskip("selenium", reason="needs selenium (the dev extras)")
    _app, server, record, _therapist = dashboard
    shot = tmp_path / "dashboard.png"
    seen = await asyncio.to_thread(_browse, server.base_url, shot, tmp_path / "chromium-profile")
    assert str(seen["redirected_to"]).endswith("/dashboard/login")
    assert "not valid" in str(seen["error"])
    rows = seen["rows"]
    assert isinstance(rows, list) and any(record.label in row for row in rows), rows
    page = str(seen["page"])
    assert THERAPIST_NAME in page and "Health" in page
    # The queue says how long is left or how late, and what comes next.
    assert any(record.label in row and ("reminder" in row or "heads-up" in row) for row in rows), (
        rows
    )
    assert "nobody should see" not in page  # never message content
    cookies = seen["cookies"]
    assert isinstance(cookies, dict)
    session = cookies[SESSION_COOKIE]
    assert session["httpOnly"] is True and session["sameSite"] == "Strict"
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


async def test_dashboard_posts_need_the_csrf_token(dashboard):
    _app, server, _record, _therapist = dashboard
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(server.base_url, cookie_jar=jar) as http:
        async with http.get("/dashboard/login") as resp:
            assert resp.status == 200
        csrf = next(c.value for c in jar if c.key == CSRF_COOKIE)
        # The right token but no CSRF field: refused, and no session is made.
        async with http.post(
            "/dashboard/login", data={"token": TOKEN}, allow_redirects=False
        ) as resp:
            assert resp.status == 403
        assert not any(c.key == SESSION_COOKIE for c in jar)
        # A cross-site form post carries the cookie but a foreign Origin.
        async with http.post(
            "/dashboard/login",
            data={"token": TOKEN, "csrf_token": csrf},
            headers={"Origin": "https://evil.example"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 403
        async with http.post(
            "/dashboard/login", data={"token": TOKEN, "csrf_token": csrf}, allow_redirects=False
        ) as resp:
            assert resp.status == 303
            set_cookie = resp.headers.getall("Set-Cookie")
        session_header = next(h for h in set_cookie if h.startswith(SESSION_COOKIE))
        assert "HttpOnly" in session_header and "SameSite=Strict" in session_header
        async with http.get("/dashboard", allow_redirects=False) as resp:
            assert resp.status == 200
        # After login the CSRF token changed: the old one cannot log the session out.
        async with http.post(
            "/dashboard/logout", data={"csrf_token": csrf}, allow_redirects=False
        ) as resp:
            assert resp.status == 403
        fresh = next(c.value for c in jar if c.key == CSRF_COOKIE)
        async with http.post(
            "/dashboard/logout", data={"csrf_token": fresh}, allow_redirects=False
        ) as resp:
            assert resp.status == 303
        async with http.get("/dashboard", allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/dashboard/login"


needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() or not CHROMEDRIVER.exists(),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


def _driver(profile: Path):  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))


def _no_horizontal_scroll(driver) -> bool:  # type: ignore[no-untyped-def]
    return bool(
        driver.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"
            " && document.body.scrollWidth <= window.innerWidth"
        )
    )


def _as_therapist(link: str, shot: Path, profile: Path) -> dict[str, object]:
    """Open the desk-room link, read the queue, sign out everywhere, try the link again."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _driver(profile)
    try:
        wait = WebDriverWait(driver, 20)
        driver.get(link)
        wait.until(ec.element_to_be_clickable((By.ID, "link-button"))).click()
        table = wait.until(ec.presence_of_element_located((By.ID, "queue")))
        rows = [row.text for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
        page = driver.find_element(By.TAG_NAME, "body").text
        # Phone width: the queue's table stacks; nothing scrolls sideways.
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True},
        )
        narrow = {}
        for path in ("/dashboard", "/dashboard/pairs", "/dashboard/trends"):
            driver.get(link.split("/dashboard/")[0] + path)
            wait.until(ec.presence_of_element_located((By.ID, "content")))
            narrow[path] = _no_horizontal_scroll(driver)
        driver.get(link.split("/dashboard/")[0] + "/dashboard")
        wait.until(ec.presence_of_element_located((By.ID, "queue")))
        driver.save_screenshot(str(shot))
        driver.find_element(By.ID, "logout-everywhere").click()
        wait.until(ec.presence_of_element_located((By.ID, "login-form")))
        driver.get(link)
        wait.until(ec.element_to_be_clickable((By.ID, "link-button"))).click()
        error = wait.until(ec.presence_of_element_located((By.ID, "link-error"))).text
        return {"rows": rows, "page": page, "narrow": narrow, "error": error}
    finally:
        driver.quit()


@needs_chromium
async def test_a_therapist_signs_in_from_the_desk_room(dashboard, tmp_path: Path):
    pytest.importorskip("selenium", reason="needs selenium (the dev extras)")
    app, server, record, therapist = dashboard
    desk = app.service.desk_of(therapist.user_id)
    assert desk is not None
    await therapist.wait_room(desk, timeout=20)
    await therapist.send_text(desk, "!dashboard")
    notice = await therapist.wait_for(desk, notice_containing("/dashboard/link/"), timeout=30)
    token = notice.body.split("/dashboard/link/", 1)[1].split()[0]
    # The link names the configured address; the test's server listens on a free port.
    link = f"{server.base_url}/dashboard/link/{token}"
    shot = tmp_path / "phone.png"
    seen = await asyncio.to_thread(_as_therapist, link, shot, tmp_path / "chromium-therapist")
    rows = seen["rows"]
    assert isinstance(rows, list) and any(record.label in row for row in rows), rows
    assert "Health" not in str(seen["page"])  # the practice's health is the admin's
    assert seen["narrow"] == {
        "/dashboard": True,
        "/dashboard/pairs": True,
        "/dashboard/trends": True,
    }
    assert "used already or has expired" in str(seen["error"])
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    async with app.parts.db.transaction() as tx:
        actions = [
            r["action"]
            for r in await tx.fetch(
                "SELECT action FROM audit_entries WHERE action LIKE 'dashboard.%' ORDER BY seq"
            )
        ]
    assert actions == [
        "dashboard.link_issued",
        "dashboard.signed_in",
        "dashboard.signed_out_everywhere",
        "dashboard.link_refused",
    ]


AXE = Path(__file__).with_name("a11y") / "node_modules" / "axe-core" / "axe.min.js"


def _axe_serious(driver) -> list[str]:  # type: ignore[no-untyped-def]
    """The serious and critical axe-core violations of the page shown."""
    # `make deps` installs axe-core; without it the check would pass without checking.
    assert AXE.exists(), f"{AXE} is missing: run `npm ci` in tests/web/a11y (make deps does)"
    # WebDriver's scripts run outside the page's Content-Security-Policy.
    driver.execute_script(AXE.read_text())
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations));"
    )
    return [f"{v['id']}: {v['help']}" for v in result if v.get("impact") in ("serious", "critical")]


def _admin_acts(base_url: str, profile: Path) -> dict[str, object]:
    """Sign in with the token, read a chart, mark the therapist away through the form."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _driver(profile)
    try:
        wait = WebDriverWait(driver, 20)
        driver.get(f"{base_url}/dashboard/login")
        wait.until(ec.presence_of_element_located((By.ID, "token"))).send_keys(TOKEN)
        driver.find_element(By.ID, "login-button").click()
        wait.until(ec.presence_of_element_located((By.ID, "queue")))
        violations = {}
        for path in ("/dashboard", "/dashboard/pairs", "/dashboard/invitations"):
            driver.get(f"{base_url}{path}")
            wait.until(ec.presence_of_element_located((By.ID, "content")))
            violations[path] = _axe_serious(driver)
        driver.get(f"{base_url}/dashboard/trends")
        svg = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#chart-met svg")))
        chart = svg.get_attribute("outerHTML")
        violations["/dashboard/trends"] = _axe_serious(driver)
        driver.get(f"{base_url}/dashboard")
        # The form's own field (a date picker) is filled the way a script would.
        driver.execute_script("document.getElementById('away-until').value = '2035-01-08T09:00'")
        driver.find_element(By.ID, "away-submit").click()
        wait.until(ec.url_contains("done=away"))
        return {"chart": chart, "url": driver.current_url, "violations": violations}
    finally:
        driver.quit()


@needs_chromium
async def test_the_admin_marks_a_therapist_away_from_the_dashboard(dashboard, tmp_path: Path):
    pytest.importorskip("selenium", reason="needs selenium (the dev extras)")
    app, server, _record, therapist = dashboard
    seen = await asyncio.to_thread(_admin_acts, server.base_url, tmp_path / "chromium-admin")
    assert 'data-name="met"' in str(seen["chart"])
    # axe-core in the page (tests/web/a11y, `npm ci` there): no serious violation.
    assert seen["violations"] == {
        "/dashboard": [],
        "/dashboard/pairs": [],
        "/dashboard/invitations": [],
        "/dashboard/trends": [],
    }

    async def away_stored():
        row = await therapists.get(app.parts.db, therapist.user_id)
        return row if row is not None and row.away_until else None

    await wait_until(away_stored, timeout=20, what="the absence stored by the SLA feature")
    async with app.parts.db.transaction() as tx:
        rows = await tx.fetch(
            "SELECT actor, details FROM audit_entries WHERE action = 'therapist.away'"
        )
    assert [r["actor"] for r in rows] == ["dashboard:admin"]
    assert therapist.user_id in rows[0]["details"]


def _admin_hands_over(base_url: str, label: str, colleague: str, profile: Path) -> dict[str, str]:
    """Reassign the pair to a colleague through its page, then close it (typing its label)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = _driver(profile)
    try:
        wait = WebDriverWait(driver, 30)
        driver.get(f"{base_url}/dashboard/login")
        wait.until(ec.presence_of_element_located((By.ID, "token"))).send_keys(TOKEN)
        driver.find_element(By.ID, "login-button").click()
        wait.until(ec.presence_of_element_located((By.ID, "queue")))
        driver.get(f"{base_url}/dashboard/pairs?q={label}")
        wait.until(ec.element_to_be_clickable((By.LINK_TEXT, label))).click()
        Select(
            wait.until(ec.presence_of_element_located((By.ID, "reassign-therapist")))
        ).select_by_value(colleague)
        driver.find_element(By.ID, "reassign-submit").click()
        # The same element id is on the page before the submit: wait for the new page first.
        wait.until(ec.url_contains("done=reassigned"))
        reassigned = wait.until(ec.presence_of_element_located((By.ID, "pair-therapist"))).text
        driver.find_element(By.ID, "close-confirm").send_keys(label)
        driver.find_element(By.ID, "close-submit").click()
        wait.until(ec.url_contains("done=closed"))
        status = driver.find_element(By.ID, "pair-status").text
        return {"reassigned": reassigned, "status": status}
    finally:
        driver.quit()


@needs_chromium
async def test_the_admin_reassigns_and_closes_a_pair(dashboard, make_nio_user, tmp_path: Path):
    pytest.importorskip("selenium", reason="needs selenium (the dev extras)")
    app, server, record, _therapist = dashboard
    colleague = await make_nio_user("dashcolleague")
    await app.parts.pairs.ensure_therapist(colleague.user_id, app.service.clock())
    seen = await asyncio.to_thread(
        _admin_hands_over, server.base_url, record.label, colleague.user_id, tmp_path / "chr"
    )
    # No display name set: Synapse's default is the localpart.
    assert seen["reassigned"] in (colleague.user_id, colleague.user_id[1:].split(":")[0])
    assert seen["status"].startswith("removed")
    async with app.parts.db.transaction() as tx:
        rows = await tx.fetch(
            "SELECT action, actor FROM audit_entries WHERE pair_id = ? "
            "AND action IN ('pair.reassigned', 'pair.removed') ORDER BY seq",
            record.pair_id,
        )
    assert [(r["action"], r["actor"]) for r in rows] == [
        ("pair.reassigned", "dashboard:admin"),
        ("pair.removed", "dashboard:admin"),
    ]


def _watch_queue(base_url: str, reply, profile: Path) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Sign in, scroll, let the therapist reply, and see the queue empty without a reload."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _driver(profile)
    try:
        wait = WebDriverWait(driver, 30)
        driver.get(f"{base_url}/dashboard/login")
        wait.until(ec.presence_of_element_located((By.ID, "token"))).send_keys(TOKEN)
        driver.find_element(By.ID, "login-button").click()
        wait.until(ec.presence_of_element_located((By.ID, "queue")))
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 390, "height": 500, "deviceScaleFactor": 1, "mobile": True},
        )
        driver.find_element(By.ID, "filter-label").send_keys("typed")
        driver.execute_script("window.scrollTo(0, 200); window.__samePage = true;")
        scrolled = driver.execute_script("return window.scrollY")
        reply()
        emptied = False
        for _ in range(30):
            # What the page's own timer does every REFRESH_SECONDS, asked for at once.
            driver.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "window.confidantLive().then(done, () => done(false));"
            )
            if driver.find_elements(By.CSS_SELECTOR, "#queue-live #queue") == []:
                emptied = True
                break
            time.sleep(1)
        return {
            "emptied": emptied,
            "same_page": driver.execute_script("return window.__samePage === true"),
            "scroll": (scrolled, driver.execute_script("return window.scrollY")),
            "typed": driver.find_element(By.ID, "filter-label").get_attribute("value"),
        }
    finally:
        driver.quit()


@needs_chromium
async def test_the_queue_keeps_itself_current_without_losing_the_place(dashboard, tmp_path: Path):
    pytest.importorskip("selenium", reason="needs selenium (the dev extras)")
    _app, server, record, therapist = dashboard
    loop = asyncio.get_running_loop()

    def reply() -> None:
        sent = asyncio.run_coroutine_threadsafe(
            therapist.send_text(record.room_id, "a reply nobody should see"), loop
        )
        sent.result(timeout=30)

    seen = await asyncio.to_thread(_watch_queue, server.base_url, reply, tmp_path / "chr")
    assert seen["emptied"] and seen["same_page"]
    scrolled, after = seen["scroll"]  # type: ignore[misc]
    assert scrolled > 0 and after == scrolled
    assert seen["typed"] == "typed"
