"""The web console in a real browser (Debian's Chromium driven by Playwright) against a
real collector fed by a real uWSGI over the crypto logger.

One collector (with an API token, alarms to a webhook) and one uWSGI serve the whole
module; each test opens its own browser context. Screenshots of each page are saved
under the directory the first test prints (CONSOLE_SCREENSHOTS overrides it).
"""

from __future__ import annotations

import calendar
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.support.collector_proc import CollectorProcess
from tests.support.net import wait_for
from tests.support.uwsgi_proc import UwsgiProcess
from tests.support.webhook import WebhookServer

pytestmark = [pytest.mark.e2e, pytest.mark.uwsgi]

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "console-test-token"
SECRET = "a-secret-that-is-thirty-two-byte"
XSS_LINES = ("<script>window.__xss = 'script'</script>",
             "<img src=x onerror=\"window.__xss = 'img'\">")
CONFIG = """
[listener:dynos]
udp = 127.0.0.1:{{port:dynos}}
format = crypto
algo = aes-256-cbc
secret = $(LOG_SECRET)

[app:shop]
alarm = hook webhook:{hook}/hook
log-alarm = hook ^payment gateway down
alarm-backoff = 0.1
alarm-retries = 2
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's scratch directory."""
    return tmp_path_factory.mktemp("console")


@pytest.fixture(scope="module")
def shots(workdir: Path) -> Path:
    """Where screenshots go (printed, to find them after a run)."""
    where = Path(os.environ.get("CONSOLE_SCREENSHOTS", workdir / "screenshots"))
    where.mkdir(parents=True, exist_ok=True)
    print(f"console screenshots: {where}")
    return where


@pytest.fixture(scope="module")
def hook() -> Iterator[WebhookServer]:
    """An alarm receiver that fails (500) until a test mends it."""
    server = WebhookServer(status=500).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def collector(workdir: Path, hook: WebhookServer) -> Iterator[CollectorProcess]:
    """The collector under test, with a token and alarms for app shop."""
    (workdir / "collector").mkdir()
    made = CollectorProcess(workdir / "collector", config=CONFIG.format(hook=hook.url),
                            env={"LOG_SECRET": SECRET}, token=TOKEN)
    made.start()
    yield made
    made.close()


@pytest.fixture(scope="module")
def uwsgi(workdir: Path, collector: CollectorProcess) -> Iterator[UwsgiProcess]:
    """A uWSGI logging to the collector as shop/web.1, after a few requests."""
    (workdir / "uwsgi").mkdir()
    made = UwsgiProcess(workdir / "uwsgi", processes=1, lines=[
        f"logger = crypto:addr=127.0.0.1:{collector.port('dynos')},algo=aes-256-cbc,"
        f"secret={SECRET},prefix=shop/web.1"])
    made.start()
    for path in ("/hello", "/status/404", "/status/503", "/status/503", "/say/warming-up"):
        made.get(path)
    wait_for(lambda: stored(collector, "status=503"), 10, "the first requests stored")
    yield made
    made.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium from the system (Playwright's own download is not used)."""
    if not CHROMIUM.exists():
        raise AssertionError("no /usr/bin/chromium: run scripts/bootstrap-system.sh")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


class Console:
    """A page of the console, with what its console and errors said."""

    def __init__(self, page: Page, base: str) -> None:
        self.page = page
        self.base = base
        self.messages: list[str] = []
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _console(self, message: ConsoleMessage) -> None:
        self.messages.append(f"{message.type}: {message.text}")
        if message.type == "error":
            self.errors.append(message.text)

    def open(self, query: str = "", page: str = "logs") -> None:
        """Go to a page of the console and wait for its first answer."""
        self.page.goto(f"{self.base}/{'?' + query if query else ''}#{page}")
        if page == "logs":
            self.page.wait_for_selector("body[data-loaded]")

    def rows(self) -> list[dict[str, str]]:
        """The Logs table's rows as {column: text}."""
        found: list[dict[str, str]] = self.page.evaluate("""() =>
            [...document.querySelectorAll('#lines-body > .chunk > .row[data-id]')].map(tr => {
              const c = [...tr.children].map(td => td.textContent);
              return {id: tr.dataset.id, time: c[0], source: c[1], method: c[2],
                      path: c[3], status: c[4], msecs: c[5], line: c[6]};
            })""")
        return found

    def until(self, script: str, what: str, arg: Any = None, timeout: float = 10.0) -> None:
        """Poll a JS function of `arg` until it returns true (wait_for_function evaluates
        strings, which the console's CSP forbids, rightly)."""
        wait_for(lambda: self.page.evaluate(script, arg), timeout, what)

    def shot(self, where: Path, name: str) -> None:
        """A full-page screenshot."""
        self.page.screenshot(path=str(where / f"{name}.png"), full_page=True)


@pytest.fixture
def console(browser: Browser, collector: CollectorProcess) -> Iterator[Console]:
    """A fresh browser context signed in (the token in session storage, as the login
    form leaves it), on a laptop-sized window."""
    context = browser.new_context(viewport={"width": 1366, "height": 800})
    context.add_init_script(
        f"sessionStorage.setItem('logship-api-token', {json.dumps(TOKEN)})")
    yield Console(context.new_page(), collector.url)
    context.close()


def stored(collector: CollectorProcess, query: str) -> list[dict[str, Any]]:
    """Records of app shop matching the query string."""
    records: list[dict[str, Any]] = collector.get(
        f"/v1/logs?app=shop&limit=10000&{query}")["records"]
    return records


def say(uwsgi: UwsgiProcess, text: str) -> None:
    """Have the app print `text` to its log (shipped as one line)."""
    assert uwsgi.get("/say/" + quote(text, safe="")) == 200


def test_token_prompt_then_logs(browser: Browser, collector: CollectorProcess,
                                uwsgi: UwsgiProcess, shots: Path) -> None:
    """With api-token set, a new tab asks for the token (a wrong one is refused), then
    shows the lines; the token is in no URL the page requested. (This tab prefers the
    dark theme: its screenshot shows that one.)"""
    context = browser.new_context(color_scheme="dark", viewport={"width": 1366,
                                                                  "height": 800})
    page = context.new_page()
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    try:
        page.goto(collector.url + "/")
        page.wait_for_selector("#login:not([hidden])")
        page.screenshot(path=str(shots / "login.png"))
        page.fill("#login-token", "wrong")
        page.click("#login button")
        page.wait_for_selector("#login-error:has-text('refused')")
        page.fill("#login-token", TOKEN)
        page.click("#login button")
        page.wait_for_selector("#lines-body .row[data-id]")
        assert page.is_hidden("#login")
        assert not any(TOKEN in url for url in urls)
        assert page.evaluate("sessionStorage.getItem('logship-api-token')") == TOKEN
        page.wait_for_selector("#volume-legend span")
        page.screenshot(path=str(shots / "logs-dark.png"))
    finally:
        context.close()


def test_no_login_without_a_token(browser: Browser, tmp_path: Path) -> None:
    """A collector without api-token (loopback only) shows its pages with no prompt."""
    plain = CollectorProcess(tmp_path, config="[listener:plain]\nudp = 127.0.0.1:"
                             "{port:plain}\nformat = socket\napp = solo\n")
    plain.start()
    context = browser.new_context()
    try:
        page = Console(context.new_page(), plain.url)
        page.open()
        assert page.page.is_hidden("#login")
        assert page.page.text_content("#lines-foot") == "0 lines"
        assert page.errors == []
    finally:
        context.close()
        plain.close()


def test_logs_show_requests_with_fields_and_filters_match_url(
        console: Console, collector: CollectorProcess, uwsgi: UwsgiProcess,
        shots: Path) -> None:
    """The Logs page lists the shipped lines with method, path, status and msecs in
    columns; a filter in the URL fills the form and narrows the rows, and a filter typed
    in the form lands in the URL."""
    console.open()
    rows = console.rows()
    requests = [r for r in rows if r["status"]]
    by_path = {r["path"]: r for r in requests}
    assert by_path["/hello"]["method"] == "GET"
    assert by_path["/hello"]["status"] == "200"
    assert by_path["/status/404"]["status"] == "404"
    assert float(by_path["/hello"]["msecs"]) >= 0
    assert {r["source"] for r in rows} == {"shop[web.1]"}
    assert any(r["line"] == "warming-up" for r in rows)
    # Newest at the bottom, as stored.
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), key=int)
    console.shot(shots, "logs")

    console.open(urlencode({"app": "shop", "status": "503", "since": "1h"}))
    form = console.page.locator("#filters")
    assert form.locator("[name=status]").input_value() == "503"
    assert form.locator("[name=app]").input_value() == "shop"
    rows = console.rows()
    assert len(rows) == len(stored(collector, "status=503")) >= 2
    assert {r["status"] for r in rows} == {"503"}

    form.locator("[name=status]").fill("")
    form.locator("[name=regex]").fill("^warming")
    form.locator("button[type=submit]").click()
    wait_for(lambda: [r["line"] for r in console.rows()] == ["warming-up"], 10,
             "the regex filter applied")
    query = parse_qs(urlsplit(console.page.url).query)
    assert query == {"app": ["shop"], "regex": ["^warming"], "since": ["1h"], "n": ["1000"]}
    assert console.errors == []


def test_chart_counts_match_the_volume_api(console: Console, collector: CollectorProcess,
                                           uwsgi: UwsgiProcess) -> None:
    """The chart draws, for the range in view, the counts /v1/stats/volume gives for it,
    stacked by status class; they add up to the lines listed."""
    now = time.time()
    window = {"since": f"{now - 600:.0f}", "until": f"{now + 60:.0f}"}
    console.open(urlencode({"app": "shop", **window}))
    drawn = json.loads(console.page.get_attribute("#volume", "data-series") or "{}")
    expected = collector.get("/v1/stats/volume?" + urlencode({"app": "shop", **window}))
    assert drawn == expected["series"]
    assert sum(drawn["5xx"]) >= 2
    assert sum(map(sum, drawn.values())) == len(stored(collector, urlencode(window)))
    assert sum(drawn["5xx"]) == len(stored(collector, "status=503&" + urlencode(window)))
    legend = console.page.text_content("#volume-legend") or ""
    assert f"5xx {sum(drawn['5xx'])}" in legend


def test_drag_on_the_chart_zooms_the_range(console: Console, uwsgi: UwsgiProcess) -> None:
    """Dragging across the chart sets since and until (absolute) to the span dragged."""
    now = time.time()
    console.open(urlencode({"since": f"{now - 3600:.0f}", "until": f"{now:.0f}"}))
    box = console.page.locator("#volume").bounding_box()
    assert box is not None
    mouse = console.page.mouse
    mouse.move(box["x"] + box["width"] * 0.5, box["y"] + 40)
    mouse.down()
    mouse.move(box["x"] + box["width"] * 0.75, box["y"] + 40, steps=5)
    mouse.up()
    console.until("() => location.search.includes('until=20')", "the zoomed range")
    query = parse_qs(urlsplit(console.page.url).query)
    since, until = (calendar.timegm(time.strptime(query[name][0][:19], "%Y-%m-%dT%H:%M:%S"))
                    for name in ("since", "until"))
    # The canvas has a 40-pixel axis on the left: the span is near the middle of the hour.
    assert now - 2400 < since < now - 1200
    assert 600 < until - since < 1200


def test_click_shows_neighbours_from_the_same_source(console: Console,
                                                     uwsgi: UwsgiProcess) -> None:
    """Clicking a line opens the lines just before and after it from its source, the
    clicked one marked."""
    for n in range(5):
        say(uwsgi, f"neighbour-{n}")
    console.open(urlencode({"regex": "neighbour-2"}))
    console.page.click("#lines-body > .chunk > .row[data-id]")
    console.page.wait_for_selector(".neighbours .row.picked")
    # The app's lines, between uWSGI's request lines for them.
    around = [text for text in console.page.locator(".neighbours .text")
              .all_text_contents() if text.startswith("neighbour-")]
    position = around.index("neighbour-2")
    assert around[position - 2:position + 3] == [f"neighbour-{n}" for n in range(5)]
    assert console.page.text_content(".neighbours .row.picked .text") == "neighbour-2"


def test_xss_and_ansi_lines_show_as_text_and_run_nothing(
        console: Console, uwsgi: UwsgiProcess, collector: CollectorProcess,
        shots: Path) -> None:
    """Lines holding <script> and <img onerror> appear verbatim and set no page flag;
    ANSI colour escapes are dropped; the browser logs no error (a CSP violation would
    be one)."""
    for line in XSS_LINES:
        say(uwsgi, line)
    say(uwsgi, "\x1b[31mred alert\x1b[0m")
    pattern = urlencode({"regex": "xss|red alert"})
    wait_for(lambda: len([r for r in stored(collector, pattern) if "status" not in r]) == 3,
             10, "the hostile lines stored")
    console.open(pattern)
    # The app's own lines (uWSGI's request lines for them hold the escaped paths).
    lines = [r["line"] for r in console.rows() if not r["status"]]
    assert lines == [*XSS_LINES, "red alert"]
    assert console.page.evaluate("window.__xss") is None
    assert console.page.locator("#lines img, #lines script").count() == 0
    for page in ("sources", "alarms", "logs"):
        console.open(urlencode({"regex": "xss"}), page)
        console.page.wait_for_timeout(300)
    assert console.page.evaluate("window.__xss") is None
    assert console.errors == [], console.messages
    response = console.page.request.get(collector.url + "/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    console.shot(shots, "logs-xss")


def test_live_follows_new_lines_and_resumes_after_restart(
        console: Console, collector: CollectorProcess, uwsgi: UwsgiProcess,
        shots: Path) -> None:
    """With Live on, a line shipped after the page opened shows within 2 s; after the
    collector restarts the stream resumes by itself and the next line shows too, with
    no line shown twice."""
    console.open(urlencode({"since": "10m"}))
    console.page.check("#live")
    console.page.wait_for_selector("#live-state:has-text('live')")
    shown_at = live_line(console, uwsgi, "live-before-restart")
    assert shown_at < 2.0

    collector.stop()
    collector.start()
    console.until("() => document.querySelector('#live-state').textContent"
                  ".startsWith('● live')", "Live to reconnect", timeout=15)
    shown_at = live_line(console, uwsgi, "live-after-restart")
    assert shown_at < 2.0
    ids = [r["id"] for r in console.rows()]
    assert len(ids) == len(set(ids))
    assert [r["line"] for r in console.rows()].count("live-before-restart") == 1
    console.shot(shots, "logs-live")


def test_live_pauses_while_scrolled_up(console: Console, uwsgi: UwsgiProcess) -> None:
    """Scrolling up pauses Live (a new line is held back, the view stays put); scrolling
    back to the bottom shows what arrived meanwhile."""
    for n in range(60):
        say(uwsgi, f"filler {n}")
    console.open(urlencode({"since": "10m"}))
    console.page.check("#live")
    console.until("() => document.querySelector('#live-state').textContent"
                  ".startsWith('● live')", "Live to connect")
    console.page.hover("#lines-box")
    console.page.mouse.wheel(0, -3000)
    console.until("() => document.querySelector('#live-state').textContent"
                  ".includes('paused')", "Live to pause")
    say(uwsgi, "held while paused")
    console.until("() => window.__console.queue.some(r => r.line === 'held while paused')",
                  "the line received")
    assert "held while paused" not in [r["line"] for r in console.rows()]
    console.page.mouse.wheel(0, 100_000)
    live_text = "text => [...document.querySelectorAll('#lines-body .text')]" \
        ".some(td => td.textContent === text)"
    console.until(live_text, "the held line shown", "held while paused")
    assert console.errors == []


def live_line(console: Console, uwsgi: UwsgiProcess, text: str) -> float:
    """Ship `text` and return the seconds until the Live view shows it."""
    started = time.monotonic()
    say(uwsgi, text)
    console.until("text => [...document.querySelectorAll('#lines-body .text')]"
                  ".some(td => td.textContent === text)", f"{text!r} shown", text)
    return time.monotonic() - started


def test_alarms_list_message_and_retry(console: Console, collector: CollectorProcess,
                                       uwsgi: UwsgiProcess, hook: WebhookServer,
                                       shots: Path) -> None:
    """A fired alarm whose receiver fails is listed dead with its last error; a click
    shows its message; once the receiver is mended, Retry requeues it and it ends
    delivered."""
    say(uwsgi, "payment gateway down")
    (dead,) = wait_for(lambda: [a for a in collector.get("/v1/alarms?state=dead")["alarms"]
                                if a["message"] == "payment gateway down"],
                       20, "the alarm to die")
    console.open(page="alarms")
    row = console.page.locator(f"#alarms tr[data-id='{dead['id']}']")
    row.wait_for()
    cells = row.locator("td").all_text_contents()
    assert cells[1:7] == ["hook", "log", "shop", "web.1", "dead", "2"]
    assert "500" in cells[7]
    row.click()
    assert "payment gateway down" in (console.page.text_content("#alarm-message") or "")
    console.shot(shots, "alarms")
    hook.status = 200
    row.locator("button.retry").click()
    wait_for(lambda: collector.get("/v1/alarms?state=delivered")["alarms"], 20,
             "the retried alarm delivered")
    console.page.reload()
    console.page.wait_for_selector(
        f"#alarms tr[data-id='{dead['id']}'] td.state-delivered, "
        f"#alarms tr[data-id='{dead['id']}'] td.state-pending")
    assert console.errors == []


def test_sources_and_status_pages(console: Console, collector: CollectorProcess,
                                  uwsgi: UwsgiProcess, shots: Path) -> None:
    """Sources lists shop/web.1 with its count and a sparkline; Status shows the
    listener's counters and the store."""
    console.open(page="sources")
    row = console.page.locator("#sources tbody tr", has_text="web.1")
    row.wait_for()
    expected = collector.get("/v1/sources")["sources"]
    (web,) = [s for s in expected if s["source"] == "web.1"]
    assert row.locator("td").nth(3).text_content() == str(web["lines"])
    assert row.locator("svg.spark polyline").count() == 1
    console.shot(shots, "sources")
    console.open(page="status")
    listener = console.page.locator("#status-listeners tbody tr", has_text="dynos")
    listener.wait_for()
    accepted = int(listener.locator("td").nth(2).text_content() or "0")
    assert accepted > 0
    console.page.locator("#status-store dt", has_text="partitions").wait_for()
    console.shot(shots, "status")
    assert console.errors == []

